import type { ProtocolErrorCode } from './messages.ts';

/**
 * Codes of {@link ClientError}: the protocol's error codes (a request the server refused), plus
 * the client's own:
 * - `MESSAGE_TOO_BIG`: the server closed with 1009; the client stops (fix the client).
 * - `CLOSED_BY_SERVER`: the server closed with a code that says reconnecting would not help.
 * - `UNSUPPORTED_PROTOCOL`: the server's `welcome` names another protocol version.
 * - `BAD_MESSAGE`: a frame from the server could not be decoded; it is skipped.
 * - `LISTENER_FAILED`: an `onMessage` or `onStatus` callback threw; the client carries on.
 * - `CLIENT_CLOSED`: a subscription or an address update was asked of a closed client, or the
 *   client stopped with an address update still waiting.
 * - `SUBSCRIPTION_ENDED`: an address update of a subscription that is over (unsubscribed).
 * - `TOKEN_FAILED`: the `token` function threw or returned no token.
 */
export type ClientErrorCode =
  | ProtocolErrorCode
  | 'MESSAGE_TOO_BIG'
  | 'CLOSED_BY_SERVER'
  | 'UNSUPPORTED_PROTOCOL'
  | 'BAD_MESSAGE'
  | 'LISTENER_FAILED'
  | 'CLIENT_CLOSED'
  | 'SUBSCRIPTION_ENDED'
  | 'TOKEN_FAILED';

/** The one error type of the client SDK: a stable `code`, a message for people, an optional cause. */
export class ClientError extends Error {
  override readonly name = 'ClientError';
  readonly code: ClientErrorCode;
  /** The WebSocket close code, for errors that closed the connection. */
  readonly closeCode?: number;

  constructor(code: ClientErrorCode, message: string, options: { cause?: unknown; closeCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options.closeCode !== undefined) this.closeCode = options.closeCode;
  }
}
