import type { Hex } from '../domain/types.ts';

/**
 * JSON-RPC 2.0 as `/rpc` speaks it: the error codes (the standard ones and EIP-1474's), and the
 * shapes of answers and notifications, built as text.
 */
export const RpcErrorCode = {
  parseError: -32_700,
  invalidRequest: -32_600,
  methodNotFound: -32_601,
  invalidParams: -32_602,
  /** The upstream node could not be reached or did not answer in time. */
  upstreamUnavailable: -32_603,
  /** EIP-1474: a limit (rate, subscriptions, addresses, requests in flight) was reached. */
  limitExceeded: -32_005,
  /** The connection's key or token does not allow it. */
  forbidden: -32_003,
  /** Geth's generic server error (an unknown subscription id). */
  serverError: -32_000,
} as const;

/** A JSON-RPC error object. */
export interface RpcError {
  readonly code: number;
  readonly message: string;
  readonly data?: unknown;
}

/** A JSON-RPC id as the client sent it (`null` when it could not be read). */
export type RpcId = string | number | null;

/** The outcome of one call: a result or an error. */
export type RpcOutcome = { readonly result: unknown } | { readonly error: RpcError };

/** One call of a frame, or why it could not be read. */
export type RpcCall =
  | {
      readonly ok: true;
      readonly id: RpcId;
      readonly notification: boolean;
      readonly method: string;
      readonly params: readonly unknown[];
    }
  | { readonly ok: false; readonly id: RpcId; readonly error: RpcError };

/** A frame read: one call, a batch of calls, or an error for the whole frame. */
export type RpcFrame =
  | { readonly kind: 'single'; readonly call: RpcCall }
  | { readonly kind: 'batch'; readonly calls: readonly RpcCall[] }
  | { readonly kind: 'error'; readonly error: RpcError };

const METHOD = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
/** Characters of an id kept; a longer string id is refused. */
const MAX_ID_CHARS = 128;

/** An error with a message of bounded length. */
export function rpcError(code: number, message: string, data?: unknown): RpcError {
  return { code, message: message.slice(0, 500), ...(data === undefined ? {} : { data }) };
}

function readCall(raw: unknown): RpcCall {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, id: null, error: rpcError(RpcErrorCode.invalidRequest, 'a request must be an object') };
  }
  const request = raw as Record<string, unknown>;
  const rawId = request['id'];
  const idOk =
    rawId === undefined ||
    rawId === null ||
    (typeof rawId === 'number' && Number.isFinite(rawId)) ||
    (typeof rawId === 'string' && rawId.length <= MAX_ID_CHARS);
  const id: RpcId = idOk && rawId !== undefined ? (rawId as RpcId) : null;
  if (!idOk) {
    return {
      ok: false,
      id: null,
      error: rpcError(
        RpcErrorCode.invalidRequest,
        `id must be a number or a string of at most ${MAX_ID_CHARS} characters`,
      ),
    };
  }
  if (request['jsonrpc'] !== '2.0') {
    return { ok: false, id, error: rpcError(RpcErrorCode.invalidRequest, 'jsonrpc must be "2.0"') };
  }
  const method = request['method'];
  if (typeof method !== 'string' || !METHOD.test(method)) {
    return { ok: false, id, error: rpcError(RpcErrorCode.invalidRequest, 'method must be a method name') };
  }
  const params = request['params'];
  if (params !== undefined && params !== null && !Array.isArray(params)) {
    return { ok: false, id, error: rpcError(RpcErrorCode.invalidParams, 'params must be an array') };
  }
  return { ok: true, id, notification: rawId === undefined, method, params: (params as unknown[] | undefined) ?? [] };
}

/**
 * Reads one text frame: a request or a batch of at most `maxBatch`. Never throws; JSON.parse's
 * cost is bounded by the frame's size (the transport bounds that).
 */
export function readRpcFrame(text: string, maxBatch: number): RpcFrame {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { kind: 'error', error: rpcError(RpcErrorCode.parseError, 'not JSON') };
  }
  if (!Array.isArray(raw)) return { kind: 'single', call: readCall(raw) };
  if (raw.length === 0) return { kind: 'error', error: rpcError(RpcErrorCode.invalidRequest, 'empty batch') };
  if (raw.length > maxBatch) {
    return {
      kind: 'error',
      error: rpcError(RpcErrorCode.limitExceeded, `a batch of ${raw.length} requests: at most ${maxBatch}`),
    };
  }
  return { kind: 'batch', calls: raw.map(readCall) };
}

/** The answer to a call, as text. */
export function answerText(id: RpcId, outcome: RpcOutcome): string {
  return 'error' in outcome
    ? JSON.stringify({ jsonrpc: '2.0', id, error: outcome.error })
    : JSON.stringify({ jsonrpc: '2.0', id, result: outcome.result ?? null });
}

/** The text of an `eth_subscription` notification whose result is already JSON text. */
export function notificationText(subscription: string, resultJson: string): string {
  return `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"${subscription}","result":${resultJson}}}`;
}

/** A quantity as JSON-RPC writes it. */
export function toQuantity(n: number | bigint): Hex {
  return `0x${n.toString(16)}`;
}
