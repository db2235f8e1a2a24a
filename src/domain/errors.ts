/** Error codes a client can receive in an `error` message (PROTOCOL.md, Errors). */
export const PROTOCOL_ERROR_CODES = [
  'BAD_REQUEST',
  'BAD_ADDRESS',
  'UNKNOWN_CHAIN',
  'UNKNOWN_SUBSCRIPTION',
  'TOO_MANY_ADDRESSES',
  'TOO_MANY_SUBSCRIPTIONS',
  'RATE_LIMITED',
  'UNSUPPORTED',
] as const;

/** A stable error code sent to clients. */
export type ProtocolErrorCode = (typeof PROTOCOL_ERROR_CODES)[number];

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
} as const;
