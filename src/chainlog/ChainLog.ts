/**
 * The chain log: per chain, the append-only record of what its canonical chain did, the spine
 * between ingest (its only writer, one leader per chain) and every gateway (its readers). An
 * `add` entry carries a block with its decoded events; a `head` entry announces a block by its
 * header alone, as soon as the node did, before its transactions are fetched (the `add` of the
 * same hash completes it); a `retract` entry undoes the log's tip (a reorg, newest block first). Entries have dense, monotone offsets within an epoch; the epoch
 * changes when the log is reset (a Redis that lost its data), and a reader then starts over.
 *
 * Two backends implement it: in-process ({@link ./MemoryLog.ts}, what `npm start` uses) and
 * Redis Streams ({@link ./RedisLog.ts}, `--redis`). Only the Redis backend imports `redis`.
 */
import type { BlockLink, ChainBlock } from '../domain/types.ts';

/**
 * What a writer appends: a block on top of the tip, a block's header on top of the tip
 * (`block.headerOnly`), or the retraction of the tip. An `add` with `restart` starts a new branch
 * whose parent the log may not hold: ingest found no common ancestor among the blocks it holds (a
 * reorg deeper than its window, a node reset) and retracted them all.
 *
 * A header is an announcement: a tip that is a header not yet completed is retracted by the log
 * itself, in the same atomic append, when the next entry continues its parent instead of it (the
 * node's block at that height turned out to be another, or ingest walks back past it). So the
 * writer never has to know whether an announcement it sent reached the log.
 */
export type LogAppend =
  | { readonly kind: 'add'; readonly block: ChainBlock; readonly restart?: boolean }
  | { readonly kind: 'head'; readonly block: ChainBlock }
  | { readonly kind: 'retract'; readonly link: BlockLink };

/**
 * One entry of the log, as readers get it; `appendedAt` is when the writer appended it (ms since
 * the epoch, the writer's clock), for the time the log adds.
 */
export type LogEntry =
  | { readonly kind: 'add'; readonly offset: number; readonly appendedAt?: number; readonly block: ChainBlock }
  | { readonly kind: 'head'; readonly offset: number; readonly appendedAt?: number; readonly block: ChainBlock }
  | { readonly kind: 'retract'; readonly offset: number; readonly appendedAt?: number; readonly link: BlockLink };

/** The writer of one chain's log, held by the ingest process that leads the chain. */
export interface ChainLogWriter {
  readonly chainId: number;
  /** The fencing epoch of the lease this writer holds: it grows with every new leader. */
  readonly fence: number;
  /**
   * The canonical tail of the log: up to `count` blocks, oldest first, ending at the newest whole
   * block (a header not yet completed is left out); empty for a new (or reset) log. Ingest
   * continues from it.
   */
  tail(count: number): Promise<BlockLink[]>;
  /**
   * Appends one entry, atomically with the lease check: only while this writer leads the chain
   * ({@link LeaseLostError} otherwise). An `add` or a `head` must continue the tip (its parent is
   * the tip, the log is empty, or it is a `restart`; an `add` may also complete the header at the
   * tip) and a `retract` must name the tip ({@link LogConflictError} otherwise), where an
   * uncompleted header at the tip is first retracted if the entry continues its parent (see
   * {@link LogAppend}). An `add` of the block that is already the tip, or a `head` of a block the
   * log has at its tip (idempotency key `chainId:number:hash`), does nothing. Resolves once the
   * entry is in the log.
   */
  append(entry: LogAppend): Promise<void>;
}

/** A lease on writing one chain's log: one leader per chain among every ingest process. */
export interface ChainLease {
  /** Resolves with the writer once this process leads the chain (at once in-process). */
  readonly acquired: Promise<ChainLogWriter>;
  /** Resolves when the lease is lost after it was acquired (taken over, expired, Redis gone). */
  readonly lost: Promise<void>;
  /** Gives the lease up (another process may take over at once) and stops trying. */
  readonly release: () => Promise<void>;
}

/** What a reader reports besides entries. */
export interface ReadHandlers {
  /** Each entry once, in offset order: first those of the recent window, then new ones. */
  readonly onEntry: (entry: LogEntry) => void;
  /**
   * The log was reset (its epoch changed): what was read before is not part of it. Called before
   * the first entry of the new epoch.
   */
  readonly onReset?: (epoch: string) => void;
  /** The reader's link to the log went down (`false`) or came back (`true`). */
  readonly onConnected?: (connected: boolean) => void;
}

/** A running read of one chain's log. */
export interface LogReading {
  /** Resolves once the recent window was read (the reader can serve resumes). */
  readonly ready: Promise<void>;
  /** The offset of the last entry read, and the epoch it belongs to. */
  readonly position: () => { readonly epoch: string; readonly offset: number };
  readonly close: () => Promise<void>;
}

/** One backend of the chain log. */
export interface ChainLogBackend {
  readonly kind: 'memory' | 'redis';
  /**
   * Competes for the lease on writing a chain's log. `owner` names this process (it appears in
   * metrics and in the log's entries).
   */
  lead(chainId: number, owner: string): ChainLease;
  /**
   * Reads a chain's log: the entries that hold the last `windowBlocks` canonical blocks, then
   * every new entry as it is appended.
   */
  read(chainId: number, windowBlocks: number, handlers: ReadHandlers): LogReading;
  /** The chains whose logs exist, in the order they were first written. */
  chains(): Promise<number[]>;
  /** The leader of each chain's log and its fence, where known (for metrics and `/readyz`). */
  leaders(): Promise<ReadonlyMap<number, { readonly owner: string; readonly fence: number }>>;
  readonly close: () => Promise<void>;
}

/** An append by a writer that no longer holds the chain's lease. */
export class LeaseLostError extends Error {
  override readonly name = 'LeaseLostError';
}

/** An append that does not continue the log's tip (another writer moved it, or a bug). */
export class LogConflictError extends Error {
  override readonly name = 'LogConflictError';
}

/** The log's tip as the append rules see it: the newest block, and whether only its header is in. */
export interface LogTip extends BlockLink {
  readonly headerOnly?: boolean;
}

/**
 * What an append does to a log whose tip is `tip` (`undefined`: empty), by the rules of
 * {@link ChainLogWriter.append}: nothing (`same`), or write the entry (`write`), first retracting
 * the uncompleted header at the tip (`retractTip`), or refuse it (`conflict`). One function for
 * the in-process log; the Redis backend's append script follows the same rules.
 */
export function planAppend(
  tip: LogTip | undefined,
  change: LogAppend,
):
  | { readonly kind: 'same' }
  | { readonly kind: 'conflict' }
  | { readonly kind: 'write'; readonly retractTip: boolean } {
  const link = change.kind === 'retract' ? change.link : change.block;
  const announced = tip?.headerOnly === true;
  if (change.kind !== 'retract' && tip?.hash === link.hash) {
    return change.kind === 'add' && announced ? { kind: 'write', retractTip: false } : { kind: 'same' };
  }
  // An announced header that the entry passes by, continuing its parent instead: retracted first.
  const restart = change.kind === 'add' && change.restart === true;
  const retractTip =
    announced &&
    (change.kind === 'retract' ? link.hash === tip.parentHash : restart || link.parentHash === tip.parentHash);
  if (change.kind === 'retract') {
    return retractTip || tip?.hash === link.hash ? { kind: 'write', retractTip } : { kind: 'conflict' };
  }
  const below = retractTip ? (tip as LogTip).parentHash : tip?.hash;
  if (restart) return { kind: 'write', retractTip };
  // A block continues a whole block (never a header not yet completed); a header needs a tip.
  if (!retractTip && announced) return { kind: 'conflict' };
  if (below === undefined) return change.kind === 'add' ? { kind: 'write', retractTip } : { kind: 'conflict' };
  return link.parentHash === below ? { kind: 'write', retractTip } : { kind: 'conflict' };
}
