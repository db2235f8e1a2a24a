import type { Wallet } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { rpc, TestChain } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';

// The life of a pending transaction on a real anvil that mines every 2 s: sped up, cancelled or
// dropped, as an activity subscription with `pending: true` is told of it. Each case sends its
// first transaction right after a block arrived, which leaves most of a block time for the
// gateway to see it pending and for the test to replace or drop it before the next block.
//
// Two gateways follow the one anvil: `quick` drops a transaction unknown to the node for 1 s
// (so that the dropped case takes seconds), `patient` for 60 s. A replaced transaction leaves
// the node's pool when its replacement enters it, up to a block time before the replacement is
// mined: the replacement cases run on both, so that the fate they expect does not depend on
// `--drop-after-sec` being longer than the wait for the next block.
describe('the life of a transaction (anvil mining every 2 s)', () => {
  const BLOCK_TIME_SEC = 2;
  const GWEI = 1_000_000_000n;
  /** Tries of one case when the next block wins the race against the test (mines the first transaction). */
  const MAX_TRIES = 3;
  /** Waits for something that happens within a block or two. */
  const WAIT_MS = 15_000;
  /** What the life of a transaction is told with, besides its `pending` and `activity` messages. */
  const FATES = new Set(['replaced', 'dropped']);
  /** Dev wallets each case sends from, one per case and gateway, so that no case moves another's nonce. */
  const WALLETS = {
    quick: { speedup: 0, cancel: 1, dropped: 2 },
    patient: { speedup: 3, cancel: 4 },
  } as const;

  /** A gateway and a client of it, with a `blocks` subscription and one without `pending`. */
  interface Watcher {
    readonly gateway: GatewayProcess;
    readonly client: TestClient;
    readonly blocks: string;
    /** Watches the addresses of every case without `pending`: must get no fate, no pending. */
    readonly minedOnly: string;
  }

  let anvil: Anvil;
  let chain: TestChain;
  const watchers: Partial<Record<'quick' | 'patient', Watcher>> = {};
  const receiver = (): string => chain.address(9);

  async function startWatcher(dropAfterSec: number, walletIndexes: readonly number[]): Promise<Watcher> {
    const gateway = await startGateway([
      '--rpc',
      anvil.wsUrl,
      '--poll-interval-ms',
      '50',
      '--drop-after-sec',
      String(dropAfterSec),
    ]);
    const client = await TestClient.connect(gateway.url, 'json');
    const blocks = await client.subscribe({ channel: 'blocks' });
    const minedOnly = await client.subscribe({
      channel: 'activity',
      addresses: walletIndexes.map((index) => chain.address(index)),
    });
    return { gateway, client, blocks, minedOnly };
  }

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: BLOCK_TIME_SEC });
    chain = new TestChain(anvil.httpUrl);
    watchers.quick = await startWatcher(1, Object.values(WALLETS.quick));
    watchers.patient = await startWatcher(60, Object.values(WALLETS.patient));
  });

  afterAll(async () => {
    for (const watcher of Object.values(watchers)) {
      watcher.client.close();
      await watcher.gateway.stop();
    }
    chain?.close();
    await anvil?.close();
  });

  const watcherOf = (name: 'quick' | 'patient'): Watcher => watchers[name] as Watcher;

  /** Waits for the next `blocks` message after what the client has so far; returns its number. */
  async function nextBlock(watcher: Watcher): Promise<number> {
    const { client, blocks } = watcher;
    const from = client.messages.length;
    const message = await client.next((m) => m['sub'] === blocks && m.type === 'block', WAIT_MS, from);
    return message['number'] as number;
  }

  /** The node's count of mined transactions of `address` (raw: ethers caches repeated requests). */
  async function minedNonce(address: string): Promise<number> {
    return Number(await rpc<string>(chain.url, 'eth_getTransactionCount', [address, 'latest']));
  }

  /** The node's receipt of `hash` (block number and hash), `null` while it is not mined. */
  function receiptOf(hash: string): Promise<{ blockNumber: string; blockHash: string } | null> {
    return rpc<{ blockNumber: string; blockHash: string } | null>(chain.url, 'eth_getTransactionReceipt', [hash]);
  }

  /**
   * Sends a type-2 transfer with every field given, so that ethers asks the node for none. Both
   * fee fields are `feeGwei`: a replacement at twice the fees passes anvil's 10 % bump in each.
   */
  async function sendWithFees(
    wallet: Wallet,
    request: { to: string; value: bigint; nonce: number; feeGwei: bigint },
  ): Promise<string> {
    const tx = await wallet.sendTransaction({
      type: 2,
      to: request.to,
      value: request.value,
      data: '0x',
      nonce: request.nonce,
      gasLimit: 21_000n,
      maxFeePerGas: request.feeGwei * GWEI,
      maxPriorityFeePerGas: request.feeGwei * GWEI,
    });
    return tx.hash;
  }

  const eventIds = (message: Message): unknown[] => (message['events'] as Message[]).map((e) => e['id']);

  /**
   * The first `pending` or `activity` message of `sub` naming `hash`, from message `from` on: a
   * block that mines it before the gateway fetched it from the pool leaves it no pending message.
   */
  function pendingOrMined(client: TestClient, sub: string, hash: string, from: number): Promise<Message> {
    return client.next(
      (m) => m['sub'] === sub && (m.type === 'pending' || m.type === 'activity') && eventIds(m).includes(hash),
      WAIT_MS,
      from,
    );
  }

  /** The first `activity` message of `sub` naming one of `hashes`, from message `from` on. */
  function activityOf(client: TestClient, sub: string, hashes: readonly string[], from: number): Promise<Message> {
    return client.next(
      (m) => m['sub'] === sub && m.type === 'activity' && eventIds(m).some((id) => hashes.includes(id as string)),
      WAIT_MS,
      from,
    );
  }

  /** The fate (`replaced` or `dropped`) told to `sub` of `hash`, whichever comes first. */
  function fateOf(client: TestClient, sub: string, hash: string, from: number, timeoutMs = WAIT_MS): Promise<Message> {
    return client.next((m) => m['sub'] === sub && FATES.has(m.type) && m['id'] === hash, timeoutMs, from);
  }

  /** What {@link replaceOnce} did. */
  interface Replacement {
    readonly original: string;
    readonly replacement: string;
    readonly nonce: number;
    /** The subscription's `activity` message of the block that mined the replacement. */
    readonly activity: Message;
    /** The client's message count before the original was sent. */
    readonly from: number;
  }

  /**
   * Sends a transfer of dev wallet `walletIndex` right after a block, waits until the gateway
   * sends it as pending, then replaces it (same nonce, twice the fees) with `replacement`, and
   * waits for the block that mines one of the two. The block interval races the test: when the
   * next block comes before the replacement is sent and mines the first transaction (before or
   * after its pending message), there is nothing to replace (the node refuses the replacement:
   * nonce too low); the case then starts over with the next nonce, at most {@link MAX_TRIES} times.
   */
  async function replaceOnce(
    watcher: Watcher,
    walletIndex: number,
    sub: string,
    replacement: { to: string; value: bigint },
  ): Promise<Replacement> {
    const { client } = watcher;
    const wallet = chain.wallets[walletIndex] as Wallet;
    for (let attempt = 1; attempt <= MAX_TRIES; attempt++) {
      await nextBlock(watcher);
      const from = client.messages.length;
      const nonce = await minedNonce(wallet.address);
      const original = await sendWithFees(wallet, { to: receiver(), value: 1n, nonce, feeGwei: 2n });
      if ((await pendingOrMined(client, sub, original, from)).type === 'activity') continue;
      let replacementHash: string;
      try {
        replacementHash = await sendWithFees(wallet, { ...replacement, nonce, feeGwei: 4n });
      } catch (error) {
        if ((await receiptOf(original)) !== null) continue;
        throw error;
      }
      const activity = await activityOf(client, sub, [original, replacementHash], from);
      if (eventIds(activity).includes(original)) continue;
      return { original, replacement: replacementHash, nonce, activity, from };
    }
    throw new Error(`the next block mined the first transaction before its replacement ${MAX_TRIES} times`);
  }

  /** Checks the `replaced` message told of a replacement done by {@link replaceOnce}. */
  async function expectReplaced(
    watcher: Watcher,
    sub: string,
    walletIndex: number,
    done: Replacement,
    reason: 'speedup' | 'cancel',
  ): Promise<void> {
    const receipt = await receiptOf(done.replacement);
    expect(receipt).not.toBeNull();
    const block = { number: Number(receipt?.blockNumber), hash: receipt?.blockHash };
    const fate = await fateOf(watcher.client, sub, done.original, done.from);
    expect(fate).toEqual({
      type: 'replaced',
      sub,
      chainId: 31_337,
      id: done.original,
      from: chain.address(walletIndex),
      nonce: done.nonce,
      by: done.replacement,
      reason,
      block,
    });
    // The block's activity has the replacement as a `tx` event, and nothing of the replaced one.
    expect(done.activity['block']).toMatchObject(block);
    const events = done.activity['events'] as Message[];
    expect(events.filter((e) => e['kind'] === 'tx' && e['id'] === done.replacement)).toHaveLength(1);
    expect(events.filter((e) => e['id'] === done.original || e['txHash'] === done.original)).toEqual([]);
  }

  describe.each(['quick', 'patient'] as const)('on the %s gateway', (name) => {
    it('tells a sped-up transaction as replaced by the one mined, with the block that mined it', async () => {
      const watcher = watcherOf(name);
      const walletIndex = WALLETS[name].speedup;
      const sub = await watcher.client.subscribe({
        channel: 'activity',
        addresses: [chain.address(walletIndex)],
        pending: true,
      });
      const done = await replaceOnce(watcher, walletIndex, sub, { to: receiver(), value: 1n });
      await expectReplaced(watcher, sub, walletIndex, done, 'speedup');
    });

    it('tells a transaction cancelled by a 0-value self-send as replaced with reason cancel', async () => {
      const watcher = watcherOf(name);
      const walletIndex = WALLETS[name].cancel;
      const w = chain.address(walletIndex);
      const sub = await watcher.client.subscribe({ channel: 'activity', addresses: [w], pending: true });
      const done = await replaceOnce(watcher, walletIndex, sub, { to: w, value: 0n });
      await expectReplaced(watcher, sub, walletIndex, done, 'cancel');
    });
  });

  it('tells a transaction removed from the node and not mined as dropped, and never as activity', async () => {
    const watcher = watcherOf('quick');
    const { client } = watcher;
    const walletIndex = WALLETS.quick.dropped;
    const v = chain.address(walletIndex);
    const wallet = chain.wallets[walletIndex] as Wallet;
    const sub = await client.subscribe({ channel: 'activity', addresses: [v], pending: true });
    // The race again: a block may mine the transaction before it is removed from the pool; then
    // the case starts over with the next nonce, at most MAX_TRIES times.
    for (let attempt = 1; attempt <= MAX_TRIES; attempt++) {
      const firstBlock = await nextBlock(watcher);
      const from = client.messages.length;
      const nonce = await minedNonce(wallet.address);
      const hash = await sendWithFees(wallet, { to: receiver(), value: 1n, nonce, feeGwei: 2n });
      if ((await pendingOrMined(client, sub, hash, from)).type === 'activity') continue;
      await rpc(chain.url, 'anvil_dropTransaction', [hash]);
      if ((await receiptOf(hash)) !== null) continue;

      const fate = await fateOf(client, sub, hash, from, 10_000);
      expect(fate).toEqual({ type: 'dropped', sub, chainId: 31_337, id: hash, from: v, nonce });
      // A block after the fate, and a ping after that block: every message of the blocks mined
      // meanwhile has arrived, and none of them has the dropped transaction; nor has the node.
      const lastBlock = await nextBlock(watcher);
      await client.request({ op: 'ping' });
      const activities = client.messages.slice(from).filter((m) => m.type === 'activity');
      expect(activities.filter((m) => eventIds(m).includes(hash))).toEqual([]);
      for (let number = firstBlock + 1; number <= lastBlock; number++) {
        const block = await chain.block(number);
        expect(block.transactions.map((tx) => tx.hash)).not.toContain(hash);
      }
      expect(await receiptOf(hash)).toBeNull();
      return;
    }
    throw new Error(`the next block mined the transaction before it was dropped ${MAX_TRIES} times`);
  });

  it('tells none of this to a subscription of the same addresses without pending', async () => {
    // Runs after the cases above; a ping answered now comes after every message sent for them.
    for (const { client, minedOnly } of Object.values(watchers)) {
      await client.request({ op: 'ping' });
      expect(client.of(minedOnly, 'activity').length).toBeGreaterThan(0);
      for (const type of ['pending', 'replaced', 'dropped']) expect(client.of(minedOnly, type)).toEqual([]);
    }
  });
});
