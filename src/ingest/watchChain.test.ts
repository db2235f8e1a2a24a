import { afterEach, describe, expect, it } from 'vitest';
import { FakeChain, FakeNode } from '../../test/helpers/fakeNode.ts';
import { errorMessage, type RpcFaultError } from '../domain/errors.ts';
import type { ChainBlock } from '../domain/types.ts';
import type { Header } from './checkBlock.ts';
import { type ChainWatcher, type WatchChainOptions, watchChain } from './watchChain.ts';

/** What a watcher handed over and reported, with bounded waits for it. */
class Recorder {
  readonly blocks: ChainBlock[] = [];
  readonly retracted: Header[] = [];
  readonly faults: Array<{ fault: RpcFaultError; url: string }> = [];
  readonly errors: string[] = [];
  readonly #waiters = new Set<() => void>();

  readonly options = {
    onBlock: (block: ChainBlock) => this.#push(() => this.blocks.push(block)),
    onRetract: (header: Header) => this.#push(() => this.retracted.push(header)),
    onFault: (fault: RpcFaultError, url: string) => this.#push(() => this.faults.push({ fault, url })),
    onError: (error: unknown) => this.#push(() => this.errors.push(errorMessage(error))),
  };

  #push(record: () => void): void {
    record();
    for (const check of [...this.#waiters]) check();
  }

  /** Resolves once `condition` holds (checked on every event), within `timeoutMs`. */
  until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!condition()) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`${what}: not within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  has(hash: string): boolean {
    return this.blocks.some((b) => b.hash === hash);
  }

  faultsOf(reason: string): number {
    return this.faults.filter((f) => f.fault.fault === reason).length;
  }
}

describe('watchChain', () => {
  const closers: Array<() => Promise<void>> = [];

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  async function node(chain: FakeChain): Promise<FakeNode> {
    const started = await FakeNode.start(chain);
    closers.push(() => started.close());
    return started;
  }

  async function watch(
    urls: readonly string[],
    recorder: Recorder,
    options: Partial<WatchChainOptions> = {},
  ): Promise<ChainWatcher> {
    const watcher = await watchChain({
      urls,
      pollIntervalMs: 20,
      requestTimeoutMs: 1000,
      reorgWindowBlocks: 16,
      backfillConcurrency: 4,
      headTimeoutBlocks: 10,
      headTimeoutMinMs: 30_000,
      ...recorder.options,
      ...options,
    });
    closers.push(() => watcher.close());
    return watcher;
  }

  it('asks the chain id again every chainIdCheckIntervalMs, and uses nothing while it is another', async () => {
    const chain = new FakeChain({ height: 5 });
    const fake = await node(chain);
    const recorder = new Recorder();
    await watch([fake.url], recorder, { chainIdCheckIntervalMs: 200 });
    const first = chain.mine();
    await recorder.until(() => recorder.has(first.hash), 'first block');
    fake.options.chainId = 99;
    await recorder.until(() => recorder.faultsOf('wrong_chain') >= 2, 'wrong_chain twice');
    const during = chain.mine();
    // How long the node claims another chain is what is under test.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(recorder.has(during.hash)).toBe(false);
    fake.clear();
    await recorder.until(() => recorder.has(during.hash), 'the block once the chain id is right again');
    expect(recorder.faults.find((f) => f.fault.fault === 'wrong_chain')?.fault.message).toBe(
      'eth_chainId answered 99, not 1337: its answers are not used',
    );
  });

  it('waits out a head below ours for the grace period, then retracts to the block it holds', async () => {
    const chain = new FakeChain({ height: 10 });
    const fake = await node(chain);
    const recorder = new Recorder();
    await watch([fake.url], recorder);
    const mined = chain.mine(3);
    await recorder.until(() => recorder.has(mined.hash), 'head');
    const wentBackAt = performance.now();
    chain.rewind(mined.number - 2);
    await recorder.until(() => recorder.retracted.length === 2, 'two blocks retracted');
    // Two block times (the fake chain's blocks are 1 s apart).
    expect(performance.now() - wentBackAt).toBeGreaterThanOrEqual(1900);
    expect(recorder.retracted.map((h) => h.number)).toEqual([mined.number, mined.number - 1]);
    expect(recorder.faultsOf('behind')).toBe(1);
    const next = chain.mine();
    await recorder.until(() => recorder.has(next.hash), 'the new branch');
  });

  it('never retracts the window for a head below it: the head watchdog fails over instead', async () => {
    const chain = new FakeChain({ height: 20 });
    const fake = await node(chain);
    const recorder = new Recorder();
    await watch([fake.url], recorder, { reorgWindowBlocks: 4, headTimeoutBlocks: 2, headTimeoutMinMs: 1000 });
    const mined = chain.mine(4);
    await recorder.until(() => recorder.has(mined.hash), 'head');
    chain.rewind(mined.number - 10);
    await recorder.until(() => recorder.errors.some((e) => /no new head for \d+ ms/.test(e)), 'the watchdog', 10_000);
    expect(recorder.retracted).toEqual([]);
    expect(recorder.faultsOf('behind')).toBeGreaterThanOrEqual(1);
  });

  it('does not follow a head that goes back and forth', async () => {
    const chain = new FakeChain({ height: 10 });
    const fake = await node(chain);
    const recorder = new Recorder();
    await watch([fake.url], recorder);
    const mined = chain.mine(3);
    await recorder.until(() => recorder.has(mined.hash), 'head');
    fake.options.flapBlocks = 2;
    // A load balancer between a current and a lagging backend, for longer than the grace period.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(recorder.retracted).toEqual([]);
    expect(recorder.faultsOf('behind')).toBeGreaterThan(5);
    fake.clear();
    const next = chain.mine();
    await recorder.until(() => recorder.has(next.hash), 'next block');
    expect(recorder.retracted).toEqual([]);
  });

  it('switches eth_getBlockReceipts off only on the node’s word, and asks again after capabilityRetryMs', async () => {
    const chain = new FakeChain({ height: 5 });
    const fake = await node(chain);
    const recorder = new Recorder();
    await watch([fake.url], recorder, { capabilityRetryMs: 500 });
    // Faults of the link or of the answer switch nothing off.
    fake.inject({ method: 'eth_getBlockReceipts', fault: { kind: 'invalidJson' } });
    fake.inject({ method: 'eth_getBlockReceipts', fault: { kind: 'status', status: 500 } });
    const first = chain.mine();
    await recorder.until(() => recorder.has(first.hash), 'first block');
    expect(recorder.faultsOf('invalid_json')).toBe(1);
    expect(recorder.faultsOf('http_status')).toBe(1);
    expect(fake.calls('eth_getTransactionReceipt')).toBe(0);

    fake.options.blockReceipts = false;
    const second = chain.mine();
    await recorder.until(() => recorder.has(second.hash), 'second block');
    expect(fake.calls('eth_getTransactionReceipt')).toBe(second.txs.length);
    expect(recorder.errors.join('\n')).toMatch(/eth_getBlockReceipts is not offered/);

    fake.options.blockReceipts = true;
    // The time the capability stays off is what is under test.
    await new Promise((resolve) => setTimeout(resolve, 600));
    const receiptsBefore = fake.calls('eth_getBlockReceipts');
    const third = chain.mine();
    await recorder.until(() => recorder.has(third.hash), 'third block');
    expect(fake.calls('eth_getBlockReceipts')).toBeGreaterThan(receiptsBefore);
    expect(fake.calls('eth_getTransactionReceipt')).toBe(second.txs.length);
  });

  it('asks the next endpoint for eth_getBlockReceipts after a failover', async () => {
    const chain = new FakeChain({ height: 5 });
    const [first, second] = [await node(chain), await node(chain)];
    first.options.blockReceipts = false;
    const recorder = new Recorder();
    await watch([first.url, second.url], recorder);
    const atStart = first.calls('eth_getTransactionReceipt');
    const a = chain.mine();
    await recorder.until(() => recorder.has(a.hash), 'block from the first endpoint');
    expect(first.calls('eth_getTransactionReceipt')).toBe(atStart + a.txs.length);
    first.inject({
      method: 'eth_getBlockByNumber',
      times: Number.POSITIVE_INFINITY,
      fault: { kind: 'status', status: 503 },
    });
    const b = chain.mine();
    await recorder.until(() => recorder.has(b.hash), 'block from the second endpoint');
    expect(second.calls('eth_getBlockReceipts')).toBeGreaterThan(0);
    expect(second.calls('eth_getTransactionReceipt')).toBe(0);
    expect(recorder.faults.map((f) => f.url)).toContain(first.url);
  });

  it('is woken by newHeads on a ws endpoint, long before the poll interval', async () => {
    const chain = new FakeChain({ height: 5 });
    const fake = await node(chain);
    const recorder = new Recorder();
    await watch([fake.wsUrl], recorder, { pollIntervalMs: 60_000 });
    await fake.waitForCalls('eth_subscribe', 1, { match: (p) => p[0] === 'newHeads' });
    const mined = chain.mine();
    await recorder.until(() => recorder.has(mined.hash), 'block', 5000);
  });

  it('never hands over a block whose number disagrees with its parent', async () => {
    const chain = new FakeChain({ height: 47 });
    const fake = await node(chain);
    const recorder = new Recorder();
    await watch([fake.url], recorder);
    chain.mine(2);
    fake.inject({
      method: 'eth_getBlockByNumber',
      match: (p) => p[0] === '0x30',
      fault: { kind: 'mutate', mutate: (block) => ({ ...(block as object), number: '0x36' }) },
    });
    await recorder.until(() => recorder.blocks.length === 2, 'blocks 48 and 49');
    expect(recorder.blocks.map((b) => b.number)).toEqual([48, 49]);
    expect(recorder.faults.map((f) => f.fault.message)).toEqual([
      "eth_getBlockByNumber(0x30) answered block 0x36 whose parent is block 47's hash",
    ]);
    expect(recorder.retracted).toEqual([]);
  });
});
