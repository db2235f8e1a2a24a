import type { ProtocolErrorCode } from '../../packages/client/src/protocol.ts';

export type { ProtocolErrorCode } from '../../packages/client/src/protocol.ts';

/**
 * Error codes a client can receive in an `error` message (PROTOCOL.md, Errors): every
 * {@link ProtocolErrorCode} of the protocol module, once (src/domain/protocol.test-d.ts).
 */
export const PROTOCOL_ERROR_CODES = [
  'BAD_REQUEST',
  'BAD_ADDRESS',
  'UNKNOWN_CHAIN',
  'UNKNOWN_SUBSCRIPTION',
  'TOO_MANY_ADDRESSES',
  'TOO_MANY_SUBSCRIPTIONS',
  'RATE_LIMITED',
  'UNSUPPORTED',
  'OVERLOADED',
  'TRY_AGAIN',
  'FORBIDDEN',
  'UNAUTHORIZED',
] as const satisfies readonly ProtocolErrorCode[];

/** Codes of faults that never reach a client: configuration and start-up. */
export type InternalErrorCode = 'BAD_CONFIG' | 'NATIVE_UWS_MISSING' | 'RPC_FAILED';

/** Every code a {@link GatewayError} can carry. */
export type ErrorCode = ProtocolErrorCode | InternalErrorCode;

/** The one error type of the gateway: a stable `code`, a message for people, an optional cause. */
export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The message of anything thrown, for logs and error texts. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Malformed messages in a row past which a connection (`/v1` or `/rpc`) is closed with 1008 (PROTOCOL.md). */
export const MAX_MALFORMED_IN_A_ROW = 16;

/** WebSocket close codes of PROTOCOL.md. */
export const CloseCode = {
  /** Server going away (shutdown, deploy): reconnect and resume. */
  goingAway: 1001,
  /** Message too big: fix the client. */
  messageTooBig: 1009,
  /** Slow consumer: the send buffer passed its limit; reconnect and resume. */
  slowConsumer: 4008,
  /** Too many requests or errors: back off, then reconnect. */
  tooManyRequests: 4029,
  /** Policy violation: malformed messages, one after another; fix the client. */
  policyViolation: 1008,
  /** The connection's token expired without a refresh: get a fresh token and reconnect. */
  tokenExpired: 4401,
} as const;

/**
 * Why an answer of a JSON-RPC node was not used (label `reason` of
 * `blockcast_ingest_rpc_faults_total`): no answer in time, a broken link, an HTTP status other
 * than 200, an answer past the size cap, one that is not JSON, a JSON-RPC envelope that is not
 * one, an error object from the node, a result of the wrong shape, a block that contradicts
 * itself or its chain, a node on another chain, a node behind the gateway's head.
 */
export const RPC_FAULTS = [
  'timeout',
  'transport',
  'http_status',
  'too_large',
  'invalid_json',
  'bad_response',
  'node_error',
  'malformed',
  'inconsistent',
  'wrong_chain',
  'behind',
] as const;

/** One reason of {@link RPC_FAULTS}. */
export type RpcFault = (typeof RPC_FAULTS)[number];

/**
 * An answer of a JSON-RPC node that was not used (code `RPC_FAILED`): why (`fault`), the method
 * asked, and for `node_error` the node's JSON-RPC error `code` and message. The message says
 * what was wrong, never the endpoint's URL (it may carry credentials).
 */
export class RpcFaultError extends GatewayError {
  readonly fault: RpcFault;
  /** The JSON-RPC method whose answer was not used, when there was one. */
  readonly method: string | undefined;
  /** The node's JSON-RPC error code (`node_error` only). */
  readonly rpcCode: number | undefined;
  /** The node's JSON-RPC error message (`node_error` only). */
  readonly rpcMessage: string | undefined;
  /** The node's JSON-RPC error `data` (`node_error` only, when short: revert data). */
  readonly rpcData: string | number | undefined;

  constructor(
    fault: RpcFault,
    message: string,
    options: {
      method?: string;
      rpcCode?: number;
      rpcMessage?: string;
      rpcData?: string | number;
      cause?: unknown;
    } = {},
  ) {
    super('RPC_FAILED', message, options.cause === undefined ? undefined : { cause: options.cause });
    this.fault = fault;
    this.method = options.method;
    this.rpcCode = options.rpcCode;
    this.rpcMessage = options.rpcMessage;
    this.rpcData = options.rpcData;
  }
}
