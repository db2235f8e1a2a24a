/**
 * blockcast client SDK (`@blockcast/client`): a WebSocket client of protocol v1 for browsers and
 * Node 20 that reconnects, resumes from cursors and drops duplicates. See docs/PROTOCOL.md.
 */
export type { Backoff } from './backoff.ts';
export type { Encoding } from './codec.ts';
export {
  type AddressWatch,
  CLIENT_DEFAULTS,
  type Client,
  type ClientOptions,
  type ClientStatus,
  createClient,
  type StatusEvent,
  type SubscribeBlocksOptions,
  type Unsubscribe,
  type WatchAddressesOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from './createClient.ts';
export { DEDUPE_WINDOW_BLOCKS, DedupeWindow } from './DedupeWindow.ts';
export { ClientError, type ClientErrorCode } from './errors.ts';
export * from './messages.ts';
