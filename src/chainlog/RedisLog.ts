/**
 * The chain log on Redis Streams (`--redis`): what several processes share. Per chain, four keys
 * under one hash tag (so that they live in one slot): the stream of entries, the tip (a hash),
 * the lease (`owner|fence` with an expiry) and the fence counter; and one sorted set of every
 * chain, in the order they were first written.
 *
 * Writers append through one Lua script that checks the lease and the tip and adds the entry
 * with an explicit, dense ID (`<offset>-1`), so that an append by a writer that lost the lease,
 * or one that does not continue the tip, changes nothing. Readers share one blocking connection
 * per backend (`XREAD BLOCK` over every chain read), load the stream at start and after a reset,
 * and ride a Redis restart without losing or doubling an entry. Only this file imports `redis`.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Packr } from 'msgpackr';
import { createClient, RESP_TYPES } from 'redis';
import { errorMessage } from '../domain/errors.ts';
import type { BlockLink, ChainBlock, Hex } from '../domain/types.ts';
import {
  type ChainLease,
  type ChainLogBackend,
  type ChainLogWriter,
  LeaseLostError,
  type LogAppend,
  LogConflictError,
  type LogEntry,
  type LogReading,
  type ReadHandlers,
} from './ChainLog.ts';

/** Options of {@link createRedisLog}. */
export interface RedisLogOptions {
  /** `redis://[user:password@]HOST:PORT[/db]` (or `rediss://` for TLS). */
  readonly url: string;
  /** How long a lease lasts without renewal, in ms; renewed every third of it. @default 3000 */
  readonly leaseMs?: number;
  /** Entries kept per chain's stream (approximately: Redis trims whole nodes). @default 1024 */
  readonly maxEntriesPerChain?: number;
  /** A fault worth a log line: a connection lost, a reader's handler that threw. */
  readonly onError?: (error: unknown) => void;
}

const DEFAULTS = {
  leaseMs: 3000,
  maxEntriesPerChain: 1024,
} as const;

/** How long the start waits for Redis before it fails. */
const START_TIMEOUT_MS = 5000;
/** The longest wait between two reconnection attempts (the backoff doubles up to it). */
const RECONNECT_MAX_DELAY_MS = 1000;
/** A command without a reply within this time fails (Redis hung, or the network). */
const COMMAND_TIMEOUT_MS = 5000;
/** How long one `XREAD` blocks for new entries; the reader checks for resets between reads. */
const READ_BLOCK_MS = 1000;
/** Entries per stream that one `XREAD` returns at most. */
const READ_COUNT = 512;
/** Entries per `XRANGE` page when a reader loads a stream. */
const LOAD_PAGE_ENTRIES = 256;
/** Entries per `XREVRANGE` page of {@link ChainLogWriter.tail} (entries carry whole blocks). */
const TAIL_PAGE_ENTRIES = 64;
/** The longest time between two checks of the tips' epochs while entries keep coming. */
const EPOCH_CHECK_INTERVAL_MS = 1000;
/** The longest wait of the reader between attempts while Redis is unreachable. */
const READ_RETRY_MAX_MS = 1000;
/** How long {@link ChainLogBackend.close} waits for the reader and the connections. */
const CLOSE_TIMEOUT_MS = 3000;

/** The set of every chain's id, scored by when its log was first written (ms since the epoch). */
const CHAINS_KEY = 'blockcast:chains';

/** The keys of one chain's log, under one hash tag. */
interface ChainKeys {
  readonly log: string;
  readonly tip: string;
  readonly lease: string;
  readonly fence: string;
}

function chainKeys(chainId: number): ChainKeys {
  const base = `blockcast:{${chainId}}`;
  return { log: `${base}:log`, tip: `${base}:tip`, lease: `${base}:lease`, fence: `${base}:fence` };
}

/** A Lua script, run by its SHA1 (`EVALSHA`), sent whole (`EVAL`) when Redis does not know it yet. */
interface LuaScript {
  readonly source: string;
  readonly sha: string;
}

function luaScript(source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * Appends one entry if the caller holds the lease and the entry continues the tip, by the rules of
 * `planAppend` (ChainLog.ts): a `head` is a header the tip's block is completed by (an `add` of
 * the same hash) or, when the next entry passes it by, retracted first in the same script.
 * KEYS: lease, tip, log. ARGV: lease value (`owner|fence`), kind (`add`, `start` for a restart,
 * `head`, `retract`), number, hash, parentHash, fence, epoch for a new log, max entries,
 * appendedAt, tip number after the entry, block (all but retract).
 * Replies `{'ok', offset, epoch}`, `{'same', offset, epoch}` (the tip already), `{'lease', holder}`
 * or `{'conflict', tipNumber, tipHash}`.
 */
const APPEND = luaScript(`
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then return {'lease', holder or ''} end
local tip = redis.call('HMGET', KEYS[2], 'number', 'hash', 'offset', 'epoch', 'parentHash', 'header')
local kind = ARGV[2]
local announced = tip[6] == '1'
if kind ~= 'retract' and tip[2] == ARGV[4] and not (kind ~= 'head' and announced) then
  return {'same', tonumber(tip[3]), tip[4]}
end
local retractTip = false
if announced and tip[2] ~= ARGV[4] then
  if kind == 'retract' then retractTip = ARGV[4] == tip[5] else retractTip = kind == 'start' or ARGV[5] == tip[5] end
end
local conflict = {'conflict', tip[1] or '', tip[2] or ''}
if kind == 'retract' then
  if not retractTip and tip[2] ~= ARGV[4] then return conflict end
elseif kind ~= 'start' and tip[2] ~= ARGV[4] then
  if announced and not retractTip then return conflict end
  local below = tip[2]
  if retractTip then below = tip[5] end
  if below then
    if below ~= ARGV[5] then return conflict end
  elseif kind == 'head' then
    return conflict
  end
end
local offset = 1
local epoch = ARGV[7]
if tip[2] and tip[3] and tip[4] then
  offset = tonumber(tip[3]) + 1
  epoch = tip[4]
else
  -- No tip: a new log, or Redis lost it. What is left of a stream is not part of the new epoch.
  redis.call('DEL', KEYS[3])
end
if retractTip then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], string.format('%d-1', offset), 'k', 'retract', 'n', tip[1],
    'h', tip[2], 'p', tip[5], 'f', ARGV[6], 'e', epoch, 't', ARGV[9])
  offset = offset + 1
end
local id = string.format('%d-1', offset)
if kind == 'retract' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], id, 'k', kind, 'n', ARGV[3], 'h', ARGV[4], 'p', ARGV[5],
    'f', ARGV[6], 'e', epoch, 't', ARGV[9])
  redis.call('HSET', KEYS[2], 'number', ARGV[10], 'hash', ARGV[5], 'offset', offset, 'epoch', epoch)
  redis.call('HDEL', KEYS[2], 'parentHash', 'header')
else
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], id, 'k', kind, 'n', ARGV[3], 'h', ARGV[4], 'p', ARGV[5],
    'f', ARGV[6], 'e', epoch, 't', ARGV[9], 'd', ARGV[11])
  redis.call('HSET', KEYS[2], 'number', ARGV[10], 'hash', ARGV[4], 'parentHash', ARGV[5], 'offset', offset, 'epoch', epoch)
  if kind == 'head' then redis.call('HSET', KEYS[2], 'header', '1') else redis.call('HDEL', KEYS[2], 'header') end
end
return {'ok', offset, epoch}
`);

/** Takes the lease when nobody holds it. KEYS: lease, fence. ARGV: owner, lease ms. Replies the fence, or 0. */
const ACQUIRE = luaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. fence, 'PX', ARGV[2])
return fence
`);

/** Extends the lease if still ours. KEYS: lease. ARGV: `owner|fence`, lease ms. Replies 1, or 0. */
const RENEW = luaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`);

/** Deletes the lease if still ours. KEYS: lease. ARGV: `owner|fence`. Replies 1, or 0. */
const RELEASE = luaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

/**
 * One connection: commands fail at once while it is disconnected (no offline queue), and it
 * reconnects for ever, with capped backoff, so that the process rides a Redis restart.
 */
function newConnection(url: string, role: string) {
  return createClient({
    url,
    disableOfflineQueue: true,
    disableClientInfo: true,
    name: `blockcast-${role}`,
    socket: { connectTimeout: START_TIMEOUT_MS, reconnectStrategy: reconnectDelayMs },
  });
}

type RedisClient = ReturnType<typeof newConnection>;

/** The same connection, with every string of a reply as a Buffer (entries carry msgpack). */
function binaryView(client: RedisClient) {
  return client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
}

type BinaryClient = ReturnType<typeof binaryView>;

/** One stream entry as node-redis gives it with {@link binaryView}. */
interface RawStreamEntry {
  readonly id: Buffer | string;
  readonly message: Readonly<Record<string, Buffer | string | undefined>>;
}

/** An entry of the stream with the epoch it was written in. */
interface StoredEntry {
  readonly epoch: string;
  readonly entry: LogEntry;
}

/** The URL without its credentials, for messages. */
function displayUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return '(a malformed Redis URL)';
  }
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no reply from Redis within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Runs a script by its SHA1, and whole when Redis does not have it (a new or restarted server). */
async function runScript(
  client: RedisClient,
  script: LuaScript,
  keys: readonly string[],
  args: ReadonlyArray<string | Buffer>,
): Promise<unknown> {
  const rest = [String(keys.length), ...keys, ...args];
  try {
    return await client.sendCommand(['EVALSHA', script.sha, ...rest]);
  } catch (error) {
    if (!errorMessage(error).startsWith('NOSCRIPT')) throw error;
    return client.sendCommand(['EVAL', script.source, ...rest]);
  }
}

const packr = new Packr({ useRecords: false });

function fieldText(entry: RawStreamEntry, name: string): string {
  const value = entry.message[name];
  if (value === undefined) throw new Error(`entry ${String(entry.id)} has no field ${name}`);
  return value.toString();
}

/** The offset of a stream ID `<offset>-1`. */
function offsetOf(id: Buffer | string): number {
  const text = id.toString();
  const offset = Number(text.slice(0, text.indexOf('-')));
  if (!Number.isSafeInteger(offset) || offset < 1) throw new Error(`entry ID ${text} is not <offset>-1`);
  return offset;
}

/** Decodes one stream entry back into the log entry the writer appended. */
function parseEntry(raw: RawStreamEntry): StoredEntry {
  const offset = offsetOf(raw.id);
  const kind = fieldText(raw, 'k');
  const appendedAt = Number(fieldText(raw, 't'));
  const epoch = fieldText(raw, 'e');
  if (kind === 'add' || kind === 'start' || kind === 'head') {
    const data = raw.message['d'];
    if (!Buffer.isBuffer(data)) throw new Error(`entry ${offset} (${kind}) has no block`);
    const block = packr.unpack(data) as ChainBlock;
    return { epoch, entry: { kind: kind === 'head' ? 'head' : 'add', offset, appendedAt, block } };
  }
  if (kind !== 'retract') throw new Error(`entry ${offset} has an unknown kind ${JSON.stringify(kind)}`);
  const link: BlockLink = {
    number: Number(fieldText(raw, 'n')),
    hash: fieldText(raw, 'h') as Hex,
    parentHash: fieldText(raw, 'p') as Hex,
  };
  return { epoch, entry: { kind: 'retract', offset, appendedAt, link } };
}

/** The capped, jittered wait before reconnection attempt `retries` (0-based), in ms. */
function reconnectDelayMs(retries: number): number {
  return Math.min(50 * 2 ** Math.min(retries, 10), RECONNECT_MAX_DELAY_MS) + Math.floor(Math.random() * 50);
}

/** Connects one client within {@link START_TIMEOUT_MS}, with its errors reported once per outage. */
async function connectClient(
  url: string,
  role: string,
  onError: (error: unknown) => void,
  onReady: () => void,
): Promise<RedisClient> {
  const shown = displayUrl(url);
  const client = newConnection(url, role);
  let ready = false;
  let reported = false;
  let lastError: unknown;
  client.on('error', (error: unknown) => {
    lastError = error;
    if (!ready || reported) return;
    reported = true;
    onError(new Error(`${role} connection to ${shown}: ${errorMessage(error)}: reconnecting`, { cause: error }));
  });
  client.on('ready', () => {
    ready = true;
    reported = false;
    onReady();
  });
  try {
    await withTimeout(client.connect(), START_TIMEOUT_MS, `connecting to ${shown}`);
  } catch (error) {
    client.destroy();
    const cause = lastError ?? error;
    throw new Error(`redis: cannot reach ${shown}: ${errorMessage(cause)} (is redis-server running there?)`, { cause });
  }
  return client;
}

/** Closes a client, waiting for pending replies a bounded time. */
async function closeClient(client: RedisClient): Promise<void> {
  if (!client.isOpen) return;
  try {
    await withTimeout(client.close(), CLOSE_TIMEOUT_MS, 'closing the connection');
  } catch {
    client.destroy();
  }
}

/** What leases and readers of one backend share. */
interface Backend {
  readonly commands: RedisClient;
  readonly binary: BinaryClient;
  readonly leaseMs: number;
  readonly maxEntries: number;
  readonly report: (error: unknown) => void;
}

/**
 * The canonical tail of a chain's log: up to `count` links, oldest first, read backwards from the
 * newest entry; a retract entry removes the block below it (it always names the tip then). A
 * header (`head`) counts only through the `add` that completed it, right after it: one that was
 * not completed was retracted, or is the tip, which the tail leaves out.
 */
async function readTail(backend: Backend, key: string, count: number): Promise<BlockLink[]> {
  const links: BlockLink[] = [];
  const wanted = Math.min(Math.max(0, Math.floor(count)), backend.maxEntries);
  // Each retract seen (walking backwards) cancels the next add (or uncompleted header) seen.
  let pendingRetracts = 0;
  /** The entry seen just before (the next one in the log): the add that may complete a header. */
  let newer: { kind: string; hash: string } | undefined;
  let end = '+';
  const maxPages = Math.ceil((2 * backend.maxEntries) / TAIL_PAGE_ENTRIES) + 2;
  for (let page = 0; page < maxPages && links.length < wanted; page++) {
    const entries = (await withTimeout(
      backend.binary.xRevRange(key, end, '-', { COUNT: TAIL_PAGE_ENTRIES }),
      COMMAND_TIMEOUT_MS,
      `reading the tail of ${key}`,
    )) as unknown as RawStreamEntry[];
    for (const raw of entries) {
      const kind = fieldText(raw, 'k');
      const seen = newer;
      newer = { kind, hash: fieldText(raw, 'h') };
      if (kind === 'retract') {
        pendingRetracts++;
      } else if (kind === 'head') {
        const completed = seen !== undefined && seen.kind !== 'retract' && seen.hash === newer.hash;
        if (!completed && pendingRetracts > 0) pendingRetracts--;
      } else if (pendingRetracts > 0) {
        pendingRetracts--;
      } else {
        const number = Number(fieldText(raw, 'n'));
        links.push({ number, hash: fieldText(raw, 'h') as Hex, parentHash: fieldText(raw, 'p') as Hex });
        // A block that started a new branch: nothing older is its ancestor.
        if (links.length === wanted || kind === 'start') return links.reverse();
      }
    }
    const last = entries.at(-1);
    if (last === undefined || entries.length < TAIL_PAGE_ENTRIES) break;
    end = `(${last.id.toString()}`;
  }
  return links.reverse();
}

type LeaseState = 'acquiring' | 'held' | 'lost' | 'released';

/** One competition for a chain's lease: acquire, renew, lose or release, and the writer while held. */
class RedisChainLease implements ChainLease {
  readonly acquired: Promise<ChainLogWriter>;
  readonly lost: Promise<void>;
  readonly #backend: Backend;
  readonly #chainId: number;
  readonly #owner: string;
  readonly #keys: ChainKeys;
  readonly #onEnd: (lease: RedisChainLease) => void;
  #state: LeaseState = 'acquiring';
  #value = '';
  /** Until when (performance.now()) the lease is surely ours: from the send of the last renewal. */
  #validUntil = 0;
  #timer: NodeJS.Timeout | undefined;
  #resolveAcquired: (writer: ChainLogWriter) => void = () => undefined;
  #resolveLost: () => void = () => undefined;
  /** Whether this writer put the chain in {@link CHAINS_KEY} (retried on the next append if not). */
  #registered = false;

  constructor(backend: Backend, chainId: number, owner: string, onEnd: (lease: RedisChainLease) => void) {
    this.#backend = backend;
    this.#chainId = chainId;
    this.#owner = owner;
    this.#keys = chainKeys(chainId);
    this.#onEnd = onEnd;
    this.acquired = new Promise((resolve) => {
      this.#resolveAcquired = resolve;
    });
    this.lost = new Promise((resolve) => {
      this.#resolveLost = resolve;
    });
    this.#tryAcquire().catch((error: unknown) => backend.report(error));
  }

  readonly release = async (): Promise<void> => {
    const wasHeld = this.#state === 'held';
    this.#end('released');
    if (wasHeld) await this.#deleteLease(this.#value);
  };

  /** Stops renewing without giving the lease up (the backend closes): it expires by itself. */
  abandon(): void {
    if (this.#state === 'acquiring' || this.#state === 'held') this.#end('lost');
  }

  get #renewEveryMs(): number {
    return Math.max(1, Math.floor(this.#backend.leaseMs / 3));
  }

  #schedule(action: () => Promise<void>, delayMs: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      action().catch((error: unknown) => this.#backend.report(error));
    }, delayMs);
  }

  #end(state: 'lost' | 'released'): void {
    if (this.#state === 'lost' || this.#state === 'released') return;
    this.#state = state;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#resolveLost();
    this.#onEnd(this);
  }

  async #tryAcquire(): Promise<void> {
    if (this.#state !== 'acquiring') return;
    const sentAt = performance.now();
    let fence = 0;
    try {
      const reply = await withTimeout(
        runScript(
          this.#backend.commands,
          ACQUIRE,
          [this.#keys.lease, this.#keys.fence],
          [this.#owner, String(this.#backend.leaseMs)],
        ),
        this.#renewEveryMs,
        `chain ${this.#chainId}: taking the lease`,
      );
      fence = Number(reply);
    } catch {
      // Redis unreachable: the connection reports it once; try again at the next turn.
    }
    if (fence > 0 && this.#state !== 'acquiring') {
      // Released (or closed) while the request was on its way: give back what it took.
      await this.#deleteLease(`${this.#owner}|${fence}`);
      return;
    }
    if (fence <= 0) {
      this.#schedule(() => this.#tryAcquire(), this.#renewEveryMs);
      return;
    }
    this.#state = 'held';
    this.#value = `${this.#owner}|${fence}`;
    this.#validUntil = sentAt + this.#backend.leaseMs;
    this.#schedule(() => this.#renew(), this.#renewEveryMs);
    this.#resolveAcquired(this.#writer(fence));
  }

  async #renew(): Promise<void> {
    if (this.#state !== 'held') return;
    const sentAt = performance.now();
    let renewed: boolean | undefined;
    try {
      const reply = await withTimeout(
        runScript(this.#backend.commands, RENEW, [this.#keys.lease], [this.#value, String(this.#backend.leaseMs)]),
        this.#renewEveryMs,
        `chain ${this.#chainId}: renewing the lease`,
      );
      renewed = Number(reply) === 1;
    } catch {
      renewed = undefined;
    }
    if (this.#state !== 'held') return;
    if (renewed === true) {
      this.#validUntil = sentAt + this.#backend.leaseMs;
      this.#schedule(() => this.#renew(), this.#renewEveryMs);
      return;
    }
    if (renewed === false) {
      this.#end('lost');
      return;
    }
    // Redis unreachable: try again sooner, and give the lease up before it would expire unseen.
    const retryMs = Math.max(10, Math.floor(this.#backend.leaseMs / 10));
    if (performance.now() + retryMs >= this.#validUntil) this.#end('lost');
    else this.#schedule(() => this.#renew(), retryMs);
  }

  async #deleteLease(value: string): Promise<void> {
    try {
      await withTimeout(
        runScript(this.#backend.commands, RELEASE, [this.#keys.lease], [value]),
        COMMAND_TIMEOUT_MS,
        `chain ${this.#chainId}: releasing the lease`,
      );
    } catch (error) {
      // Not fatal: the lease expires by itself within leaseMs.
      this.#backend.report(error);
    }
  }

  #writer(fence: number): ChainLogWriter {
    return {
      chainId: this.#chainId,
      fence,
      tail: (count) => readTail(this.#backend, this.#keys.log, count),
      append: (entry) => this.#append(entry, fence),
    };
  }

  #leaseLost(fence: number, holder: string): LeaseLostError {
    const now = holder === '' ? 'nobody holds it now' : `it is now ${holder}`;
    return new LeaseLostError(
      `chain ${this.#chainId}: ${this.#owner} (fence ${fence}) no longer leads its log (${now}): lead it again to write`,
    );
  }

  async #append(change: LogAppend, fence: number): Promise<void> {
    if (this.#state !== 'held') throw this.#leaseLost(fence, '');
    const chainId = this.#chainId;
    const kind = change.kind === 'add' && change.restart === true ? 'start' : change.kind;
    // A block's own link, or the link retracted; the tip after it is the block, or its parent.
    const link: BlockLink = change.kind === 'retract' ? change.link : change.block;
    const tipNumber = change.kind === 'retract' ? link.number - 1 : link.number;
    const args = [
      this.#value,
      kind,
      String(link.number),
      link.hash,
      link.parentHash,
      String(fence),
      randomUUID(),
      String(this.#backend.maxEntries),
      String(Date.now()),
      String(tipNumber),
      ...(change.kind === 'retract' ? [] : [packr.pack(change.block)]),
    ];
    const reply = (await withTimeout(
      runScript(this.#backend.commands, APPEND, [this.#keys.lease, this.#keys.tip, this.#keys.log], args),
      COMMAND_TIMEOUT_MS,
      `chain ${chainId}: appending to the log`,
    )) as [string, number | string, string];
    const [status, first, second] = reply;
    if (status === 'lease') {
      this.#end('lost');
      throw this.#leaseLost(fence, String(first));
    }
    if (status === 'conflict') throw this.#conflict(change, String(first), String(second));
    if (status === 'ok' && (!this.#registered || Number(first) === 1)) await this.#register();
  }

  #conflict(change: LogAppend, tipNumber: string, tipHash: string): LogConflictError {
    const tip = tipHash === '' ? 'the log is empty' : `the log's tip is block ${tipNumber} (${tipHash})`;
    const what =
      change.kind === 'retract'
        ? `the retraction of block ${change.link.number} (${change.link.hash}) does not name the tip`
        : `${change.kind === 'head' ? 'the header of ' : ''}block ${change.block.number} (${change.block.hash}) does not continue the tip`;
    return new LogConflictError(`chain ${this.#chainId}: ${what}: ${tip}`);
  }

  /** Puts the chain in the set of chains (a key of its own slot: not in the append script). */
  async #register(): Promise<void> {
    try {
      await withTimeout(
        this.#backend.commands.zAdd(
          CHAINS_KEY,
          { score: Date.now(), value: String(this.#chainId) },
          { condition: 'NX' },
        ),
        COMMAND_TIMEOUT_MS,
        `chain ${this.#chainId}: registering the chain`,
      );
      this.#registered = true;
    } catch (error) {
      // The entry is in the log; the next append registers the chain.
      this.#backend.report(error);
    }
  }
}

/** One running read of a chain, as the reader loop tracks it. */
interface Reading {
  readonly chainId: number;
  readonly keys: ChainKeys;
  readonly handlers: ReadHandlers;
  /** `load`: (re)load the stream from its start before reading live; `live`: in the `XREAD`. */
  state: 'load' | 'live' | 'closed';
  epoch: string;
  offset: number;
  /** The epoch to announce (`onReset`) before the next load. */
  pendingReset: string | undefined;
  /** Whether `onConnected(false)` was called and not yet followed by `onConnected(true)`. */
  down: boolean;
  readonly markReady: () => void;
}

/** The stream ID after which a reading continues. */
function lastIdOf(reading: Reading): string {
  return reading.offset === 0 ? '0-0' : `${reading.offset}-1`;
}

/**
 * The one reader loop of a backend, on its own blocking connection: loads the chains that start
 * (or were reset), then `XREAD BLOCK` over every chain read, from the last entry each got.
 */
class StreamReader {
  readonly #backend: Backend;
  readonly #client: RedisClient;
  readonly #binary: BinaryClient;
  readonly #readings = new Set<Reading>();
  #running: Promise<void> | undefined;
  /** Whether the loop runs; cleared in the same turn as its last check for readings (no gap). */
  #looping = false;
  #closed = false;
  /** The blocking connection's id (for `CLIENT UNBLOCK`); unknown after each (re)connect. */
  #clientId: number | undefined;
  #blocked = false;
  #checkEpochs = false;
  #lastEpochCheck = 0;
  #wakeSleep: (() => void) | undefined;

  constructor(backend: Backend, client: RedisClient) {
    this.#backend = backend;
    this.#client = client;
    this.#binary = binaryView(client);
  }

  /** The connection came (back): its id changed, and the log may have been reset meanwhile. */
  onReady(): void {
    this.#clientId = undefined;
    this.#checkEpochs = true;
  }

  read(chainId: number, handlers: ReadHandlers): LogReading {
    if (this.#closed) throw new Error(`chain ${chainId}: the Redis log is closed: cannot read it`);
    let markReady: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => {
      markReady = resolve;
    });
    const reading: Reading = {
      chainId,
      keys: chainKeys(chainId),
      handlers,
      state: 'load',
      epoch: '',
      offset: 0,
      pendingReset: undefined,
      down: false,
      markReady,
    };
    this.#readings.add(reading);
    this.#wake();
    if (!this.#looping) {
      this.#looping = true;
      this.#running = this.#loop();
    }
    return {
      ready,
      position: () => ({ epoch: reading.epoch, offset: reading.offset }),
      close: async () => {
        reading.state = 'closed';
        this.#readings.delete(reading);
        this.#wake();
      },
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const reading of this.#readings) reading.state = 'closed';
    this.#readings.clear();
    this.#wake();
    const running = this.#running;
    if (running !== undefined)
      await withTimeout(running, CLOSE_TIMEOUT_MS, 'stopping the reader').catch(() => undefined);
  }

  /** Ends the current `XREAD` (or backoff) early: a reading started or ended. */
  #wake(): void {
    this.#wakeSleep?.();
    if (!this.#blocked || this.#clientId === undefined || !this.#backend.commands.isReady) return;
    this.#backend.commands.sendCommand(['CLIENT', 'UNBLOCK', String(this.#clientId)]).catch(() => undefined);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const wake = this.#wakeSleep;
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeSleep = () => {
        wake?.();
        done();
      };
    });
  }

  async #loop(): Promise<void> {
    let failures = 0;
    try {
      while (!this.#closed && this.#readings.size > 0) {
        try {
          await this.#step();
          failures = 0;
          this.#reportConnected(true);
        } catch (error) {
          if (this.#closed) break;
          failures++;
          if (!this.#client.isReady) this.#reportConnected(false);
          else this.#backend.report(error);
          this.#checkEpochs = true;
          await this.#sleep(Math.min(50 * 2 ** Math.min(failures, 10), READ_RETRY_MAX_MS));
          this.#wakeSleep = undefined;
        }
      }
    } finally {
      // In the same turn as the last check: a read that starts after it starts a new loop.
      this.#looping = false;
    }
  }

  #reportConnected(connected: boolean): void {
    for (const reading of this.#readings) {
      if (reading.down === !connected) continue;
      reading.down = !connected;
      this.#call(reading, () => reading.handlers.onConnected?.(connected));
    }
  }

  #call(reading: Reading, handler: () => void): void {
    try {
      handler();
    } catch (error) {
      this.#backend.report(
        new Error(`chain ${reading.chainId}: a reader's handler threw: ${errorMessage(error)}`, { cause: error }),
      );
    }
  }

  /** A command of the reader, failing when Redis does not answer (hung, not only gone). */
  #bounded<T>(command: Promise<T>, what: string): Promise<T> {
    return withTimeout(command, READ_BLOCK_MS + COMMAND_TIMEOUT_MS, `reading the log (${what})`);
  }

  async #step(): Promise<void> {
    this.#clientId ??= Number(await this.#bounded(this.#client.sendCommand(['CLIENT', 'ID']), 'CLIENT ID'));
    for (const reading of [...this.#readings]) if (reading.state === 'load') await this.#load(reading);
    const live = [...this.#readings].filter((reading) => reading.state === 'live');
    if (live.length === 0) return;
    if (this.#checkEpochs || performance.now() - this.#lastEpochCheck >= EPOCH_CHECK_INTERVAL_MS) {
      await this.#checkTipEpochs(live);
      if (live.some((reading) => reading.state !== 'live')) return;
    }
    // One ID per stream: the earliest any reading of it needs (each skips what it already has).
    const from = new Map<string, Reading>();
    for (const reading of live) {
      const earliest = from.get(reading.keys.log);
      if (earliest === undefined || reading.offset < earliest.offset) from.set(reading.keys.log, reading);
    }
    const streams = [...from.entries()].map(([key, reading]) => ({ key, id: lastIdOf(reading) }));
    this.#blocked = true;
    let reply: unknown;
    try {
      reply = await this.#bounded(this.#binary.xRead(streams, { BLOCK: READ_BLOCK_MS, COUNT: READ_COUNT }), 'XREAD');
    } finally {
      this.#blocked = false;
    }
    if (reply === null) {
      this.#checkEpochs = true;
      return;
    }
    for (const stream of reply as Array<{ name: Buffer | string; messages: RawStreamEntry[] }>) {
      const key = stream.name.toString();
      const entries = stream.messages.map((raw) => parseEntry(raw));
      for (const reading of live) if (reading.keys.log === key) this.#deliverAll(reading, entries);
    }
  }

  /** Compares each chain's tip epoch with what its readings read: a different one is a reset. */
  async #checkTipEpochs(live: readonly Reading[]): Promise<void> {
    this.#checkEpochs = false;
    this.#lastEpochCheck = performance.now();
    const tips = [...new Set(live.map((reading) => reading.keys.tip))];
    const epochs = await this.#bounded(Promise.all(tips.map((tip) => this.#client.hGet(tip, 'epoch'))), 'the epochs');
    const epochOf = new Map(tips.map((tip, index) => [tip, epochs[index]]));
    for (const reading of live) {
      const epoch = epochOf.get(reading.keys.tip);
      // No tip: the log was lost and nobody wrote it since; the new epoch's first entry tells.
      if (typeof epoch !== 'string' || reading.epoch === '' || epoch === reading.epoch) continue;
      this.#reset(reading, epoch);
    }
  }

  /** Starts a reading over: announce the epoch, then load the stream from its start. */
  #reset(reading: Reading, epoch: string | undefined): void {
    reading.state = 'load';
    reading.pendingReset = epoch;
    reading.epoch = '';
    reading.offset = 0;
  }

  /** Loads a chain's stream from its start (bounded by the stream's length), then reads it live. */
  async #load(reading: Reading): Promise<void> {
    if (reading.pendingReset !== undefined) {
      const epoch = reading.pendingReset;
      reading.pendingReset = undefined;
      this.#call(reading, () => reading.handlers.onReset?.(epoch));
    }
    const tipEpoch = await this.#bounded(this.#client.hGet(reading.keys.tip, 'epoch'), 'the epoch');
    let start = '-';
    const maxPages = Math.ceil((2 * this.#backend.maxEntries) / LOAD_PAGE_ENTRIES) + 2;
    for (let page = 0; page < maxPages && reading.state === 'load'; page++) {
      const raws = (await this.#bounded(
        this.#binary.xRange(reading.keys.log, start, '+', { COUNT: LOAD_PAGE_ENTRIES }),
        'XRANGE',
      )) as unknown as RawStreamEntry[];
      if (reading.state !== 'load') return;
      this.#deliverAll(
        reading,
        raws.map((raw) => parseEntry(raw)),
      );
      const last = raws.at(-1);
      if (last === undefined || raws.length < LOAD_PAGE_ENTRIES) break;
      start = `(${last.id.toString()}`;
    }
    // A reset found while loading (the epoch changed under it) loads again at the next turn.
    if (reading.state !== 'load' || reading.pendingReset !== undefined) return;
    if (reading.epoch === '' && typeof tipEpoch === 'string') reading.epoch = tipEpoch;
    reading.state = 'live';
    reading.markReady();
  }

  /**
   * Hands a reading the entries it has not read, in order. An entry of another epoch, or one
   * past a gap (the stream was trimmed beyond what the reading had), resets the reading.
   */
  #deliverAll(reading: Reading, entries: readonly StoredEntry[]): void {
    for (const { epoch, entry } of entries) {
      if (reading.state === 'closed') return;
      const started = reading.offset > 0 || reading.epoch !== '';
      if (started && epoch !== reading.epoch) {
        this.#reset(reading, epoch);
        return;
      }
      if (reading.offset > 0 && entry.offset <= reading.offset) continue;
      if (reading.offset > 0 && entry.offset !== reading.offset + 1) {
        this.#reset(reading, epoch);
        return;
      }
      reading.epoch = epoch;
      reading.offset = entry.offset;
      this.#call(reading, () => reading.handlers.onEntry(entry));
    }
  }
}

/**
 * Opens the chain log on Redis: connects (failing within a few seconds, with the URL but never
 * its credentials, when Redis cannot be reached) and returns the backend. Leases renew
 * themselves every `leaseMs / 3`; a lease that cannot be renewed before it would expire is lost.
 */
export async function createRedisLog(options: RedisLogOptions): Promise<ChainLogBackend> {
  const leaseMs = options.leaseMs ?? DEFAULTS.leaseMs;
  const maxEntries = options.maxEntriesPerChain ?? DEFAULTS.maxEntriesPerChain;
  if (!Number.isSafeInteger(leaseMs) || leaseMs < 30) {
    throw new TypeError(`redis: leaseMs must be an integer of at least 30 ms, not ${leaseMs}`);
  }
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) {
    throw new TypeError(`redis: maxEntriesPerChain must be a positive integer, not ${maxEntries}`);
  }
  const report = options.onError ?? (() => undefined);
  let reader: StreamReader | undefined;
  const commands = await connectClient(options.url, 'commands', report, () => undefined);
  let blocking: RedisClient;
  try {
    blocking = await connectClient(options.url, 'reader', report, () => reader?.onReady());
  } catch (error) {
    commands.destroy();
    throw error;
  }
  const backend: Backend = { commands, binary: binaryView(commands), leaseMs, maxEntries, report };
  reader = new StreamReader(backend, blocking);
  const streamReader = reader;
  const leases = new Set<RedisChainLease>();
  let closed = false;

  const lead = (chainId: number, owner: string): ChainLease => {
    if (closed) throw new Error(`chain ${chainId}: the Redis log is closed: cannot lead it`);
    const lease = new RedisChainLease(backend, chainId, owner, (ended) => leases.delete(ended));
    leases.add(lease);
    return lease;
  };

  const chains = async (): Promise<number[]> => {
    const ids = await withTimeout(commands.zRange(CHAINS_KEY, 0, -1), COMMAND_TIMEOUT_MS, 'listing the chains');
    return ids.map(Number).filter((id) => Number.isSafeInteger(id));
  };

  const leaders = async (): Promise<ReadonlyMap<number, { owner: string; fence: number }>> => {
    const ids = await chains();
    const values = await withTimeout(
      Promise.all(ids.map((id) => commands.get(chainKeys(id).lease))),
      COMMAND_TIMEOUT_MS,
      'reading the leases',
    );
    const found = new Map<number, { owner: string; fence: number }>();
    ids.forEach((id, index) => {
      const value = values[index];
      if (typeof value !== 'string') return;
      const bar = value.lastIndexOf('|');
      const fence = Number(value.slice(bar + 1));
      if (bar > 0 && Number.isSafeInteger(fence)) found.set(id, { owner: value.slice(0, bar), fence });
    });
    return found;
  };

  return {
    kind: 'redis',
    lead,
    read: (chainId, _windowBlocks, handlers) => streamReader.read(chainId, handlers),
    chains,
    leaders,
    close: async () => {
      if (closed) return;
      closed = true;
      // Leases are not released: a closing process that did not release them lets them expire.
      for (const lease of [...leases]) lease.abandon();
      await streamReader.close();
      blocking.destroy();
      await closeClient(commands);
    },
  };
}
