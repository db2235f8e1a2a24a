import type { ChainLogBackend, LogEntry } from '../../src/chainlog/ChainLog.ts';
import type { ChainBlock, Hex } from '../../src/domain/types.ts';

/** A 32-byte hash for block `number` of branch `branch` (one hex digit). */
function hashOf(number: number, branch: string): Hex {
  return `0x${branch}${number.toString(16).padStart(63, '0')}` as Hex;
}

/** Block `number` of branch `branch` on the parent of branch `parent`; `headerOnly` as a `head` entry carries it. */
function block(chainId: number, number: number, branch: string, parent: string, headerOnly = false): ChainBlock {
  return {
    chainId,
    number,
    hash: hashOf(number, branch),
    parentHash: hashOf(number - 1, parent),
    timestamp: 1_700_000_000 + number,
    miner: `0x${'11'.repeat(20)}` as Hex,
    gasUsed: '0x0',
    gasLimit: '0x1c9c380',
    transactions: [],
    ...(headerOnly ? { headerOnly: true as const, txCount: 3 } : {}),
  };
}

/** An entry as `offset kind number branch` (the branch is the hash's first hex digit). */
export function describeEntry(entry: LogEntry): string {
  const link = entry.kind === 'retract' ? entry.link : entry.block;
  return `${entry.offset} ${entry.kind} ${link.number}${link.hash.slice(2, 3)}`;
}

/**
 * The rules of `head` entries, the same on every backend: a header is completed by its block,
 * retracted by the log when the next entry passes it by (a sibling block or header, a retraction
 * of its parent, a restart), never continued by a child; the tail leaves it out. Resolves with
 * what the writer was told and what a reader got, for the caller to compare.
 */
export async function runHeaderRules(
  log: ChainLogBackend,
  chainId: number,
  readAll: () => Promise<string[]>,
): Promise<{ entries: string[]; refused: string[]; tails: string[] }> {
  const writer = await log.lead(chainId, 'rules').acquired;
  const refused: string[] = [];
  const tails: string[] = [];
  const tail = async (): Promise<void> => {
    tails.push((await writer.tail(8)).map((link) => `${link.number}${link.hash.slice(2, 3)}`).join(','));
  };
  const b = (n: number, branch: string, parent: string, headerOnly = false) =>
    block(chainId, n, branch, parent, headerOnly);
  const refuse = async (what: string, append: () => Promise<void>): Promise<void> => {
    try {
      await append();
    } catch (error) {
      refused.push(`${what}: ${(error as Error).name}`);
    }
  };
  // A header on top, repeated (nothing), then completed by its block.
  await writer.append({ kind: 'add', block: b(10, 'a', 'a') });
  await writer.append({ kind: 'head', block: b(11, 'a', 'a', true) });
  await writer.append({ kind: 'head', block: b(11, 'a', 'a', true) });
  await tail();
  await writer.append({ kind: 'add', block: b(11, 'a', 'a') });
  await writer.append({ kind: 'add', block: b(11, 'a', 'a') });
  await tail();
  // A header passed by a sibling block: retracted by the log, in the same append.
  await writer.append({ kind: 'head', block: b(12, 'a', 'a', true) });
  await writer.append({ kind: 'add', block: b(12, 'b', 'a') });
  // A header replaced by a sibling header, then passed by the retraction of its parent.
  await writer.append({ kind: 'head', block: b(13, 'b', 'b', true) });
  await writer.append({ kind: 'head', block: b(13, 'c', 'b', true) });
  await refuse('a block on an uncompleted header', () => writer.append({ kind: 'add', block: b(14, 'c', 'c') }));
  await refuse('a header on an uncompleted header', () =>
    writer.append({ kind: 'head', block: b(14, 'c', 'c', true) }),
  );
  await refuse('a retraction below the header and its parent', () =>
    writer.append({ kind: 'retract', link: b(11, 'a', 'a') }),
  );
  await writer.append({ kind: 'retract', link: b(12, 'b', 'a') });
  await tail();
  // A restart passes any header by.
  await writer.append({ kind: 'head', block: b(12, 'd', 'a', true) });
  await writer.append({ kind: 'add', block: b(40, 'e', 'e'), restart: true });
  await tail();
  return { entries: await readAll(), refused, tails };
}

/** What {@link runHeaderRules} must give on every backend. */
export const HEADER_RULES_EXPECTED = {
  entries: [
    '1 add 10a',
    '2 head 11a',
    '3 add 11a',
    '4 head 12a',
    '5 retract 12a',
    '6 add 12b',
    '7 head 13b',
    '8 retract 13b',
    '9 head 13c',
    '10 retract 13c',
    '11 retract 12b',
    '12 head 12d',
    '13 retract 12d',
    '14 add 40e',
  ],
  refused: [
    'a block on an uncompleted header: LogConflictError',
    'a header on an uncompleted header: LogConflictError',
    'a retraction below the header and its parent: LogConflictError',
  ],
  tails: ['10a', '10a,11a', '10a,11a', '40e'],
};
