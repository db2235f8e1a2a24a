/**
 * The in-process chain log: what `npm start` uses. The writer and the readers are in one
 * process, so an append reaches every reader synchronously, before `append` resolves: the log
 * adds no latency and no copy. It keeps the same rules as the Redis backend (an `add` continues
 * the tip, a `retract` names it, a repeated `add` of the tip does nothing) so that the stages
 * around it behave the same on either.
 */
import {
  type ChainLease,
  type ChainLogBackend,
  type ChainLogWriter,
  type LogAppend,
  LogConflictError,
  type LogEntry,
  type LogReading,
  type LogTip,
  planAppend,
  type ReadHandlers,
} from './ChainLog.ts';

/** Options of {@link createMemoryLog}. */
export interface MemoryLogOptions {
  /** Entries kept per chain for late readers; older ones are dropped. @default 1024 */
  readonly maxEntriesPerChain?: number;
  /** A reader's handler threw: fan-out's fault, never the writer's (ingest goes on). */
  readonly onReaderError?: (error: unknown, chainId: number) => void;
}

interface Reader {
  readonly handlers: ReadHandlers;
  offset: number;
}

/** One chain's log in memory. */
class MemoryChainLog {
  readonly chainId: number;
  readonly epoch = crypto.randomUUID();
  readonly entries: LogEntry[] = [];
  readonly readers = new Set<Reader>();
  /** The canonical chain as the log holds it, oldest first (bounded like the entries). */
  readonly canonical: LogTip[] = [];
  offset = 0;
  owner: string | undefined;
  fence = 0;
  readonly #maxEntries: number;
  readonly #onReaderError: ((error: unknown, chainId: number) => void) | undefined;

  constructor(chainId: number, maxEntries: number, onReaderError?: (error: unknown, chainId: number) => void) {
    this.chainId = chainId;
    this.#maxEntries = maxEntries;
    this.#onReaderError = onReaderError;
  }

  get tip(): LogTip | undefined {
    return this.canonical.at(-1);
  }

  append(change: LogAppend): void {
    const plan = planAppend(this.tip, change);
    if (plan.kind === 'same') return;
    if (plan.kind === 'conflict') throw this.#conflict(change);
    if (plan.retractTip) {
      const { number, hash, parentHash } = this.tip as LogTip;
      this.#write({
        kind: 'retract',
        offset: this.offset + 1,
        appendedAt: Date.now(),
        link: { number, hash, parentHash },
      });
      this.canonical.pop();
    }
    const appendedAt = Date.now();
    if (change.kind === 'retract') {
      this.#write({ kind: 'retract', offset: this.offset + 1, appendedAt, link: change.link });
      this.canonical.pop();
      return;
    }
    const { block } = change;
    this.#write({ kind: change.kind, offset: this.offset + 1, appendedAt, block });
    // A header completed by its block is one link, now whole.
    if (this.tip?.hash === block.hash) this.canonical.pop();
    else if (change.kind === 'add' && change.restart === true) this.canonical.length = 0;
    const link = { number: block.number, hash: block.hash, parentHash: block.parentHash };
    this.canonical.push(change.kind === 'head' ? { ...link, headerOnly: true } : link);
    if (this.canonical.length > this.#maxEntries) this.canonical.shift();
  }

  #write(entry: LogEntry): void {
    this.offset = entry.offset;
    this.entries.push(entry);
    if (this.entries.length > this.#maxEntries) this.entries.shift();
    for (const reader of this.readers) this.deliver(reader, entry);
  }

  #conflict(change: LogAppend): LogConflictError {
    const tip = this.tip;
    const at =
      tip === undefined
        ? 'the log is empty'
        : `the log's tip is ${tip.headerOnly === true ? 'the header of ' : ''}block ${tip.number} (${tip.hash})`;
    const what =
      change.kind === 'retract'
        ? `the retraction of block ${change.link.number} (${change.link.hash}) does not name the tip`
        : `${change.kind === 'head' ? 'the header of ' : ''}block ${change.block.number} (${change.block.hash}) does not continue the tip`;
    return new LogConflictError(`chain ${this.chainId}: ${what}: ${at}`);
  }

  deliver(reader: Reader, entry: LogEntry): void {
    reader.offset = entry.offset;
    try {
      reader.handlers.onEntry(entry);
    } catch (error) {
      this.#onReaderError?.(error, this.chainId);
    }
  }
}

/** The in-process backend: one lease holder per chain in this process, readers called in line. */
export function createMemoryLog(options: MemoryLogOptions = {}): ChainLogBackend {
  const maxEntries = options.maxEntriesPerChain ?? 1024;
  const logs = new Map<number, MemoryChainLog>();
  const logOf = (chainId: number): MemoryChainLog => {
    let log = logs.get(chainId);
    if (log === undefined) {
      log = new MemoryChainLog(chainId, maxEntries, options.onReaderError);
      logs.set(chainId, log);
    }
    return log;
  };

  const lead = (chainId: number, owner: string): ChainLease => {
    const log = logOf(chainId);
    if (log.owner !== undefined && log.owner !== owner) {
      throw new LogConflictError(`chain ${chainId}: already led by ${log.owner} in this process`);
    }
    log.owner = owner;
    log.fence++;
    const fence = log.fence;
    let releaseLease: () => void = () => undefined;
    const lost = new Promise<void>((resolve) => {
      releaseLease = resolve;
    });
    const writer: ChainLogWriter = {
      chainId,
      fence,
      // An uncompleted header is left out: the writer continues from the last whole block.
      tail: async (count) =>
        log.canonical
          .filter((link) => link.headerOnly !== true)
          .slice(-count)
          .map(({ number, hash, parentHash }) => ({ number, hash, parentHash })),
      append: async (change) => log.append(change),
    };
    return {
      acquired: Promise.resolve(writer),
      lost,
      release: async () => {
        if (log.owner === owner) log.owner = undefined;
        releaseLease();
      },
    };
  };

  const read = (chainId: number, _windowBlocks: number, handlers: ReadHandlers): LogReading => {
    const log = logOf(chainId);
    const reader: Reader = { handlers, offset: 0 };
    // What the log holds first, in order, then every new entry as it is appended.
    for (const entry of log.entries) log.deliver(reader, entry);
    log.readers.add(reader);
    return {
      ready: Promise.resolve(),
      position: () => ({ epoch: log.epoch, offset: reader.offset }),
      close: async () => {
        log.readers.delete(reader);
      },
    };
  };

  return {
    kind: 'memory',
    lead,
    read,
    chains: async () => [...logs.values()].filter((log) => log.offset > 0).map((log) => log.chainId),
    leaders: async () => {
      const leaders = new Map<number, { owner: string; fence: number }>();
      for (const log of logs.values())
        if (log.owner !== undefined) leaders.set(log.chainId, { owner: log.owner, fence: log.fence });
      return leaders;
    },
    close: async () => {
      for (const log of logs.values()) log.readers.clear();
    },
  };
}
