import { describe, expect, it } from 'vitest';
import {
  describeEntry as describeBranch,
  HEADER_RULES_EXPECTED,
  runHeaderRules,
} from '../../test/helpers/headerRules.ts';
import type { ChainBlock, Hex } from '../domain/types.ts';
import { LogConflictError, type LogEntry } from './ChainLog.ts';
import { createMemoryLog } from './MemoryLog.ts';

const hash = (branch: number, number: number): Hex =>
  `0x${branch.toString(16).padStart(2, '0')}${number.toString(16).padStart(62, '0')}`;

function block(number: number, branch = 0, parentBranch = branch): ChainBlock {
  return {
    chainId: 1,
    number,
    hash: hash(branch, number),
    parentHash: hash(parentBranch, number - 1),
    timestamp: 1_700_000_000 + number,
    miner: '0x0000000000000000000000000000000000000000',
    gasUsed: '0x0',
    gasLimit: '0x1',
    transactions: [],
  };
}

const describeEntry = (e: LogEntry): string =>
  e.kind === 'retract' ? `${e.offset} retract ${e.link.number}` : `${e.offset} ${e.kind} ${e.block.number}`;

describe('the in-process chain log', () => {
  it('hands each entry to every reader at once, in order, with dense offsets; a late reader gets what is held first', async () => {
    const log = createMemoryLog();
    const writer = await log.lead(1, 'me').acquired;
    const early: string[] = [];
    log.read(1, 16, { onEntry: (e) => early.push(describeEntry(e)) });
    await writer.append({ kind: 'add', block: block(10) });
    await writer.append({ kind: 'add', block: block(11) });
    await writer.append({ kind: 'retract', link: block(11) });
    await writer.append({ kind: 'add', block: block(11, 1, 0) });
    const late: string[] = [];
    const reading = log.read(1, 16, { onEntry: (e) => late.push(describeEntry(e)) });
    const expected = ['1 add 10', '2 add 11', '3 retract 11', '4 add 11'];
    expect(early).toEqual(expected);
    expect(late).toEqual(expected);
    expect(reading.position().offset).toBe(4);
    expect(await writer.tail(8)).toEqual(
      [10, 11].map((n, i) => ({ number: n, hash: hash(i, n), parentHash: hash(0, n - 1) })),
    );
    expect(await log.chains()).toEqual([1]);
  });

  it('keeps the tip continuous: an add that does not continue it and a retraction of another block are refused; a repeated add does nothing', async () => {
    const log = createMemoryLog();
    const writer = await log.lead(1, 'me').acquired;
    const seen: string[] = [];
    log.read(1, 16, { onEntry: (e) => seen.push(describeEntry(e)) });
    await writer.append({ kind: 'add', block: block(5) });
    await writer.append({ kind: 'add', block: block(5) });
    await expect(writer.append({ kind: 'add', block: block(7) })).rejects.toBeInstanceOf(LogConflictError);
    await expect(writer.append({ kind: 'retract', link: block(4) })).rejects.toBeInstanceOf(LogConflictError);
    expect(seen).toEqual(['1 add 5']);
  });

  it("a reader's exception is reported and felt by nobody else: the writer and the other readers go on", async () => {
    const errors: unknown[] = [];
    const log = createMemoryLog({ onReaderError: (error) => errors.push(error) });
    const writer = await log.lead(1, 'me').acquired;
    const seen: number[] = [];
    log.read(1, 16, {
      onEntry: () => {
        throw new Error('fan-out bug');
      },
    });
    log.read(1, 16, { onEntry: (e) => seen.push(e.offset) });
    await writer.append({ kind: 'add', block: block(1) });
    await writer.append({ kind: 'add', block: block(2) });
    expect(seen).toEqual([1, 2]);
    expect(errors).toHaveLength(2);
  });

  it('holds a bounded number of entries', async () => {
    const log = createMemoryLog({ maxEntriesPerChain: 4 });
    const writer = await log.lead(1, 'me').acquired;
    for (let n = 1; n <= 10; n++) await writer.append({ kind: 'add', block: block(n) });
    const late: number[] = [];
    log.read(1, 16, { onEntry: (e) => late.push(e.offset) });
    expect(late).toEqual([7, 8, 9, 10]);
    expect((await writer.tail(100)).map((l) => l.number)).toEqual([7, 8, 9, 10]);
  });

  it('announces a block by its header: completed by the block, retracted by the log when the next entry passes it by, left out of the tail', async () => {
    const log = createMemoryLog();
    const seen: string[] = [];
    log.read(7, 16, { onEntry: (e) => seen.push(describeBranch(e)) });
    expect(await runHeaderRules(log, 7, async () => seen)).toEqual(HEADER_RULES_EXPECTED);
  });
});
