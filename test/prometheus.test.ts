import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { TestClient, tryUpgrade } from './helpers/client.ts';
import { call, deploy } from './helpers/contracts.ts';
import { expandVariables, panelQueries, readDashboard } from './helpers/dashboard.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';
import { type PrometheusProcess, type Sample, startPrometheus } from './helpers/prometheus.ts';

/** Polls for a condition, a bounded number of times, `intervalMs` apart. */
async function poll<T>(
  what: string,
  attempt: () => Promise<T | undefined>,
  tries: number,
  intervalMs: number,
): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const result = await attempt();
    if (result !== undefined) return result;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`${what}: not after ${tries} tries ${intervalMs} ms apart`);
}

const KEY = 'prometheus-test-key-0123456789';
const PROMETHEUS_CONFIG = fileURLToPath(new URL('../grafana/prometheus.yml', import.meta.url));

// A real Prometheus scrapes the gateway every second while anvil mines a block a second and the
// test sends transfers, a bad request, a gap and a reorg; then every panel query of the dashboard
// is evaluated by that Prometheus. A panel whose metric or labels drift from the code comes back empty.
describe('Prometheus scraping the gateway under traffic', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let prometheus: PrometheusProcess;
  let chain: TestChain;
  let wallet: TestClient;
  let explorer: TestClient;
  let startedAt: number;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
    // With a key, so that the panels of auth have data too.
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '100', '--api-key', KEY]);
    startedAt = Date.now();
    prometheus = await startPrometheus({ targets: [`127.0.0.1:${gateway.port}`], scrapeIntervalSec: 1 });
    chain = new TestChain(anvil.httpUrl);
    // Prometheus applies new targets a few seconds after it starts: traffic begins once it scrapes,
    // so that its first samples are the zeros from before any event.
    await poll(
      'Prometheus scrapes the gateway',
      async () => ((await prometheus.query('up{job="blockcast"} == 1')).length > 0 ? true : undefined),
      60,
      250,
    );

    const watched = chain.address(1);
    const keyed = `${gateway.url}?key=${KEY}`;
    expect((await tryUpgrade(gateway.url)).status).toBe(401);
    wallet = await TestClient.connect(keyed, 'json');
    const blocksSub = await wallet.subscribe({ channel: 'blocks' });
    const activitySub = await wallet.subscribe({ channel: 'activity', addresses: [watched] });
    explorer = await TestClient.connect(keyed, 'msgpack');
    await explorer.subscribe({ channel: 'blocks', full: true });
    const bad = await wallet.request({ op: 'subscribe', channel: 'activity', addresses: ['0xnot-an-address'] });
    expect(bad).toMatchObject({ type: 'error', code: 'BAD_ADDRESS' });

    for (let i = 0; i < 3; i++) {
      const hash = await chain.transfer(0, watched, BigInt(1_000 + i));
      await wallet.next(
        (m) =>
          m['sub'] === activitySub &&
          m.type === 'activity' &&
          (m['events'] as Array<{ txHash: string }>).some((e) => e.txHash === hash),
        15_000,
      );
    }
    // A token deployed and sent to the watched address: its block is traced (code ran) and the
    // token's metadata looked up.
    const deployment = await deploy(chain, 0, 'TestERC20', [1_000n]);
    const token = (await chain.provider.waitForTransaction(deployment, 1, 15_000))?.contractAddress as string;
    const sent = await call(chain, 0, 'TestERC20', token, 'transfer', [watched, 10n]);
    await wallet.next(
      (m) =>
        m['sub'] === activitySub &&
        m.type === 'activity' &&
        (m['events'] as Array<{ txHash: string }>).some((e) => e.txHash === sent),
      15_000,
    );
    // A resume from the cursor of an earlier block (replayed from the window).
    const earlier = await wallet.next((m) => m['sub'] === blocksSub && m.type === 'block', 15_000);
    const resumed = await wallet.request({ op: 'subscribe', channel: 'blocks', from: earlier['cursor'] });
    expect(resumed).toMatchObject({ type: 'subscribed', recovered: true });
    // A gap (five blocks at once: backfill) and a reorg of two blocks.
    const head = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
    await rpc(anvil.httpUrl, 'anvil_mine', ['0x5']);
    await wallet.next((m) => m['sub'] === blocksSub && (m['number'] as number) >= head + 5, 15_000);
    await rpc(anvil.httpUrl, 'anvil_reorg', [2, []]);
    await wallet.next((m) => m['sub'] === blocksSub && m.type === 'removed', 15_000);
  });

  afterAll(async () => {
    wallet?.close();
    explorer?.close();
    chain?.close();
    await prometheus?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  it('passes promtool check metrics on a scrape of /metrics', async () => {
    const text = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(text).toMatch(/^blockcast_fanout_block_to_write_latency_seconds_count\{chain="31337"\} [1-9]\d*$/m);
    const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 30_000 });
    expect(result.error).toBeUndefined();
    expect(`${result.stdout}${result.stderr}`.trim()).toBe('');
    expect(result.status).toBe(0);
  });

  it('accepts the example scrape config (promtool check config)', () => {
    const result = spawnSync('promtool', ['check', 'config', PROMETHEUS_CONFIG], { encoding: 'utf8', timeout: 30_000 });
    expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
  });

  it('answers every panel query and template variable of the dashboard with data', async () => {
    const dashboard = readDashboard();
    const queries = panelQueries(dashboard);
    expect(queries.length).toBeGreaterThan(20);
    // The reorg above is the last event: once Prometheus has scraped it, every panel has its data.
    await poll(
      'Prometheus sees the reorg',
      async () => {
        const samples = await prometheus.query('sum(blockcast_ingest_reorgs_total) > 0');
        return samples.length > 0 ? true : undefined;
      },
      60,
      500,
    );

    const evaluate = async (): Promise<Array<{ panel: string; expr: string; samples: Sample[] }>> => {
      const rangeSec = Math.ceil((Date.now() - startedAt) / 1000) + 5;
      return Promise.all(
        queries.map(async ({ panel, refId, expr }) => {
          const expanded = expandVariables(dashboard, expr, { rangeSec });
          return { panel: `${panel} (${refId})`, expr: expanded, samples: await prometheus.query(expanded) };
        }),
      );
    };
    const hasData = (samples: Sample[]): boolean => samples.some((s) => Number.isFinite(s.value));
    // Rates need two scrapes after an event: a few more tries, then every query must have data.
    let results = await evaluate();
    for (let i = 0; i < 10 && results.some((r) => !hasData(r.samples)); i++) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      results = await evaluate();
    }
    const empty = results
      .filter((r) => !hasData(r.samples))
      .map((r) => `${r.panel}: ${r.expr} → ${JSON.stringify(r.samples)}`);
    expect(empty).toEqual([]);

    for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(variable.query ?? '');
      expect(m, `variable ${variable.name}: ${variable.query}`).not.toBeNull();
      const selector = expandVariables(dashboard, m?.[1] ?? '', { rangeSec: 60 });
      expect(await prometheus.labelValues(m?.[2] ?? '', selector), variable.name).not.toEqual([]);
    }
  });
});
