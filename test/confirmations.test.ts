import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';

// Anvil mines only on demand, so the test decides when each confirmation comes.
describe('confirmations', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let chain: TestChain;
  let client: TestClient;
  let barrier: string;
  let confirmed: string;
  let confirmedBlocks: string;
  let x: string;

  beforeAll(async () => {
    anvil = await startAnvil({ noMining: true });
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '50']);
    chain = new TestChain(anvil.httpUrl);
    x = chain.address(0);
    client = await TestClient.connect(gateway.url, 'json');
    barrier = await client.subscribe({ channel: 'blocks', full: true });
    confirmed = await client.subscribe({ channel: 'activity', addresses: [x], confirmations: 3 });
    confirmedBlocks = await client.subscribe({ channel: 'blocks', confirmations: 3 });
  });

  afterAll(async () => {
    client?.close();
    chain?.close();
    await gateway?.stop();
    await anvil?.close();
  });

  /**
   * Mines a block and waits until the client has everything the gateway sent for it: the
   * head-level `blocks` message with transactions shows the whole block was applied (all depths
   * are sent in that one synchronous step), and a ping answered after it shows every earlier
   * frame has arrived.
   */
  async function mine(): Promise<number> {
    const number = await chain.mine();
    await client.next((m) => m['sub'] === barrier && m['number'] === number, 15_000);
    await client.request({ op: 'ping' });
    return number;
  }

  const activityAt = (number: number) =>
    client.of(confirmed, 'activity').filter((m) => (m['block'] as { number: number }).number === number);

  it('delivers activity only once the block has 3 confirmations', async () => {
    const hash = await chain.transfer(0, chain.address(5), 1n);
    const block = await mine();
    expect(activityAt(block)).toEqual([]);
    await mine();
    expect(activityAt(block)).toEqual([]);
    expect(client.of(confirmedBlocks, 'block').some((m) => m['number'] === block)).toBe(false);
    await mine();
    const [message] = activityAt(block);
    expect(message).toBeDefined();
    expect(((message as Message)['events'] as Array<{ id: string }>).map((e) => e.id)).toEqual([hash]);
    const confirmedBlock = await client.next((m) => m['sub'] === confirmedBlocks && m['number'] === block, 5_000);
    expect(confirmedBlock['hash']).toBe((await chain.block(block)).hash);
  });

  it('never delivers a block reorged out before its third confirmation', async () => {
    await chain.transfer(0, chain.address(6), 2n);
    const doomed = await mine();
    const doomedHash = (await chain.block(doomed)).hash;
    await mine();
    // Replace both blocks; the new branch has no transfer of x.
    await rpc(anvil.httpUrl, 'anvil_reorg', [2, [[{ from: chain.address(7), to: chain.address(8), value: '0x5' }, 0]]]);
    chain.resetNonces();
    const head = Number(await rpc<string>(anvil.httpUrl, 'eth_blockNumber'));
    await client.next((m) => m['sub'] === barrier && m.type === 'removed', 15_000);
    for (let i = 0; i < 4; i++) await mine();
    await client.next((m) => m['sub'] === confirmedBlocks && (m['number'] as number) >= head + 2, 15_000);
    expect(client.of(confirmed, 'activity').some((m) => (m['block'] as { hash: string }).hash === doomedHash)).toBe(
      false,
    );
    expect(client.of(confirmedBlocks, 'block').some((m) => m['hash'] === doomedHash)).toBe(false);
    expect(client.of(confirmed, 'removed')).toEqual([]);
    expect(client.of(confirmedBlocks, 'removed')).toEqual([]);
    // The confirmed stream is still the canonical chain: the replacement block is in it.
    const replacement = await chain.block(doomed);
    expect(client.of(confirmedBlocks, 'block').find((m) => m['number'] === doomed)?.['hash']).toBe(replacement.hash);
  });

  it('refuses more confirmations than the gateway keeps', async () => {
    const welcome = client.messages[0] as unknown as { limits: { maxConfirmations: number } };
    const reply = await client.request({
      op: 'subscribe',
      channel: 'blocks',
      confirmations: welcome.limits.maxConfirmations + 1,
    });
    expect(reply).toMatchObject({ type: 'error', code: 'BAD_REQUEST' });
  });
});
