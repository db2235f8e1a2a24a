import { afterEach, describe, expect, it } from 'vitest';
import { type FakeBlock, FakeChain, FakeNode } from '../../test/helpers/fakeNode.ts';
import { TEST_WATCH_OPTIONS } from '../../test/helpers/watchOptions.ts';
import { errorMessage, type RpcFaultError } from '../domain/errors.ts';
import type { BlockLink, ChainBlock, Hex } from '../domain/types.ts';
import { type ChainWatcher, SinkError, type WatchChainOptions, watchChain } from './watchChain.ts';

/** A sink call of the watcher. */
type SinkCall = 'block' | 'retract';

/** The link of a block of the fake chain. */
const linkOf = (block: FakeBlock): BlockLink => ({
  number: block.number,
  hash: block.hash as Hex,
  parentHash: block.parentHash as Hex,
});

/**
 * What a watcher handed over and reported, with bounded waits for it. Its sink is asynchronous,
 * holds the chain it took as a log would (from the seed on) and notes every call that does not
 * continue it; a test may make it refuse calls (`refuse`) or hold them (`gate`).
 */
class Recorder {
  /** The blocks the sink took, in order. */
  readonly blocks: ChainBlock[] = [];
  readonly retracted: BlockLink[] = [];
  /** Every block offered to the sink, taken or not. */
  readonly offered: Hex[] = [];
  /** The chain as the sink holds it, oldest first. */
  readonly canonical: BlockLink[];
  /** Sink calls that did not continue the chain the sink holds (none, ever). */
  readonly broken: string[] = [];
  readonly faults: Array<{ fault: RpcFaultError; url: string }> = [];
  readonly errors: string[] = [];
  readonly sinkErrors: string[] = [];
  readonly endpointsDown: string[] = [];
  readonly reorgs: Array<{ depth: number; pastWindow: boolean }> = [];
  /** Returns `true` to make the sink throw for this call instead of taking it. */
  refuse: ((call: SinkCall, link: BlockLink) => boolean) | undefined;
  /** While set, the sink waits for it before it takes a block. */
  gate: Promise<void> | undefined;
  readonly #waiters = new Set<() => void>();

  constructor(seed: readonly BlockLink[] = []) {
    this.canonical = [...seed];
  }

  readonly options = {
    onBlock: async (block: ChainBlock): Promise<void> => {
      this.#push(() => this.offered.push(block.hash));
      await (this.gate ?? Promise.resolve());
      this.#refuse('block', block);
      this.#push(() => {
        const tip = this.canonical.at(-1);
        if (tip !== undefined && block.parentHash !== tip.hash) {
          this.broken.push(`block ${block.number} does not continue block ${tip.number}`);
        }
        this.canonical.push({ number: block.number, hash: block.hash, parentHash: block.parentHash });
        this.blocks.push(block);
      });
    },
    onRetract: async (link: BlockLink): Promise<void> => {
      await Promise.resolve();
      this.#refuse('retract', link);
      this.#push(() => {
        const tip = this.canonical.pop();
        if (tip?.hash !== link.hash) this.broken.push(`retraction of block ${link.number}, not the tip ${tip?.number}`);
        this.retracted.push(link);
      });
    },
    onSinkError: (error: unknown) => this.#push(() => this.sinkErrors.push(errorMessage(error))),
    onReorg: (depth: number, pastWindow: boolean) => this.#push(() => this.reorgs.push({ depth, pastWindow })),
    onFault: (fault: RpcFaultError, url: string) => this.#push(() => this.faults.push({ fault, url })),
    onError: (error: unknown) => this.#push(() => this.errors.push(errorMessage(error))),
    onEndpoint: (url: string, up: boolean) => {
      if (!up) this.#push(() => this.endpointsDown.push(url));
    },
  };

  #refuse(call: SinkCall, link: BlockLink): void {
    if (this.refuse?.(call, link) === true) throw new Error(`the log is unreachable (${call} ${link.number})`);
  }

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
  const recorders: Recorder[] = [];

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
    // Whatever happened, the sink was only ever asked to continue the chain it holds.
    for (const recorder of recorders.splice(0)) expect(recorder.broken).toEqual([]);
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
    recorders.push(recorder);
    const watcher = await watchChain({
      urls,
      ...TEST_WATCH_OPTIONS,
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

  it('announces the header of the next block (with its transaction count) before the block, and passes it by when the node replaces that block', async () => {
    const chain = new FakeChain({ height: 5, txsPerBlock: 3 });
    const fake = await node(chain);
    const recorder = new Recorder();
    /** Sink calls in order: `head N hash` and `block N hash`. */
    const calls: string[] = [];
    const heads: ChainBlock[] = [];
    const onBlock = recorder.options.onBlock;
    await watch([fake.wsUrl], recorder, {
      // Long enough that only newHeads wakes it at first; the failed round is tried again soon.
      pollIntervalMs: 2_000,
      onHead: async (head) => {
        heads.push(head);
        calls.push(`head ${head.number} ${head.hash}`);
      },
      onBlock: async (block) => {
        calls.push(`block ${block.number} ${block.hash}`);
        await onBlock(block);
      },
    });
    await fake.waitForCalls('eth_subscribe', 1, { match: (p) => p[0] === 'newHeads' });
    const mined = chain.mine();
    await recorder.until(() => recorder.has(mined.hash), 'block 6', 5000);
    expect(calls.slice(-2)).toEqual([`head 6 ${mined.hash}`, `block 6 ${mined.hash}`]);
    expect(heads[0]).toMatchObject({ number: 6, hash: mined.hash, headerOnly: true, txCount: 3, transactions: [] });
    expect(recorder.blocks.at(-1)?.transactions).toHaveLength(3);

    // The node announces block 7, fails to give it, and then has another block 7 instead.
    fake.inject({ method: 'eth_getBlockByHash', fault: { kind: 'error', code: -32000, message: 'not yet' } });
    const announced = chain.mine();
    await fake.waitForCalls('eth_getBlockByHash', 1, { match: (p) => p[0] === announced.hash });
    // The header went to the sink in the same turn as that request.
    expect(calls.at(-1)).toBe(`head 7 ${announced.hash}`);
    chain.rewind(6);
    const replacing = chain.mine();
    await recorder.until(() => recorder.has(replacing.hash), 'the other block 7', 5000);
    expect(recorder.has(announced.hash)).toBe(false);
    expect(recorder.retracted).toEqual([]);
    expect(calls.indexOf(`head 7 ${announced.hash}`)).toBeLessThan(calls.indexOf(`block 7 ${replacing.hash}`));
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
    await recorder.until(() => recorder.blocks.length === 3, 'blocks 48 and 49 after the head at start');
    expect(recorder.blocks.map((b) => b.number)).toEqual([47, 48, 49]);
    expect(recorder.faults.map((f) => f.fault.message)).toEqual([
      "eth_getBlockByNumber(0x30) answered block 0x36 whose parent is block 47's hash",
    ]);
    expect(recorder.retracted).toEqual([]);
  });

  it('hands the node’s head to onBlock as the first block of a new log before it resolves', async () => {
    const chain = new FakeChain({ height: 12 });
    const fake = await node(chain);
    const recorder = new Recorder();
    const watcher = await watch([fake.url], recorder, { seed: async () => [] });
    expect(recorder.blocks.map((b) => b.hash)).toEqual([chain.head.hash]);
    expect(watcher.head()).toEqual(linkOf(chain.head));
  });

  it('moves its head only once the sink took the block', async () => {
    const chain = new FakeChain({ height: 5 });
    const fake = await node(chain);
    const recorder = new Recorder();
    const watcher = await watch([fake.url], recorder);
    let open: () => void = () => undefined;
    recorder.gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const mined = chain.mine();
    await recorder.until(() => recorder.offered.includes(mined.hash as Hex), 'the block offered');
    expect(watcher.head().number).toBe(mined.number - 1);
    recorder.gate = undefined;
    open();
    await recorder.until(() => recorder.has(mined.hash), 'the block taken');
    // The watcher goes on once the sink's promise resolved: every microtask runs before this.
    await new Promise((resolve) => setImmediate(resolve));
    expect(watcher.head()).toEqual(linkOf(mined));
  });

  it('offers a block the sink refused again next round, on the same endpoint, skipping and doubling nothing', async () => {
    const chain = new FakeChain({ height: 5 });
    const [first, second] = [await node(chain), await node(chain)];
    const recorder = new Recorder();
    const watcher = await watch([first.url, second.url], recorder);
    let refused = 0;
    const target = chain.head.number + 2;
    recorder.refuse = (call, link) => call === 'block' && link.number === target && refused++ === 0;
    // A gap of three: the refusal lands in the middle of a backfill.
    const mined = chain.mine(3);
    await recorder.until(() => recorder.has(mined.hash), 'the blocks after the refusal');
    expect(refused).toBeGreaterThanOrEqual(2);
    expect(recorder.sinkErrors).toEqual([`the log is unreachable (block ${target})`]);
    expect(recorder.offered.filter((hash) => hash === chain.blocks[target]?.hash)).toHaveLength(2);
    expect(recorder.blocks.map((b) => b.number)).toEqual([5, 6, 7, 8]);
    for (let i = 1; i < recorder.blocks.length; i++) {
      expect(recorder.blocks[i]?.parentHash).toBe(recorder.blocks[i - 1]?.hash);
    }
    // Not the node's fault: no failover, nothing reported against an endpoint.
    expect(watcher.currentUrl()).toBe(first.url);
    expect(recorder.faults).toEqual([]);
    expect(recorder.endpointsDown).toEqual([]);
    expect(recorder.errors).toEqual([]);
    expect(second.requests).toEqual([]);
  });

  it('retries the first block at start when the sink refuses it, and rejects when it never takes it', async () => {
    const chain = new FakeChain({ height: 5 });
    const fake = await node(chain);
    const once = new Recorder();
    let refused = 0;
    once.refuse = () => refused++ === 0;
    await watch([fake.url], once);
    expect(once.blocks.map((b) => b.hash)).toEqual([chain.head.hash]);
    expect(once.sinkErrors).toHaveLength(1);

    const never = new Recorder();
    never.refuse = () => true;
    const started = watch([fake.url], never);
    await expect(started).rejects.toThrow(SinkError);
    await expect(started).rejects.toThrow(
      /^the first block was not taken in 3 tries, 20 ms apart: the log is unreachable \(block 5\)$/,
    );
    expect(never.sinkErrors).toHaveLength(3);
  });

  it('catches up from a seed tail behind the node, from its tip', async () => {
    const chain = new FakeChain({ height: 20 });
    const fake = await node(chain);
    const tail = chain.blocks.slice(10, 15).map(linkOf);
    const recorder = new Recorder(tail);
    const backfilled: number[] = [];
    const seeded: number[] = [];
    const watcher = await watch([fake.url], recorder, {
      seed: async (chainId) => {
        seeded.push(chainId);
        return tail;
      },
      onBackfill: (blocks) => backfilled.push(blocks),
    });
    expect(seeded).toEqual([1337]);
    expect(recorder.blocks).toEqual([]);
    expect(watcher.head()).toEqual(tail.at(-1));
    await recorder.until(() => recorder.has(chain.head.hash), 'the node’s head');
    expect(recorder.blocks.map((b) => b.number)).toEqual([15, 16, 17, 18, 19, 20]);
    expect(recorder.retracted).toEqual([]);
    expect(backfilled).toEqual([5]);
  });

  it('retracts a seed tail whose tip the node reorged away, then applies the new branch', async () => {
    const chain = new FakeChain({ height: 18 });
    const fake = await node(chain);
    const tail = chain.blocks.slice(10, 19).map(linkOf);
    chain.rewind(15);
    const head = chain.mine(5);
    const recorder = new Recorder(tail);
    await watch([fake.url], recorder, { seed: async () => tail });
    await recorder.until(() => recorder.has(head.hash), 'the new branch');
    expect(recorder.retracted.map((l) => l.number)).toEqual([18, 17, 16]);
    expect(recorder.blocks.map((b) => b.hash)).toEqual(chain.blocks.slice(16).map((b) => b.hash));
    expect(recorder.reorgs).toEqual([{ depth: 3, pastWindow: false }]);
    expect(recorder.canonical).toEqual(chain.blocks.slice(10).map(linkOf));
  });

  it('keeps a window whose head is still in the sink when a retraction fails half-way', async () => {
    const chain = new FakeChain({ height: 18 });
    const fake = await node(chain);
    const tail = chain.blocks.slice(10, 19).map(linkOf);
    chain.rewind(15);
    const head = chain.mine(5);
    const recorder = new Recorder(tail);
    let refused = 0;
    recorder.refuse = (call, link) => call === 'retract' && link.number === 17 && refused++ === 0;
    await watch([fake.url], recorder, { seed: async () => tail });
    await recorder.until(() => recorder.has(head.hash), 'the new branch');
    expect(recorder.sinkErrors).toHaveLength(1);
    expect(recorder.retracted.map((l) => l.number)).toEqual([18, 17, 16]);
    expect(recorder.canonical).toEqual(chain.blocks.slice(10).map(linkOf));
    expect(recorder.faults).toEqual([]);
  });

  it('retracts all of a seed tail that has no ancestor on the node, and follows the node', async () => {
    const chain = new FakeChain({ height: 18 });
    const fake = await node(chain);
    const tail = chain.blocks.slice(10, 19).map(linkOf);
    chain.rewind(5);
    const head = chain.mine(20);
    const recorder = new Recorder(tail);
    await watch([fake.url], recorder, { seed: async () => tail });
    await recorder.until(() => recorder.has(head.hash), 'the node’s branch');
    expect(recorder.retracted.map((l) => l.number)).toEqual([18, 17, 16, 15, 14, 13, 12, 11, 10]);
    expect(recorder.reorgs).toEqual([{ depth: 9, pastWindow: true }]);
    expect(recorder.blocks.map((b) => b.hash)).toEqual(chain.blocks.slice(10).map((b) => b.hash));
  });

  it('refuses a seed tail that is not one chain', async () => {
    const chain = new FakeChain({ height: 18 });
    const fake = await node(chain);
    const tail = [chain.blocks[10], chain.blocks[12]].map((b) => linkOf(b as FakeBlock));
    await expect(watch([fake.url], new Recorder(), { seed: async () => tail })).rejects.toThrow(
      /^seed: the log's tail is not one chain: block 12 \(0x[0-9a-f]{64}\) does not continue block 10/,
    );
  });
});
