import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rpc, type TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { artifact, deploy, deployedAddress } from './helpers/contracts.ts';
import { FAKE_ACCOUNTS, FakeChain, FakeNode } from './helpers/fakeNode.ts';
import { type GatewayProcess, scrapeMetrics, seriesValue, startGateway } from './helpers/gateway.ts';
import { type Stack, startStack } from './helpers/stack.ts';

const DEPLOYER = 0;

/** A frame of the node's callTracer output. */
interface CallFrame {
  readonly type: string;
  readonly from: string;
  readonly to?: string;
  readonly value?: string;
  readonly error?: string;
  readonly calls?: readonly CallFrame[];
}

/**
 * The internal transfers of a transaction as the test reads the node's call trace: every frame
 * below the top one that moves ETH (CALL, CREATE, CREATE2, SELFDESTRUCT with value), skipping a
 * failed frame and all under it. The reference the gateway's events are compared with.
 */
function expectedFromTrace(txHash: string, top: CallFrame): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  const walk = (frame: CallFrame, path: number[]): void => {
    if (frame.error !== undefined) return;
    const moves = ['CALL', 'CREATE', 'CREATE2', 'SELFDESTRUCT'].includes(frame.type);
    if (path.length > 0 && moves && frame.value !== undefined && BigInt(frame.value) > 0n) {
      out.push({
        kind: 'internal',
        id: `${txHash}:call:${path.join('.')}`,
        txHash,
        from: frame.from.toLowerCase(),
        to: (frame.to as string).toLowerCase(),
        value: `0x${BigInt(frame.value).toString(16)}`,
        callType: frame.type.toLowerCase(),
      });
    }
    for (const [i, child] of (frame.calls ?? []).entries()) walk(child, [...path, i]);
  };
  walk(top, []);
  return out;
}

describe('internal transfers end to end (anvil call traces)', () => {
  let stack: Stack;
  let gateway: GatewayProcess;
  let chain: TestChain;
  let client: TestClient;
  let splitter: string;
  let rejector: string;
  let payee: string;
  let other: string;
  let watching: string;
  let onlyTx: string;

  beforeAll(async () => {
    artifact('Splitter'); // compile before the clock of any test starts
    stack = await startStack({ node: { noMining: true }, transport: 'ws' });
    ({ gateway, chain } = stack);
    const hashes = [await deploy(chain, DEPLOYER, 'Splitter'), await deploy(chain, DEPLOYER, 'Rejector')];
    await chain.mine();
    splitter = await deployedAddress(chain, hashes[0] as string);
    rejector = await deployedAddress(chain, hashes[1] as string);
    payee = chain.address(7);
    other = chain.address(8);
    client = await TestClient.connect(gateway.url, 'json');
    watching = await client.subscribe({ channel: 'activity', addresses: [payee, other, splitter] });
    onlyTx = await client.subscribe({ channel: 'activity', addresses: [payee], kinds: ['tx'] });
  });

  afterAll(async () => {
    client?.close();
    await stack?.close();
  });

  it('announces internal transfers for the chain in welcome', async () => {
    const probe = await TestClient.connect(gateway.url, 'json');
    try {
      expect(probe.messages[0]?.['chains']).toEqual([expect.objectContaining({ chainId: 31_337, internal: true })]);
    } finally {
      probe.close();
    }
  });

  it("sends the ETH a contract forwards to several addresses, one reverting, equal to the node's call trace", async () => {
    const { iface } = artifact('Splitter');
    const amounts = [1_000n, 2_000n, 3_000n];
    const hash = await chain.send(1, {
      to: splitter,
      value: 6_000n,
      data: iface.encodeFunctionData('split', [[payee, rejector, other], amounts]),
    });
    const number = await chain.mine();
    const message = await client.next(
      (m) => m['sub'] === watching && m.type === 'activity' && (m['block'] as { number: number }).number === number,
      15_000,
    );
    const internal = (message['events'] as Array<Record<string, unknown>>).filter((e) => e['kind'] === 'internal');
    const [trace] = await rpc<Array<{ txHash: string; result: CallFrame }>>(anvil(), 'debug_traceBlockByNumber', [
      `0x${number.toString(16)}`,
      { tracer: 'callTracer' },
    ]);
    const expected = expectedFromTrace(hash, (trace as { result: CallFrame }).result);
    // Two payments: the Rejector's frame failed, so nothing of it is sent.
    expect(expected.map((e) => [e['to'], e['value']])).toEqual([
      [payee, '0x3e8'],
      [other, '0xbb8'],
    ]);
    expect(internal).toEqual(expected);
    expect(internal.every((e) => e['from'] === splitter)).toBe(true);
    // The events follow their transaction's `tx` event.
    expect((message['events'] as Message[]).map((e) => e['kind'])).toEqual(['tx', 'internal', 'internal']);
  });

  it('matches an internal transfer on its recipient alone, and only where the subscription asked for the kind', async () => {
    const { iface } = artifact('Splitter');
    await chain.send(2, { to: splitter, value: 5n, data: iface.encodeFunctionData('split', [[payee], [5n]]) });
    const number = await chain.mine();
    const message = await client.next(
      (m) => m['sub'] === watching && m.type === 'activity' && (m['block'] as { number: number }).number === number,
      15_000,
    );
    expect((message['events'] as Message[]).map((e) => [e['kind'], e['to']])).toEqual([
      ['tx', splitter],
      ['internal', payee],
    ]);
    await client.request({ op: 'ping' });
    // `payee` is not the transaction's from or to: a tx-only subscription of it has nothing.
    expect(client.of(onlyTx, 'activity').filter((m) => (m['block'] as { number: number }).number === number)).toEqual(
      [],
    );
  });

  it('traces only blocks where some transaction ran code, and says so in its metrics', async () => {
    const before = await scrapeMetrics(gateway);
    const skippedBefore = seriesValue(before, 'blockcast_ingest_traced_blocks_total{chain="31337",outcome="skipped"}');
    await chain.transfer(3, payee, 1n);
    const number = await chain.mine();
    await client.next(
      (m) => m['sub'] === watching && m.type === 'activity' && (m['block'] as { number: number }).number === number,
      15_000,
    );
    const after = await scrapeMetrics(gateway);
    expect(seriesValue(after, 'blockcast_ingest_traced_blocks_total{chain="31337",outcome="skipped"}')).toBe(
      (skippedBefore ?? 0) + 1,
    );
    expect(
      seriesValue(after, 'blockcast_ingest_traced_blocks_total{chain="31337",outcome="traced"}'),
    ).toBeGreaterThanOrEqual(2);
    // anvil serves both methods: ingest uses the one that answered its probe faster.
    const traced = ['debug_traceBlockByNumber', 'trace_block'].map(
      (method) =>
        seriesValue(
          after,
          `blockcast_ingest_trace_duration_seconds_count{chain="31337",method="${method}",outcome="ok"}`,
        ) ?? 0,
    );
    expect(traced.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(2);
  });

  /** The node's http URL. */
  function anvil(): string {
    return stack.anvil.httpUrl;
  }
});

describe('internal transfers on a node without call traces', () => {
  let node: FakeNode;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    node = await FakeNode.start(new FakeChain({ chainId: 31_337, height: 4 }));
    gateway = await startGateway(['--rpc', node.url, '--poll-interval-ms', '50']);
  });

  afterAll(async () => {
    await gateway?.stop();
    await node?.close();
  });

  it('says so in welcome and refuses the kind with a clear error; a subscription of every kind goes on without it', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    try {
      expect(client.messages[0]?.['chains']).toEqual([expect.objectContaining({ chainId: 31_337, internal: false })]);
      const address = FAKE_ACCOUNTS[0] as string;
      const reply = await client.request({
        op: 'subscribe',
        channel: 'activity',
        addresses: [address],
        kinds: ['internal'],
      });
      expect(reply).toMatchObject({
        type: 'error',
        code: 'UNSUPPORTED',
        message:
          'kind internal is off on chain 31337: its node serves no call traces (debug_traceBlockByNumber or trace_block)',
      });
      expect(await client.subscribe({ channel: 'activity', addresses: [address] })).toBe('s1');
    } finally {
      client.close();
    }
  });
});
