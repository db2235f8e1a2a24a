import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ChainLogBackend, ChainLogWriter } from '../src/chainlog/ChainLog.ts';
import { LeaseLostError, LogConflictError, type LogEntry, type ReadHandlers } from '../src/chainlog/ChainLog.ts';
import { createRedisLog } from '../src/chainlog/RedisLog.ts';
import type { BlockLink, ChainBlock, Hex } from '../src/domain/types.ts';
import { describeEntry, HEADER_RULES_EXPECTED, runHeaderRules } from './helpers/headerRules.ts';
import { freePort } from './helpers/ports.ts';
import { type RedisServer, startRedis } from './helpers/redis.ts';

// The Redis backend of the chain log against a real redis-server: appends and reads, the
// lease between competing writers, a Redis restart and a Redis that lost its data.

const CHAIN = 31_337;
const LEASE_MS = 900;

/** A 32-byte hash for block `number` of the branch `branch` (one hex digit). */
function hashOf(number: number, branch: string): Hex {
  return `0x${branch}${number.toString(16).padStart(63, '0')}` as Hex;
}

const GENESIS_PARENT = `0x${'0'.repeat(64)}` as Hex;

/** Block `number` of branch `branch`, on top of `parentHash`, with a transaction, a header and a log. */
function makeBlock(number: number, parentHash: Hex, branch = 'a'): ChainBlock {
  const hash = hashOf(number, branch);
  const address = `0x${'ab'.repeat(20)}` as Hex;
  return {
    chainId: CHAIN,
    number,
    hash,
    parentHash,
    timestamp: 1_700_000_000 + number,
    miner: `0x${'11'.repeat(20)}` as Hex,
    gasUsed: '0x5208',
    gasLimit: '0x1c9c380',
    baseFeePerGas: '0x3b9aca00',
    transactions: [
      {
        hash: hashOf(number, 'f'),
        index: 0,
        from: `0x${'22'.repeat(20)}` as Hex,
        to: address,
        value: '0xde0b6b3a7640000',
        nonce: number,
        status: 1,
        gas: '0x5208',
        input: '0x',
      },
    ],
    header: {
      number: `0x${number.toString(16)}`,
      hash,
      parentHash,
      extraData: '0x',
      nested: { list: [1, 'two', null] },
    },
    logs: [{ address, topics: [hashOf(1, 'e')], raw: { address, data: '0x01', logIndex: '0x0', blockNumber: number } }],
  };
}

/** A linked chain of `count` blocks from `first`, on top of `parentHash`. */
function makeChain(first: number, count: number, parentHash: Hex, branch = 'a'): ChainBlock[] {
  const blocks: ChainBlock[] = [];
  let parent = parentHash;
  for (let number = first; number < first + count; number++) {
    const block = makeBlock(number, parent, branch);
    blocks.push(block);
    parent = block.hash;
  }
  return blocks;
}

function linkOf(block: ChainBlock): BlockLink {
  return { number: block.number, hash: block.hash, parentHash: block.parentHash };
}

/** Rejects when `promise` does not settle within `timeoutMs`. */
function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Whether `promise` is still pending after `ms` (the wait is the observation). */
async function pendingAfter(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const marker = Symbol('pending');
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    promise,
    new Promise((resolve) => {
      timer = setTimeout(() => resolve(marker), ms);
    }),
  ]);
  clearTimeout(timer);
  return result === marker;
}

/**
 * Appends as ingest does: a failure of the connection (not of the lease or the tip) is tried
 * again, a bounded number of times.
 */
async function appendRetrying(writer: ChainLogWriter, block: ChainBlock): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await writer.append({ kind: 'add', block });
      return;
    } catch (error) {
      if (attempt === 40 || error instanceof LeaseLostError || error instanceof LogConflictError) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** What a reader got, with waits on it that end on the event (bounded). */
class Recorder {
  readonly entries: LogEntry[] = [];
  readonly resets: string[] = [];
  readonly connected: boolean[] = [];
  readonly #waiters = new Set<() => void>();
  readonly handlers: ReadHandlers = {
    onEntry: (entry) => {
      this.entries.push(entry);
      this.#notify();
    },
    onReset: (epoch) => {
      this.resets.push(epoch);
      this.#notify();
    },
    onConnected: (connected) => {
      this.connected.push(connected);
      this.#notify();
    },
  };

  get offsets(): number[] {
    return this.entries.map((entry) => entry.offset);
  }

  until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!condition()) return;
        finish();
        resolve();
      };
      const finish = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`${what}: not within ${timeoutMs} ms (offsets read: ${this.offsets.join(', ')})`));
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  #notify(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}

describe('the chain log on Redis Streams', () => {
  let redis: RedisServer;
  const backends: ChainLogBackend[] = [];

  const open = async (): Promise<ChainLogBackend> => {
    const log = await createRedisLog({ url: redis.url, leaseMs: LEASE_MS });
    backends.push(log);
    return log;
  };

  const leadNow = async (log: ChainLogBackend, owner: string): Promise<ChainLogWriter> =>
    within(log.lead(CHAIN, owner).acquired, 5000, `${owner} taking the lease`);

  beforeAll(async () => {
    redis = await startRedis();
  });

  beforeEach(async () => {
    await redis.flush();
  });

  afterEach(async () => {
    await Promise.all(backends.splice(0).map((log) => log.close()));
  });

  afterAll(async () => {
    await redis?.close();
  });

  it('appends blocks and reads them back in order, with dense offsets and the same blocks', async () => {
    const writerLog = await open();
    const readerLog = await open();
    const writer = await leadNow(writerLog, 'ingest-a');
    expect(writer.fence).toBeGreaterThanOrEqual(1);
    const blocks = makeChain(1, 5, GENESIS_PARENT);
    for (const block of blocks) await writer.append({ kind: 'add', block });

    const recorder = new Recorder();
    const reading = readerLog.read(CHAIN, 128, recorder.handlers);
    await within(reading.ready, 5000, 'the reader ready');
    expect(recorder.offsets).toEqual([1, 2, 3, 4, 5]);
    expect(recorder.entries.map((entry) => (entry.kind === 'add' ? entry.block : undefined))).toEqual(blocks);
    expect(recorder.entries.every((entry) => typeof entry.appendedAt === 'number')).toBe(true);
    expect(reading.position()).toEqual({ epoch: expect.any(String), offset: 5 });
    expect(await readerLog.chains()).toEqual([CHAIN]);
    expect(await readerLog.leaders()).toEqual(new Map([[CHAIN, { owner: 'ingest-a', fence: writer.fence }]]));
    expect(await writer.tail(3)).toEqual(blocks.slice(2).map(linkOf));
  });

  it('gives a late reader the stream it missed, then the entries appended after', async () => {
    const writer = await leadNow(await open(), 'ingest-a');
    const blocks = makeChain(100, 6, hashOf(99, 'a'));
    for (const block of blocks.slice(0, 3)) await writer.append({ kind: 'add', block });

    const recorder = new Recorder();
    const reading = (await open()).read(CHAIN, 128, recorder.handlers);
    await within(reading.ready, 5000, 'the reader ready');
    expect(recorder.offsets).toEqual([1, 2, 3]);
    for (const block of blocks.slice(3)) await writer.append({ kind: 'add', block });
    await recorder.until(() => recorder.entries.length >= 6, 'the live entries');
    expect(recorder.offsets).toEqual([1, 2, 3, 4, 5, 6]);
    expect(recorder.entries.map((entry) => (entry.kind === 'add' ? entry.block.number : -1))).toEqual(
      blocks.map((block) => block.number),
    );
    await reading.close();
  });

  it('reads several chains on one blocking connection, and lists chains in the order first written', async () => {
    const OTHER = 10;
    const writerLog = await open();
    const readerLog = await open();
    const other = await within(writerLog.lead(OTHER, 'ingest-a').acquired, 5000, 'leading the other chain');
    const main = await leadNow(writerLog, 'ingest-a');
    await other.append({ kind: 'add', block: { ...makeBlock(1, GENESIS_PARENT), chainId: OTHER } });
    await main.append({ kind: 'add', block: makeBlock(1, GENESIS_PARENT) });

    const mainRecorder = new Recorder();
    const otherRecorder = new Recorder();
    const readings = [
      readerLog.read(CHAIN, 128, mainRecorder.handlers),
      readerLog.read(OTHER, 128, otherRecorder.handlers),
    ];
    await within(Promise.all(readings.map((reading) => reading.ready)), 5000, 'both readers ready');
    const second = makeBlock(2, hashOf(1, 'a'));
    await main.append({ kind: 'add', block: second });
    await other.append({ kind: 'add', block: { ...second, chainId: OTHER } });
    await mainRecorder.until(() => mainRecorder.entries.length === 2, 'the main chain');
    await otherRecorder.until(() => otherRecorder.entries.length === 2, 'the other chain');
    expect(otherRecorder.entries.map((entry) => (entry.kind === 'add' ? entry.block.chainId : 0))).toEqual([
      OTHER,
      OTHER,
    ]);
    expect(await readerLog.chains()).toEqual([OTHER, CHAIN]);
    const clients = String(await redis.command('CLIENT', 'LIST'));
    // One reader connection per backend (two backends here), however many chains each reads.
    expect(clients.match(/name=blockcast-reader/g)).toHaveLength(2);
  });

  it('does nothing on a repeated add of the tip', async () => {
    const writer = await leadNow(await open(), 'ingest-a');
    const [first, second] = makeChain(1, 2, GENESIS_PARENT) as [ChainBlock, ChainBlock];
    await writer.append({ kind: 'add', block: first });
    await writer.append({ kind: 'add', block: second });
    await writer.append({ kind: 'add', block: second });

    const recorder = new Recorder();
    await within((await open()).read(CHAIN, 128, recorder.handlers).ready, 5000, 'the reader ready');
    expect(recorder.offsets).toEqual([1, 2]);
    expect(await writer.tail(10)).toEqual([linkOf(first), linkOf(second)]);
  });

  it('rejects an add that does not continue the tip, and a retract of anything but the tip', async () => {
    const writer = await leadNow(await open(), 'ingest-a');
    await expect(writer.append({ kind: 'retract', link: linkOf(makeBlock(1, GENESIS_PARENT)) })).rejects.toBeInstanceOf(
      LogConflictError,
    );
    const [first, second] = makeChain(1, 2, GENESIS_PARENT) as [ChainBlock, ChainBlock];
    await writer.append({ kind: 'add', block: first });
    await writer.append({ kind: 'add', block: second });
    await expect(writer.append({ kind: 'add', block: makeBlock(3, hashOf(2, 'b'), 'b') })).rejects.toThrow(
      /block 3 .* does not continue the tip: the log's tip is block 2/,
    );
    await expect(writer.append({ kind: 'retract', link: linkOf(first) })).rejects.toBeInstanceOf(LogConflictError);
    expect(await writer.tail(10)).toEqual([linkOf(first), linkOf(second)]);
  });

  it('keeps the canonical tail across retracts', async () => {
    const writer = await leadNow(await open(), 'ingest-a');
    const [one, two, three] = makeChain(1, 3, GENESIS_PARENT) as [ChainBlock, ChainBlock, ChainBlock];
    for (const block of [one, two, three]) await writer.append({ kind: 'add', block });
    await writer.append({ kind: 'retract', link: linkOf(three) });
    await writer.append({ kind: 'retract', link: linkOf(two) });
    const branch = makeChain(2, 2, one.hash, 'b');
    for (const block of branch) await writer.append({ kind: 'add', block });

    expect(await writer.tail(10)).toEqual([one, ...branch].map(linkOf));
    expect(await writer.tail(2)).toEqual(branch.map(linkOf));
    await expect(writer.append({ kind: 'add', block: makeBlock(4, three.hash) })).rejects.toBeInstanceOf(
      LogConflictError,
    );

    const recorder = new Recorder();
    await within((await open()).read(CHAIN, 128, recorder.handlers).ready, 5000, 'the reader ready');
    expect(recorder.offsets).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(recorder.entries.map((entry) => entry.kind)).toEqual([
      'add',
      'add',
      'add',
      'retract',
      'retract',
      'add',
      'add',
    ]);
    expect(recorder.entries[3]).toMatchObject({ kind: 'retract', link: linkOf(three) });
  });

  it('announces a block by its header as the in-process log does: completed, retracted when passed by, left out of the tail', async () => {
    const log = await open();
    const readAll = async (): Promise<string[]> => {
      const recorder = new Recorder();
      const reading = (await open()).read(CHAIN, 128, recorder.handlers);
      await within(reading.ready, 5000, 'the reader ready');
      return recorder.entries.map(describeEntry);
    };
    expect(await runHeaderRules(log, CHAIN, readAll)).toEqual(HEADER_RULES_EXPECTED);
    // A header round trip keeps what it carries.
    const recorder = new Recorder();
    (await open()).read(CHAIN, 128, recorder.handlers);
    await recorder.until(() => recorder.entries.length >= 14, 'the entries');
    const head = recorder.entries.find((entry) => entry.kind === 'head');
    expect(head?.kind === 'head' ? [head.block.headerOnly, head.block.txCount] : undefined).toEqual([true, 3]);
  });

  it('lets one of two owners lead, and the other take over with a higher fence after a release', async () => {
    const logA = await open();
    const logB = await open();
    const leaseA = logA.lead(CHAIN, 'ingest-a');
    const writerA = await within(leaseA.acquired, 5000, 'A taking the lease');
    const leaseB = logB.lead(CHAIN, 'ingest-b');
    expect(await pendingAfter(leaseB.acquired, LEASE_MS)).toBe(true);

    await leaseA.release();
    await within(leaseA.lost, 1000, 'A ending its lease');
    const writerB = await within(leaseB.acquired, LEASE_MS, 'B taking over after the release');
    expect(writerB.fence).toBeGreaterThan(writerA.fence);
    await expect(writerA.append({ kind: 'add', block: makeBlock(1, GENESIS_PARENT) })).rejects.toBeInstanceOf(
      LeaseLostError,
    );
    await writerB.append({ kind: 'add', block: makeBlock(1, GENESIS_PARENT) });
    expect((await logA.leaders()).get(CHAIN)).toEqual({ owner: 'ingest-b', fence: writerB.fence });
  });

  it('lets the standby take over within a lease when the leader dies without releasing', async () => {
    const logA = await open();
    const logB = await open();
    const writerA = await leadNow(logA, 'ingest-a');
    await writerA.append({ kind: 'add', block: makeBlock(1, GENESIS_PARENT) });
    const leaseB = logB.lead(CHAIN, 'ingest-b');
    expect(await pendingAfter(leaseB.acquired, LEASE_MS)).toBe(true);

    const diedAt = performance.now();
    await logA.close();
    const writerB = await within(leaseB.acquired, LEASE_MS + LEASE_MS / 3 + 500, 'B taking over');
    expect(performance.now() - diedAt).toBeLessThan(LEASE_MS + LEASE_MS / 3 + 500);
    expect(writerB.fence).toBeGreaterThan(writerA.fence);
    await expect(writerA.append({ kind: 'add', block: makeBlock(2, hashOf(1, 'a')) })).rejects.toBeInstanceOf(
      LeaseLostError,
    );
    expect(await writerB.tail(5)).toEqual([linkOf(makeBlock(1, GENESIS_PARENT))]);
  });

  it('fences out a writer whose lease another took while it still runs', async () => {
    const logA = await open();
    const logB = await open();
    const leaseA = logA.lead(CHAIN, 'ingest-a');
    const writerA = await within(leaseA.acquired, 5000, 'A taking the lease');
    const leaseB = logB.lead(CHAIN, 'ingest-b');
    // The lease vanishes (as when it expired while A was paused): B takes it.
    await redis.command('DEL', `blockcast:{${CHAIN}}:lease`);
    const writerB = await within(leaseB.acquired, LEASE_MS, 'B taking the lease');
    // A's renewal or the append's own check (in the script) sees it first: either way it rejects.
    await expect(writerA.append({ kind: 'add', block: makeBlock(1, GENESIS_PARENT) })).rejects.toThrow(
      /ingest-a \(fence \d+\) no longer leads its log/,
    );
    await within(leaseA.lost, 1000, 'A seeing its lease lost');
    await writerB.append({ kind: 'add', block: makeBlock(1, GENESIS_PARENT) });
  });

  it('rides dropped connections (CLIENT KILL): the lease stays, the reader goes on without a gap', async () => {
    const logA = await open();
    const leaseA = logA.lead(CHAIN, 'ingest-a');
    const writerA = await within(leaseA.acquired, 5000, 'A taking the lease');
    const blocks = makeChain(1, 4, GENESIS_PARENT);
    for (const block of blocks.slice(0, 2)) await writerA.append({ kind: 'add', block });
    const recorder = new Recorder();
    const reading = (await open()).read(CHAIN, 128, recorder.handlers);
    await within(reading.ready, 5000, 'the reader ready');

    await redis.command('CLIENT', 'KILL', 'TYPE', 'normal');
    await recorder.until(() => recorder.connected.at(-1) === true, 'the reader back');
    for (const block of blocks.slice(2)) await appendRetrying(writerA, block);
    await recorder.until(() => recorder.entries.length >= 4, 'the entries after the kill');
    expect(recorder.offsets).toEqual([1, 2, 3, 4]);
    expect(await pendingAfter(leaseA.lost, LEASE_MS)).toBe(true);
    expect((await logA.leaders()).get(CHAIN)).toEqual({ owner: 'ingest-a', fence: writerA.fence });
  });

  it('rides a Redis restart: the reader goes on from where it was, and the lease can be taken again', async () => {
    const logA = await open();
    const readerLog = await open();
    const leaseA = logA.lead(CHAIN, 'ingest-a');
    const writerA = await within(leaseA.acquired, 5000, 'A taking the lease');
    const blocks = makeChain(1, 6, GENESIS_PARENT);
    for (const block of blocks.slice(0, 3)) await writerA.append({ kind: 'add', block });
    const recorder = new Recorder();
    const reading = readerLog.read(CHAIN, 128, recorder.handlers);
    await within(reading.ready, 5000, 'the reader ready');
    const epoch = reading.position().epoch;

    await redis.stop();
    await recorder.until(() => recorder.connected.includes(false), 'the reader seeing Redis gone');
    await within(leaseA.lost, 2 * LEASE_MS, 'A losing its lease');
    await expect(writerA.append({ kind: 'add', block: blocks[3] as ChainBlock })).rejects.toBeInstanceOf(
      LeaseLostError,
    );
    // Redis stays down for 5 s: the outage being tested, not a wait for an event.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    await redis.start();
    await recorder.until(() => recorder.connected.at(-1) === true, 'the reader seeing Redis back');

    const writerA2 = await leadNow(logA, 'ingest-a');
    expect(writerA2.fence).toBeGreaterThan(writerA.fence);
    expect(await writerA2.tail(10)).toEqual(blocks.slice(0, 3).map(linkOf));
    for (const block of blocks.slice(3)) await writerA2.append({ kind: 'add', block });
    await recorder.until(() => recorder.entries.length >= 6, 'the entries after the restart');
    expect(recorder.offsets).toEqual([1, 2, 3, 4, 5, 6]);
    expect(recorder.connected).toEqual([false, true]);
    expect(recorder.resets).toEqual([]);
    expect(reading.position()).toEqual({ epoch, offset: 6 });
  }, 30_000);

  it('starts readers over when Redis lost its data: a reset, then the new epoch from offset 1', async () => {
    const logA = await open();
    const leaseA = logA.lead(CHAIN, 'ingest-a');
    const writerA = await within(leaseA.acquired, 5000, 'A taking the lease');
    for (const block of makeChain(1, 3, GENESIS_PARENT)) await writerA.append({ kind: 'add', block });
    const recorder = new Recorder();
    const reading = (await open()).read(CHAIN, 128, recorder.handlers);
    await within(reading.ready, 5000, 'the reader ready');
    const oldEpoch = reading.position().epoch;

    await redis.flush();
    await within(leaseA.lost, 2 * LEASE_MS, 'A seeing its lease gone');
    const writerA2 = await leadNow(logA, 'ingest-a');
    expect(await writerA2.tail(10)).toEqual([]);
    const fresh = makeChain(50, 2, hashOf(49, 'c'), 'c');
    for (const block of fresh) await writerA2.append({ kind: 'add', block });

    await recorder.until(() => recorder.entries.length >= 5, 'the entries of the new epoch');
    expect(recorder.resets).toHaveLength(1);
    expect(recorder.resets[0]).not.toBe(oldEpoch);
    expect(recorder.offsets).toEqual([1, 2, 3, 1, 2]);
    expect(recorder.entries.slice(3).map((entry) => (entry.kind === 'add' ? entry.block : undefined))).toEqual(fresh);
    expect(reading.position()).toEqual({ epoch: recorder.resets[0], offset: 2 });
    expect(await logA.chains()).toEqual([CHAIN]);
  });

  it('fails at start with a clear error, without the credentials, when Redis cannot be reached', async () => {
    const closedPort = await freePort();
    const attempt = createRedisLog({ url: `redis://someone:s3cret@127.0.0.1:${closedPort}` });
    const error = await within(
      attempt.then(
        () => undefined,
        (failure: unknown) => failure,
      ),
      10_000,
      'the start failing',
    );
    expect(String(error)).toMatch(new RegExp(`redis: cannot reach redis://127\\.0\\.0\\.1:${closedPort}`));
    expect(String(error)).not.toContain('s3cret');
  }, 15_000);
});
