import { RpcFaultError } from '../domain/errors.ts';
import type { Hex } from '../domain/types.ts';

/**
 * What a token contract says about itself: `symbol()`, `decimals()` and `name()`, each present
 * only when the contract answered it with a value that passed {@link decodeTokenText} or
 * {@link decodeTokenDecimals}. `{}` is a contract without metadata (most ERC-1155s, an EOA).
 */
export interface TokenInfo {
  readonly symbol?: string;
  readonly decimals?: number;
  readonly name?: string;
}

/** How one lookup ended: some metadata, none at all (cached as `{}`), or a fault of the node (retried later). */
export type TokenLookupOutcome = 'ok' | 'none' | 'failed';

/** Options of {@link TokenMetadata}. */
export interface TokenMetadataOptions {
  /**
   * Sends one JSON-RPC request to the chain's node and resolves with its unchecked `result`;
   * rejects with an {@link RpcFaultError} on a fault or an error answer. In production it is
   * `RpcPool.probe`: a call that reverts is the contract's answer, so the node's error answers
   * are not reported as its faults. It must settle in bounded time (RpcPool's requests time
   * out): a lookup holds its slot until then.
   */
  readonly send: (method: string, params: readonly unknown[]) => Promise<unknown>;
  /** Tokens whose metadata is kept; past it the least recently used is forgotten. @default 10000 */
  readonly maxTokens?: number;
  /** Lookups in flight at once (each is three `eth_call`s). @default 4 */
  readonly concurrency?: number;
  /**
   * Lookups waiting for a slot; a token seen while the queue is full is not looked up then,
   * but again when it is next seen. @default 1000
   */
  readonly maxQueued?: number;
  /**
   * How long after a lookup failed for a fault of the node (timeout, broken link, HTTP error,
   * oversized or unreadable answer, a node error other than a revert) the token may be looked
   * up again, in ms; nothing is cached for it meanwhile. @default 60000
   */
  readonly retryMs?: number;
  /** Each finished lookup: how long it took, in seconds, and how it ended (for a metric). */
  readonly onLookup?: (seconds: number, outcome: TokenLookupOutcome) => void;
  /** The clock, in ms. @default performance.now */
  readonly now?: () => number;
}

const DEFAULTS = { maxTokens: 10_000, concurrency: 4, maxQueued: 1_000, retryMs: 60_000 } as const;

/**
 * Largest `symbol()` kept, in UTF-8 bytes. Real symbols are a few ASCII letters; 64 bytes still
 * fits 16 four-byte characters (emoji). The value rides on every transfer event sent to every
 * subscriber, so a contract must not be able to make it large.
 */
export const MAX_SYMBOL_BYTES = 64;

/** Largest `name()` kept, in UTF-8 bytes: real names are a few words; 128 bytes bounds each event's size. */
export const MAX_NAME_BYTES = 128;

/**
 * Largest `eth_call` answer decoded, in bytes. A string of {@link MAX_NAME_BYTES} is 192 bytes
 * ABI-encoded; anything far larger is refused before it is parsed.
 */
export const MAX_ANSWER_BYTES = 4096;

/** The selectors of `symbol()`, `decimals()` and `name()`. */
const SELECTORS = { symbol: '0x95d89b41', decimals: '0x313ce567', name: '0x06fdde03' } as const;

const WORD = 32;
const ADDRESS = /^0x[0-9a-f]{40}$/;
const HEX_DIGITS = /^[0-9a-fA-F]*$/;
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * How nodes say that a call reverted or failed in the EVM (geth and anvil code 3 or "execution
 * reverted", Nethermind "VM execution error", Besu "Execution reverted"): the contract's answer.
 * Any other node error (a rate limit, "header not found") is the node's, and is retried.
 */
const REVERT_MESSAGE = /revert|vm execution error|invalid opcode|out of gas|stack (underflow|overflow)|invalid jump/i;

/** The bytes of an `eth_call` answer: a 0x hex string of even length up to {@link MAX_ANSWER_BYTES}; else `undefined`. */
function answerBytes(answer: unknown): Uint8Array | undefined {
  if (typeof answer !== 'string' || answer.length > 2 + 2 * MAX_ANSWER_BYTES) return undefined;
  if (!answer.startsWith('0x') || answer.length % 2 !== 0) return undefined;
  const digits = answer.slice(2);
  if (!HEX_DIGITS.test(digits)) return undefined;
  return Buffer.from(digits, 'hex');
}

/** The 32-byte word at `at` as a number, or `undefined` past 2^32 (a size no answer here can have). */
function smallWord(bytes: Uint8Array, at: number): number | undefined {
  for (let i = at; i < at + WORD - 4; i++) if (bytes[i] !== 0) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset + at + WORD - 4, 4);
  return view.getUint32(0);
}

/** The payload of an ABI-encoded `string`/`bytes` return value, every offset and length checked against the answer. */
function abiStringBytes(bytes: Uint8Array, maxBytes: number): Uint8Array | undefined {
  if (bytes.length < 2 * WORD) return undefined;
  const offset = smallWord(bytes, 0);
  if (offset === undefined || offset < WORD || offset % WORD !== 0 || offset + WORD > bytes.length) return undefined;
  const length = smallWord(bytes, offset);
  const start = offset + WORD;
  if (length === undefined || length > maxBytes || start + length > bytes.length) return undefined;
  return bytes.subarray(start, start + length);
}

/** A `bytes32` value without its trailing zero bytes (the padding of a short text). */
function bytes32Text(bytes: Uint8Array): Uint8Array {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return bytes.subarray(0, end);
}

/**
 * Whether `text` has a character that must not reach a screen from a contract: C0 controls,
 * DEL, C1 controls, the bidirectional marks, embeddings, overrides and isolates (U+061C,
 * U+200E, U+200F, U+202A–U+202E, U+2066–U+2069, which can make "USDT" display as another
 * text) and the byte order mark.
 */
function hasRefusedCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x1f || (c >= 0x7f && c <= 0x9f)) return true;
    if (c === 0x061c || c === 0x200e || c === 0x200f || c === 0xfeff) return true;
    if ((c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069)) return true;
  }
  return false;
}

/**
 * The text of a `symbol()` or `name()` answer, or `undefined` when there is none to show.
 * Accepts an ABI-encoded `string` (offset, length and bytes, each checked against the answer's
 * size; a length past `maxBytes` is refused, not cut) or a `bytes32` (as old tokens such as MKR
 * return; trailing zero bytes trimmed). The bytes must be valid UTF-8; whitespace around the text
 * is trimmed; a text with a control character (C0, DEL, C1), a bidirectional control (U+061C,
 * U+200E, U+200F, U+202A–U+202E, U+2066–U+2069) or a byte order mark, or with nothing left, is
 * refused. Any other answer (not 0x hex of even length, larger than
 * {@link MAX_ANSWER_BYTES}, another size) is refused. Costs O(answer size).
 */
export function decodeTokenText(answer: unknown, maxBytes: number): string | undefined {
  const bytes = answerBytes(answer);
  if (bytes === undefined) return undefined;
  // A `string` takes at least two words (offset, length), so one word can only be a `bytes32`.
  const raw = bytes.length === WORD ? bytes32Text(bytes) : abiStringBytes(bytes, maxBytes);
  if (raw === undefined || raw.length > maxBytes) return undefined;
  let text: string;
  try {
    text = UTF8.decode(raw).trim();
  } catch {
    return undefined; // not UTF-8
  }
  if (text === '' || hasRefusedCharacter(text)) return undefined;
  return text;
}

/**
 * The value of a `decimals()` answer: exactly one 32-byte word holding at most 255 (a `uint8`,
 * whatever type the contract declared); anything else is `undefined`.
 */
export function decodeTokenDecimals(answer: unknown): number | undefined {
  const bytes = answerBytes(answer);
  if (bytes === undefined || bytes.length !== WORD) return undefined;
  const value = smallWord(bytes, 0);
  return value !== undefined && value <= 255 ? value : undefined;
}

/** Whether a rejected `eth_call` means the contract has no such function (it reverted), rather than a fault of the node. */
function isRevert(error: unknown): boolean {
  if (!(error instanceof RpcFaultError) || error.fault !== 'node_error') return false;
  return error.rpcCode === 3 || REVERT_MESSAGE.test(error.rpcMessage ?? '');
}

/** One field's `eth_call`, settled: its answer, absent (the contract reverted), or failed (retry the token). */
type FieldAnswer = { readonly answer: unknown } | 'absent' | 'failed';

function fieldAnswer(settled: PromiseSettledResult<unknown>): FieldAnswer {
  if (settled.status === 'fulfilled') return { answer: settled.value };
  // A timeout, a broken link, an HTTP error, an oversized or unreadable answer, a node error
  // that is no revert: the node failed to answer, which says nothing of the contract.
  return isRevert(settled.reason) ? 'absent' : 'failed';
}

function positiveInteger(options: TokenMetadataOptions, key: 'maxTokens' | 'concurrency' | 'maxQueued'): number {
  const value = options[key] ?? DEFAULTS[key];
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`TokenMetadata: ${key} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/**
 * The metadata of token contracts, read from the chain once per token and cached: ingest asks
 * {@link TokenMetadata.get} for each token of a block's transfer events and adds what is known.
 * It never waits for the node: an unknown token is answered `undefined` at once and looked up
 * in the background (three `eth_call`s against `latest`, sent together), so the first block in
 * which a token appears may go out without its metadata; later blocks carry it. Memory is
 * bounded: at most `maxTokens` cached tokens (least recently used forgotten), `maxTokens`
 * remembered failures, `concurrency` lookups in flight and `maxQueued` waiting.
 */
export class TokenMetadata {
  readonly #send: TokenMetadataOptions['send'];
  readonly #onLookup: TokenMetadataOptions['onLookup'];
  readonly #now: () => number;
  readonly #maxTokens: number;
  readonly #concurrency: number;
  readonly #maxQueued: number;
  readonly #retryMs: number;
  /** token → info, oldest use first (a hit moves the token to the end). */
  readonly #cache = new Map<Hex, TokenInfo>();
  /** token → when it may be looked up again (the clock of `now`, in ms), oldest failure first. */
  readonly #retryAt = new Map<Hex, number>();
  /** Tokens waiting for a slot, first come first served. */
  readonly #queued = new Set<Hex>();
  readonly #inFlight = new Set<Hex>();
  #idleWaiters: Array<() => void> = [];
  #closed = false;

  /** @throws TypeError when a limit is not a positive integer or `retryMs` is negative, naming the option. */
  constructor(options: TokenMetadataOptions) {
    this.#send = options.send;
    this.#onLookup = options.onLookup;
    this.#now = options.now ?? (() => performance.now());
    this.#maxTokens = positiveInteger(options, 'maxTokens');
    this.#concurrency = positiveInteger(options, 'concurrency');
    this.#maxQueued = positiveInteger(options, 'maxQueued');
    this.#retryMs = options.retryMs ?? DEFAULTS.retryMs;
    if (!Number.isFinite(this.#retryMs) || this.#retryMs < 0) {
      throw new TypeError(`TokenMetadata: retryMs must be a finite number of ms ≥ 0, got ${String(options.retryMs)}`);
    }
  }

  /**
   * What is known of `token` (a lowercase 0x address): its cached info, or `undefined` while it
   * is unknown, which schedules a lookup in the background unless one is in flight or queued,
   * the last one failed less than `retryMs` ago, or the queue is full. Never waits, never
   * throws; anything but a lowercase address is answered `undefined` and never looked up.
   */
  get(token: Hex): TokenInfo | undefined {
    if (this.#closed) return undefined;
    const cached = this.#cache.get(token);
    if (cached !== undefined) {
      this.#cache.delete(token);
      this.#cache.set(token, cached);
      return cached;
    }
    if (this.#inFlight.has(token) || this.#queued.has(token) || !ADDRESS.test(token)) return undefined;
    const retryAt = this.#retryAt.get(token);
    if (retryAt !== undefined) {
      if (this.#now() < retryAt) return undefined;
      this.#retryAt.delete(token);
    }
    if (this.#inFlight.size < this.#concurrency) this.#start(token);
    else if (this.#queued.size < this.#maxQueued) this.#queued.add(token);
    return undefined;
  }

  /**
   * Resolves once no lookup is in flight or queued (for tests and shutdown); at once when none is.
   * A lookup ends when its `send`s settle.
   */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Stops: the queue and the cache are dropped, `get` answers `undefined` from now on, and
   * lookups in flight are let finish (their `send`s cannot be taken back) but not kept.
   */
  close(): void {
    this.#closed = true;
    this.#queued.clear();
    this.#cache.clear();
    this.#retryAt.clear();
    this.#settleIdle();
  }

  #isIdle(): boolean {
    return this.#inFlight.size === 0 && this.#queued.size === 0;
  }

  #settleIdle(): void {
    if (!this.#isIdle()) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  #start(token: Hex): void {
    this.#inFlight.add(token);
    void this.#run(token);
  }

  /** Runs one lookup and then the next queued one; never rejects. */
  async #run(token: Hex): Promise<void> {
    try {
      await this.#lookup(token);
    } catch {
      // #lookup catches every fault of the node; only a throwing onLookup can land here.
    } finally {
      this.#inFlight.delete(token);
      this.#startQueued();
      this.#settleIdle();
    }
  }

  #startQueued(): void {
    for (const next of this.#queued) {
      if (this.#inFlight.size >= this.#concurrency) return;
      this.#queued.delete(next);
      this.#start(next);
    }
  }

  async #lookup(token: Hex): Promise<void> {
    const started = this.#now();
    const [symbol, decimals, name] = (
      await Promise.allSettled([
        this.#call(token, SELECTORS.symbol),
        this.#call(token, SELECTORS.decimals),
        this.#call(token, SELECTORS.name),
      ])
    ).map(fieldAnswer) as [FieldAnswer, FieldAnswer, FieldAnswer];
    const outcome = this.#keep(token, symbol, decimals, name);
    this.#onLookup?.((this.#now() - started) / 1000, outcome);
  }

  /** One `eth_call` of `selector` on `token`; a `send` that throws becomes a rejection. */
  async #call(token: Hex, selector: string): Promise<unknown> {
    return this.#send('eth_call', [{ to: token, data: selector }, 'latest']);
  }

  /** Caches what one lookup found, or notes when to try again; returns the lookup's outcome. */
  #keep(token: Hex, symbol: FieldAnswer, decimals: FieldAnswer, name: FieldAnswer): TokenLookupOutcome {
    if (symbol === 'failed' || decimals === 'failed' || name === 'failed') {
      // Nothing is cached: a partial answer would hide the missing field until evicted.
      if (!this.#closed) this.#remember(this.#retryAt, token, this.#now() + this.#retryMs);
      return 'failed';
    }
    const symbolText = symbol === 'absent' ? undefined : decodeTokenText(symbol.answer, MAX_SYMBOL_BYTES);
    const decimalsValue = decimals === 'absent' ? undefined : decodeTokenDecimals(decimals.answer);
    const nameText = name === 'absent' ? undefined : decodeTokenText(name.answer, MAX_NAME_BYTES);
    const info: TokenInfo = Object.freeze({
      ...(symbolText === undefined ? {} : { symbol: symbolText }),
      ...(decimalsValue === undefined ? {} : { decimals: decimalsValue }),
      ...(nameText === undefined ? {} : { name: nameText }),
    });
    if (!this.#closed) this.#remember(this.#cache, token, info);
    return symbolText === undefined && decimalsValue === undefined && nameText === undefined ? 'none' : 'ok';
  }

  /** Sets `token` in `map`, forgetting the oldest entries past `maxTokens`. */
  #remember<V>(map: Map<Hex, V>, token: Hex, value: V): void {
    map.delete(token);
    map.set(token, value);
    for (const oldest of map.keys()) {
      if (map.size <= this.#maxTokens) break;
      map.delete(oldest);
    }
  }
}
