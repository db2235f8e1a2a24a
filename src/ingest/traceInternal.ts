import { RpcFaultError } from '../domain/errors.ts';
import type { ChainBlock, Hex, InternalTransferEvent } from '../domain/types.ts';
import { isMethodUnsupported } from './Capabilities.ts';
import { excerpt } from './excerpt.ts';

/** How an internal transfer moved ETH: a value call, a contract creation, or a self-destruct. */
export type InternalCallType = InternalTransferEvent['callType'];

/** The JSON-RPC methods that trace a block: geth's callTracer, or the Parity-style `trace_block`. */
export type TraceMethod = 'debug_traceBlockByNumber' | 'trace_block';

/** Sends one JSON-RPC request and resolves with its `result`, unchecked (e.g. `RpcClient.request`). */
export type SendRpc = (method: string, params: readonly unknown[]) => Promise<unknown>;

/** Trace frames (calls, creations, self-destructs) read per block at most; more is fault `too_large`. */
export const MAX_TRACE_FRAMES_PER_BLOCK = 100_000;

/** Deepest frame below a transaction's top-level call: the EVM's call depth limit. Deeper is `malformed`. */
export const MAX_TRACE_DEPTH = 1_024;

/**
 * Characters of trace paths (event ids) built per block at most; more is fault `too_large`. A
 * callTracer answer nests frames, so one deep frame's path costs its depth, not the bytes it
 * took: without this cap, many frames at the bottom of a deep chain would cost depth × frames.
 */
export const MAX_TRACE_PATH_CHARS_PER_BLOCK = 16_777_216;

/** The order in which {@link probeTraceMethod} tries the methods. */
export const TRACE_METHODS = ['debug_traceBlockByNumber', 'trace_block'] as const satisfies readonly TraceMethod[];

/** Gas of a plain ETH transfer to an account without code: the intrinsic gas of a transaction. */
const PLAIN_TRANSFER_GAS = 21_000n;

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const HASH = /^0x[0-9a-fA-F]{64}$/;
const QUANTITY = /^0x[0-9a-fA-F]+$/;
const LEADING_ZEROS = /^0x0*/;
/** Hex digits of the largest uint256. */
const MAX_VALUE_DIGITS = 64;

/**
 * Whether a block can hold internal transfers at all, so is worth tracing. Ingest cannot trace
 * only for watched addresses: with Redis they are known to other processes, and any address may
 * be paid through a contract. So the rule is per block: trace it iff some transaction that did not
 * revert ran code, i.e. created a contract (`to === null`), or its receipt's `gasUsed` is not
 * exactly 21,000 (or is unknown). A plain transfer to an account without code uses exactly
 * 21,000 gas, the intrinsic gas; moving ETH from a contract costs more than that (a value CALL
 * alone costs 9,000), and gas refunds are always smaller than the gas that earned them since
 * London (EIP-3529). Before London a refund could pull `gasUsed` below 21,000, hence "not
 * exactly" rather than "more than". Calldata or an access list on a transfer to a plain account
 * also cost more: a harmless false positive (one trace that finds nothing). A reverted
 * transaction (`status` 0) is skipped: its effects, internal transfers included, were undone.
 */
export function mayHaveInternalTransfers(block: ChainBlock): boolean {
  return block.transactions.some((tx) => {
    if (tx.status === 0) return false;
    if (tx.to === null || tx.gasUsed === undefined) return true;
    return gasOf(tx.gasUsed) !== PLAIN_TRANSFER_GAS;
  });
}

/** A receipt's gasUsed as a number, or `undefined` when it is not hex (then the block is traced). */
function gasOf(gasUsed: Hex): bigint | undefined {
  return QUANTITY.test(gasUsed) ? BigInt(gasUsed) : undefined;
}

/**
 * Fetches a block's traces with `method` and returns its internal transfers: per transaction
 * hash of `txHashes` (the block's transactions, in block order), its transfers in trace order.
 * Rejects with what `send` rejects with, or an {@link RpcFaultError}: `malformed` (not a trace
 * of the expected shape), `too_large` (past {@link MAX_TRACE_FRAMES_PER_BLOCK} frames or
 * {@link MAX_TRACE_PATH_CHARS_PER_BLOCK} path characters), `inconsistent` (traces of other
 * transactions than `txHashes`: another block, e.g. after a reorg), `behind` (the node has no
 * traces of the block) or `node_error` (the node could not trace a transaction); a `TypeError`
 * when `blockNumber` or a hash of `txHashes` is not one (the caller's mistake, not the node's).
 */
export async function fetchInternalTransfers(
  send: SendRpc,
  method: TraceMethod,
  blockNumber: number,
  txHashes: readonly Hex[],
): Promise<Map<Hex, InternalTransferEvent[]>> {
  const context = `${method} of block ${blockNumber}`;
  const result = await send(method, traceParams(method, blockNumber));
  return method === 'debug_traceBlockByNumber'
    ? parseCallTracer(result, txHashes, context)
    : parseParityTraces(result, txHashes, context);
}

/**
 * Which trace method to use on the node, probed on block `blockNumber` (e.g. the first that
 * needs tracing): each of {@link TRACE_METHODS} is tried once, and of those whose answer is a
 * well-formed trace the one that answered fastest is chosen (the callTracer of one node can cost
 * a hundred times another's `trace_block` for the same block: anvil 1.7 takes about 140 ms with
 * the callTracer where `trace_block` takes under 2 ms, on a block of 35 transactions). Returns
 * `undefined` when the node serves neither (each refused as a method it lacks); rethrows the first
 * other failure when none answered well, so that the caller probes again later.
 */
export async function probeTraceMethod(send: SendRpc, blockNumber: number): Promise<TraceMethod | undefined> {
  const failures: unknown[] = [];
  let best: { method: TraceMethod; ms: number } | undefined;
  for (const method of TRACE_METHODS) {
    try {
      const started = performance.now();
      const result = await send(method, traceParams(method, blockNumber));
      const ms = performance.now() - started;
      const context = `${method} of block ${blockNumber}`;
      if (method === 'debug_traceBlockByNumber') parseCallTracer(result, undefined, context);
      else parseParityTraces(result, undefined, context);
      if (best === undefined || ms < best.ms) best = { method, ms };
    } catch (error) {
      if (!isMethodUnsupported(error)) failures.push(error);
    }
  }
  if (best !== undefined) return best.method;
  if (failures.length > 0) throw failures[0];
  return undefined;
}

/** The params of `method` for block `blockNumber`. */
function traceParams(method: TraceMethod, blockNumber: number): unknown[] {
  if (!Number.isSafeInteger(blockNumber) || blockNumber < 0) {
    throw new TypeError(`blockNumber must be a non-negative integer, got ${blockNumber}`);
  }
  const blockHex = `0x${blockNumber.toString(16)}`;
  return method === 'debug_traceBlockByNumber' ? [blockHex, { tracer: 'callTracer' }] : [blockHex];
}

/**
 * The internal transfers of a `debug_traceBlockByNumber(block, {tracer: "callTracer"})` answer:
 * an array of `{txHash?, result: frame}`, one per transaction of the block in order. `txHashes`
 * is the block's transaction order: older geth leaves `txHash` out, and then position says which
 * transaction an item traces. Throws {@link RpcFaultError}: `malformed` for a count or shape that
 * is wrong, `inconsistent` for an item whose `txHash` is not the transaction at its position,
 * `too_large` past the bounds, `node_error` for an item that carries the node's tracing error.
 */
export function internalFromCallTracer(result: unknown, txHashes: readonly Hex[]): Map<Hex, InternalTransferEvent[]> {
  return parseCallTracer(result, txHashes, 'debug_traceBlockByNumber answer');
}

/**
 * The internal transfers of a `trace_block(block)` answer (Parity style: Erigon, Nethermind,
 * Reth, anvil): a flat array of traces with `transactionHash`, `traceAddress`, `type` (`call`,
 * `create`, `suicide`, `reward`), `action`, `result` and `error`. `reward` traces belong to no
 * transaction and are passed over. Every transaction of `txHashes` must have its top-level trace.
 * Throws {@link RpcFaultError}: `malformed` for a wrong shape, `inconsistent` for traces of a
 * transaction not in `txHashes`, `behind` for no traces at all of a block with transactions,
 * `too_large` past the bounds.
 */
export function internalFromParityTraces(result: unknown, txHashes: readonly Hex[]): Map<Hex, InternalTransferEvent[]> {
  return parseParityTraces(result, txHashes, 'trace_block answer');
}

/** Counts what one block's parse has built, against the per-block bounds. */
class TraceBudget {
  readonly #context: string;
  #frames = 0;
  #pathChars = 0;

  constructor(context: string) {
    this.#context = context;
  }

  /** Counts `count` more frames read. */
  frames(count: number): void {
    this.#frames += count;
    if (this.#frames > MAX_TRACE_FRAMES_PER_BLOCK) {
      throw new RpcFaultError(
        'too_large',
        `${this.#context}: more than ${MAX_TRACE_FRAMES_PER_BLOCK} trace frames in one block; this block's internal transfers cannot be read`,
      );
    }
  }

  /** Counts the characters of one more event's path. */
  path(path: string): void {
    this.#pathChars += path.length;
    if (this.#pathChars > MAX_TRACE_PATH_CHARS_PER_BLOCK) {
      throw new RpcFaultError(
        'too_large',
        `${this.#context}: trace paths of one block add up to more than ${MAX_TRACE_PATH_CHARS_PER_BLOCK} characters; this block's internal transfers cannot be read`,
      );
    }
  }
}

function malformed(context: string, what: string): RpcFaultError {
  return new RpcFaultError('malformed', `${context}: ${what}`);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A 20-byte hex address, lowercased. */
function address(raw: unknown, context: string, field: string): Hex {
  if (typeof raw !== 'string' || !ADDRESS.test(raw)) {
    throw malformed(context, `${field} is not a 20-byte hex address: ${excerpt(raw)}`);
  }
  return raw.toLowerCase() as Hex;
}

/** A 32-byte hex hash, lowercased. */
function hash(raw: unknown, context: string, field: string): Hex {
  if (typeof raw !== 'string' || !HASH.test(raw)) {
    throw malformed(context, `${field} is not a 32-byte hex hash: ${excerpt(raw)}`);
  }
  return raw.toLowerCase() as Hex;
}

/**
 * A wei amount as 0x hex without leading zeros (`undefined` for zero or a missing value): at
 * most 2^256 - 1, as every EVM value is.
 */
function weiValue(raw: unknown, context: string, field: string): Hex | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'string' || !QUANTITY.test(raw)) {
    throw malformed(context, `${field} is not a hex quantity: ${excerpt(raw)}`);
  }
  const digits = raw.replace(LEADING_ZEROS, '').toLowerCase();
  if (digits.length > MAX_VALUE_DIGITS) throw malformed(context, `${field} is 2^256 wei or more: ${excerpt(raw)}`);
  return digits.length === 0 ? undefined : `0x${digits}`;
}

/** A frame's or trace's `error`: whether it is set (the frame failed). */
function failed(raw: unknown, context: string): boolean {
  if (raw === undefined || raw === null) return false;
  if (typeof raw !== 'string') throw malformed(context, `error is not a string: ${excerpt(raw)}`);
  return true;
}

function transferEvent(
  txHash: Hex,
  path: string,
  from: Hex,
  to: Hex,
  value: Hex,
  callType: InternalCallType,
): InternalTransferEvent {
  return { kind: 'internal', id: `${txHash}:call:${path}`, txHash, from, to, value, callType };
}

/** The caller's transaction hashes, lowercased (a hash that is not one is the caller's mistake). */
function lowercaseHashes(txHashes: readonly Hex[]): Hex[] {
  return txHashes.map((txHash, i) => {
    if (!HASH.test(txHash)) throw new TypeError(`txHashes[${i}] is not a 32-byte hex hash: ${excerpt(txHash)}`);
    return txHash.toLowerCase() as Hex;
  });
}

/** The result map: one empty list per transaction, in block order. */
function emptyResult(txHashes: readonly Hex[] | undefined): Map<Hex, InternalTransferEvent[]> {
  return new Map((txHashes ?? []).map((txHash) => [txHash, []]));
}

// ---- callTracer (geth, anvil) ----

/** callTracer frame types that move ETH, and the event's callType for each. */
const MOVING_FRAME_TYPES: ReadonlyMap<string, InternalCallType> = new Map([
  ['CALL', 'call'],
  ['CREATE', 'create'],
  ['CREATE2', 'create2'],
  ['SELFDESTRUCT', 'selfdestruct'],
]);

/** A frame waiting to be walked: its place in the tree. */
interface PendingFrame {
  readonly frame: unknown;
  readonly path: string;
  readonly depth: number;
}

/**
 * Parses a callTracer answer. `txHashes` undefined (a probe) takes each item's `txHash`, or a
 * stand-in by position where it is missing.
 */
function parseCallTracer(
  result: unknown,
  txHashes: readonly Hex[] | undefined,
  context: string,
): Map<Hex, InternalTransferEvent[]> {
  if (result === null) throw new RpcFaultError('behind', `${context}: the node has no such block`);
  if (!Array.isArray(result)) throw malformed(context, `not an array of transaction traces: ${excerpt(result)}`);
  if (txHashes !== undefined && result.length !== txHashes.length) {
    throw malformed(context, `${result.length} transaction traces for a block of ${txHashes.length} transactions`);
  }
  const expected = txHashes === undefined ? undefined : lowercaseHashes(txHashes);
  const budget = new TraceBudget(context);
  budget.frames(result.length);
  const byTx = emptyResult(expected);
  for (const [i, item] of result.entries()) {
    const txContext = `${context}, transaction ${i}`;
    if (!isRecord(item)) throw malformed(txContext, `not an object: ${excerpt(item)}`);
    const txHash = callTracerTxHash(item, expected?.[i], i, txContext);
    if (item['result'] === undefined && item['error'] !== undefined) {
      throw new RpcFaultError('node_error', `${txContext}: the node could not trace it: ${excerpt(item['error'])}`, {
        rpcMessage: excerpt(item['error']),
      });
    }
    const events = walkCallFrames(item['result'], txHash, budget, txContext);
    byTx.set(txHash, events);
  }
  return byTx;
}

/** Which transaction an item traces: its `txHash`, which must be `expected` (lowercase) when that is known. */
function callTracerTxHash(item: Record<string, unknown>, expected: Hex | undefined, i: number, context: string): Hex {
  const raw = item['txHash'];
  if (raw === undefined || raw === null) {
    return expected ?? (`0x${i.toString(16).padStart(64, '0')}` as Hex);
  }
  const txHash = hash(raw, context, 'txHash');
  if (expected !== undefined && txHash !== expected) {
    throw new RpcFaultError(
      'inconsistent',
      `${context}: traces ${txHash}, but the block's transaction ${i} is ${expected}: the node traced another block (a reorg?); fetch the block again`,
    );
  }
  return txHash;
}

/**
 * The internal transfers of one transaction's callTracer frame tree, in pre-order. Iterative
 * (an explicit stack, not recursion) so that a deep tree cannot exhaust the call stack; a failed
 * frame's subtree is never entered.
 */
function walkCallFrames(root: unknown, txHash: Hex, budget: TraceBudget, context: string): InternalTransferEvent[] {
  if (!isRecord(root)) throw malformed(context, `result is not a call frame: ${excerpt(root)}`);
  const events: InternalTransferEvent[] = [];
  if (failed(root['error'], context)) return events;
  const stack: PendingFrame[] = [];
  pushChildren(stack, root, '', 0, budget, context);
  for (let pending = stack.pop(); pending !== undefined; pending = stack.pop()) {
    const { frame, path, depth } = pending;
    const frameContext = `${context}, frame ${path}`;
    if (!isRecord(frame)) throw malformed(frameContext, `not a call frame: ${excerpt(frame)}`);
    if (failed(frame['error'], frameContext)) continue;
    const event = callFrameEvent(frame, txHash, path, frameContext);
    if (event !== undefined) {
      budget.path(path);
      events.push(event);
    }
    pushChildren(stack, frame, path, depth, budget, frameContext);
  }
  return events;
}

/** Pushes a frame's `calls` on the stack, last first, so that they pop in order. */
function pushChildren(
  stack: PendingFrame[],
  frame: Record<string, unknown>,
  path: string,
  depth: number,
  budget: TraceBudget,
  context: string,
): void {
  const calls = frame['calls'];
  if (calls === undefined || calls === null) return;
  if (!Array.isArray(calls)) throw malformed(context, `calls is not an array: ${excerpt(calls)}`);
  if (calls.length === 0) return;
  if (depth >= MAX_TRACE_DEPTH) {
    throw malformed(context, `frames nested deeper than ${MAX_TRACE_DEPTH}, the EVM's call depth limit`);
  }
  budget.frames(calls.length);
  const prefix = path === '' ? '' : `${path}.`;
  for (let i = calls.length - 1; i >= 0; i--) {
    stack.push({ frame: calls[i], path: `${prefix}${i}`, depth: depth + 1 });
  }
}

/** The event of one successful frame below the top, or `undefined` when it moves no ETH. */
function callFrameEvent(
  frame: Record<string, unknown>,
  txHash: Hex,
  path: string,
  context: string,
): InternalTransferEvent | undefined {
  const type = frame['type'];
  if (typeof type !== 'string') throw malformed(context, `type is not a string: ${excerpt(type)}`);
  // DELEGATECALL shows its parent's value but moves nothing, STATICCALL cannot, CALLCODE pays
  // the caller itself; a type this code does not know is passed over (its children still count).
  const callType = MOVING_FRAME_TYPES.get(type.toUpperCase());
  if (callType === undefined) return undefined;
  const value = weiValue(frame['value'], context, 'value');
  const from = address(frame['from'], context, 'from');
  const to = address(frame['to'], context, 'to');
  return value === undefined ? undefined : transferEvent(txHash, path, from, to, value, callType);
}

// ---- trace_block (Parity style) ----

/** What the parse knows of one transaction's traces so far. */
interface ParityTxState {
  readonly events: InternalTransferEvent[];
  /** `${parentNode}:${index}` → node, the top-level trace being node 0. */
  readonly nodes: Map<string, number>;
  /** Per node: whether it or an ancestor failed. */
  readonly reverted: boolean[];
}

/**
 * Parses a `trace_block` answer. `txHashes` undefined (a probe) accepts traces of any
 * transaction. Each trace is placed under its parent (which must come before it) by a lookup
 * per level of its `traceAddress`: time linear in the answer's size, whatever its order.
 */
function parseParityTraces(
  result: unknown,
  txHashes: readonly Hex[] | undefined,
  context: string,
): Map<Hex, InternalTransferEvent[]> {
  if (result === null) throw new RpcFaultError('behind', `${context}: the node has no such block`);
  if (!Array.isArray(result)) throw malformed(context, `not an array of traces: ${excerpt(result)}`);
  const budget = new TraceBudget(context);
  budget.frames(result.length);
  const known = txHashes === undefined ? undefined : lowercaseHashes(txHashes);
  const byTx = emptyResult(known);
  const states = new Map<Hex, ParityTxState>();
  for (const [i, trace] of result.entries()) {
    const traceContext = `${context}, trace ${i}`;
    if (!isRecord(trace)) throw malformed(traceContext, `not an object: ${excerpt(trace)}`);
    const type = trace['type'];
    if (typeof type !== 'string') throw malformed(traceContext, `type is not a string: ${excerpt(type)}`);
    const rawTxHash = trace['transactionHash'];
    if (rawTxHash === undefined || rawTxHash === null) {
      if (type === 'reward') continue; // a block or uncle reward: no transaction, not internal
      throw malformed(traceContext, `a ${excerpt(type)} trace without transactionHash`);
    }
    const txHash = hash(rawTxHash, traceContext, 'transactionHash');
    const state = parityTxState(states, byTx, txHash, txHashes !== undefined, traceContext);
    const traceAddress = parityTraceAddress(trace['traceAddress'], traceContext);
    const reverted = placeTrace(state, traceAddress, failed(trace['error'], traceContext), traceContext);
    if (reverted || traceAddress.length === 0) continue;
    const path = traceAddress.join('.');
    const event = parityTraceEvent(trace, type, txHash, path, `${context}, trace ${i} (${path})`);
    if (event !== undefined) {
      budget.path(path);
      state.events.push(event);
    }
  }
  checkEveryTxTraced(byTx, states, known, context);
  return byTx;
}

/** The state of `txHash`'s traces, made at its first trace. */
function parityTxState(
  states: Map<Hex, ParityTxState>,
  byTx: Map<Hex, InternalTransferEvent[]>,
  txHash: Hex,
  txHashesKnown: boolean,
  context: string,
): ParityTxState {
  const known = states.get(txHash);
  if (known !== undefined) return known;
  let events = byTx.get(txHash);
  if (events === undefined) {
    if (txHashesKnown) {
      throw new RpcFaultError(
        'inconsistent',
        `${context}: traces ${txHash}, which is not a transaction of the block: the node traced another block (a reorg?); fetch the block again`,
      );
    }
    events = [];
    byTx.set(txHash, events);
  }
  const state: ParityTxState = { events, nodes: new Map(), reverted: [] };
  states.set(txHash, state);
  return state;
}

/** A `traceAddress`: at most {@link MAX_TRACE_DEPTH} indexes below the top-level call. */
function parityTraceAddress(raw: unknown, context: string): readonly number[] {
  if (!Array.isArray(raw)) throw malformed(context, `traceAddress is not an array: ${excerpt(raw)}`);
  if (raw.length > MAX_TRACE_DEPTH) {
    throw malformed(context, `traceAddress deeper than ${MAX_TRACE_DEPTH}, the EVM's call depth limit`);
  }
  for (const index of raw) {
    if (!Number.isSafeInteger(index) || (index as number) < 0 || (index as number) >= MAX_TRACE_FRAMES_PER_BLOCK) {
      throw malformed(context, `traceAddress holds ${excerpt(index)}, not a frame index`);
    }
  }
  return raw as number[];
}

/**
 * Places a trace in its transaction's tree and says whether its effects were reverted (it or an
 * ancestor failed). Its parent must already be placed, and no other trace may hold its address.
 */
function placeTrace(
  state: ParityTxState,
  traceAddress: readonly number[],
  hasError: boolean,
  context: string,
): boolean {
  if (traceAddress.length === 0) {
    if (state.reverted.length > 0) throw malformed(context, 'a second top-level trace of the same transaction');
    state.reverted.push(hasError);
    return hasError;
  }
  if (state.reverted.length === 0) throw malformed(context, 'a trace before its transaction’s top-level trace');
  let node = 0;
  for (let level = 0; level < traceAddress.length - 1; level++) {
    const child = state.nodes.get(`${node}:${traceAddress[level]}`);
    if (child === undefined) {
      throw malformed(context, `traceAddress ${traceAddress.join('.')} comes before its parent trace`);
    }
    node = child;
  }
  const key = `${node}:${traceAddress[traceAddress.length - 1]}`;
  if (state.nodes.has(key)) throw malformed(context, `two traces at traceAddress ${traceAddress.join('.')}`);
  const reverted = hasError || state.reverted[node] === true;
  state.nodes.set(key, state.reverted.length);
  state.reverted.push(reverted);
  return reverted;
}

/** The event of one successful trace below the top, or `undefined` when it moves no ETH. */
function parityTraceEvent(
  trace: Record<string, unknown>,
  type: string,
  txHash: Hex,
  path: string,
  context: string,
): InternalTransferEvent | undefined {
  const action = trace['action'];
  if (!isRecord(action)) throw malformed(context, `action is not an object: ${excerpt(action)}`);
  switch (type) {
    case 'call': {
      const callType = action['callType'];
      if (typeof callType !== 'string') {
        throw malformed(context, `action.callType is not a string: ${excerpt(callType)}`);
      }
      // delegatecall, staticcall and callcode move no ETH to another account (see callFrameEvent).
      if (callType.toLowerCase() !== 'call') return undefined;
      const value = weiValue(action['value'], context, 'action.value');
      const from = address(action['from'], context, 'action.from');
      const to = address(action['to'], context, 'action.to');
      return value === undefined ? undefined : transferEvent(txHash, path, from, to, value, 'call');
    }
    case 'create': {
      const value = weiValue(action['value'], context, 'action.value');
      const from = address(action['from'], context, 'action.from');
      const result = trace['result'];
      if (!isRecord(result)) {
        throw malformed(context, `result of a successful create is not an object: ${excerpt(result)}`);
      }
      const to = address(result['address'], context, 'result.address');
      // Nodes without creationMethod (OpenEthereum) do not tell CREATE2 apart: call it create.
      const callType = action['creationMethod'] === 'create2' ? 'create2' : 'create';
      return value === undefined ? undefined : transferEvent(txHash, path, from, to, value, callType);
    }
    case 'suicide':
    case 'selfdestruct': {
      const value = weiValue(action['balance'], context, 'action.balance');
      const from = address(action['address'], context, 'action.address');
      const to = address(action['refundAddress'], context, 'action.refundAddress');
      return value === undefined ? undefined : transferEvent(txHash, path, from, to, value, 'selfdestruct');
    }
    default:
      return undefined; // a type this code does not know: passed over, as in callTracer
  }
}

/**
 * Every transaction has a top-level trace: one missing means the node traced a block other than
 * the one fetched (`behind` when it sent no traces at all, as anvil does for a block it lacks).
 */
function checkEveryTxTraced(
  byTx: Map<Hex, InternalTransferEvent[]>,
  states: Map<Hex, ParityTxState>,
  txHashes: readonly Hex[] | undefined,
  context: string,
): void {
  if (txHashes === undefined || states.size === byTx.size) return;
  if (states.size === 0) {
    throw new RpcFaultError(
      'behind',
      `${context}: no traces for a block of ${byTx.size} transactions: the node does not have the block yet`,
    );
  }
  const missing = [...byTx.keys()].find((txHash) => !states.has(txHash));
  throw malformed(context, `no trace of transaction ${missing}, though the block holds it`);
}
