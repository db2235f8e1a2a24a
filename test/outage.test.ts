import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';
import { TcpProxy } from './helpers/proxy.ts';

const BLOCK_TIME_MS = 1000;

/** Asserts the `blocks` stream holds every number once, each block's parent the one before. */
function expectUnbroken(blocks: readonly Message[]): void {
  const numbers = blocks.map((b) => b['number'] as number);
  expect(numbers).toEqual(numbers.map((_, i) => (numbers[0] as number) + i));
  for (let i = 1; i < blocks.length; i++) {
    expect((blocks[i] as Message)['parentHash']).toBe((blocks[i - 1] as Message)['hash']);
  }
}

/** Waits until the client holds the node's current head (bounded). */
async function catchUp(client: TestClient, sub: string, nodeUrl: string, timeoutMs = 20_000): Promise<void> {
  const head = Number(await rpc<string>(nodeUrl, 'eth_blockNumber'));
  await client.next((m) => m['sub'] === sub && m.type === 'block' && (m['number'] as number) >= head, timeoutMs);
}

// The node keeps mining (1 s blocks) while the link to it is cut, stalled or fails over.
describe('node outages', () => {
  let anvil: Anvil;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: BLOCK_TIME_MS / 1000 });
  });

  afterAll(async () => {
    await anvil?.close();
  });

  describe.each([
    ['cut', 5_000, 'http'],
    ['stalled', 5_000, 'http'],
    ['cut', 5_000, 'ws'],
    ['cut', 30_000, 'http'],
  ] as const)('a link %s for %i ms (%s RPC)', (mode, outageMs, scheme) => {
    let proxy: TcpProxy;
    let gateway: GatewayProcess;

    beforeAll(async () => {
      proxy = await TcpProxy.start(anvil.port);
      gateway = await startGateway([
        '--rpc',
        scheme === 'ws' ? proxy.wsUrl : proxy.httpUrl,
        '--poll-interval-ms',
        '200',
        '--rpc-timeout-ms',
        '1500',
      ]);
    });

    afterAll(async () => {
      await gateway?.stop();
      await proxy?.close();
    });

    it('leaves every block number exactly once, with an unbroken hash chain', {
      timeout: outageMs + 60_000,
    }, async () => {
      const client = await TestClient.connect(gateway.url, 'json');
      const sub = await client.subscribe({ channel: 'blocks' });
      await client.next((m) => m['sub'] === sub && m.type === 'block', 10_000);
      const cutAt = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
      if (mode === 'cut') await proxy.cut();
      else proxy.stall();
      // The outage itself is the thing under test: the node mines on, the gateway sees nothing.
      await new Promise((resolve) => setTimeout(resolve, outageMs));
      const during = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
      expect(during - cutAt).toBeGreaterThanOrEqual(Math.floor(outageMs / BLOCK_TIME_MS) - 2);
      await proxy.restore();
      await catchUp(client, sub, anvil.httpUrl);
      const blocks = client.of(sub, 'block');
      expectUnbroken(blocks);
      expect((blocks.at(-1) as Message)['number']).toBeGreaterThanOrEqual(during);
      const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
      expect(metrics).toMatch(/^blockcast_ingest_backfilled_blocks_total\{chain="31337"\} [1-9]\d*$/m);
      client.close();
    });
  });

  it('reconnects when the head stops moving, and follows it again', { timeout: 60_000 }, async () => {
    const quiet = await startAnvil({ noMining: true });
    const gateway = await startGateway([
      '--rpc',
      quiet.httpUrl,
      '--poll-interval-ms',
      '100',
      '--head-timeout-blocks',
      '2',
      '--head-timeout-min-sec',
      '1',
    ]);
    try {
      const client = await TestClient.connect(gateway.url, 'json');
      const sub = await client.subscribe({ channel: 'blocks' });
      await gateway.waitForOutput(/no new head for \d+ ms: reconnecting/);
      await rpc(quiet.httpUrl, 'evm_mine');
      const head = Number(await rpc<string>(quiet.httpUrl, 'eth_blockNumber'));
      await client.next((m) => m['sub'] === sub && m['number'] === head, 10_000);
      client.close();
    } finally {
      await gateway.stop();
      await quiet.close();
    }
  });

  it('fails over to the second endpoint within 3 block times, without a gap', { timeout: 60_000 }, async () => {
    const first = await TcpProxy.start(anvil.port);
    const second = await TcpProxy.start(anvil.port);
    const gateway = await startGateway([
      '--rpc',
      first.httpUrl,
      '--rpc',
      second.httpUrl,
      '--poll-interval-ms',
      '200',
      '--rpc-timeout-ms',
      '1000',
    ]);
    try {
      const client = await TestClient.connect(gateway.url, 'msgpack');
      const sub = await client.subscribe({ channel: 'blocks' });
      await client.next((m) => m['sub'] === sub && m.type === 'block', 10_000);
      await first.cut();
      const from = client.messages.length;
      const head = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
      // The acceptance bound itself: the next block arrives within 3 block times of the cut.
      await client.next((m) => m['sub'] === sub && (m['number'] as number) > head, 3 * BLOCK_TIME_MS, from);
      await catchUp(client, sub, anvil.httpUrl);
      expectUnbroken(client.of(sub, 'block'));
      const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
      expect(metrics).toContain(`blockcast_ingest_endpoint_up{chain="31337",endpoint="127.0.0.1:${first.port}"} 0`);
      expect(metrics).toContain(`blockcast_ingest_endpoint_up{chain="31337",endpoint="127.0.0.1:${second.port}"} 1`);
      client.close();
    } finally {
      await gateway.stop();
      await first.close();
      await second.close();
    }
  });
});
