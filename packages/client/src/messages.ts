/**
 * The messages of protocol v1 (docs/PROTOCOL.md) as a client receives them: the wire types of
 * `protocol.ts`, plus what the SDK's listeners get. The client imports nothing from the server.
 */
import type {
  ActivityMessage,
  BlockMessage,
  DroppedMessage,
  EventKind,
  FinalityLevel,
  FinalityMessage,
  PendingMessage,
  RemovedMessage,
  ReplacedMessage,
  SubscribedMessage,
} from './protocol.ts';

export type * from './protocol.ts';

/** Every event kind, in protocol order. */
export const EVENT_KINDS: readonly EventKind[] = ['tx', 'erc20', 'erc721', 'erc1155', 'internal'];

/** Every {@link FinalityLevel}, weakest first. */
export const FINALITY_LEVELS: readonly FinalityLevel[] = ['safe', 'finalized'];

/**
 * What the listener of `client.subscribeBlocks` receives. `finality` comes only to subscriptions
 * that do not wait for finality themselves.
 */
export type BlocksSubscriptionMessage = SubscribedMessage | BlockMessage | RemovedMessage | FinalityMessage;

/**
 * What the listener of `client.watchAddresses` receives. `replaced` and `dropped` come only with
 * `pending: true`; `finality` only to subscriptions that do not wait for finality themselves.
 */
export type ActivitySubscriptionMessage =
  | SubscribedMessage
  | ActivityMessage
  | PendingMessage
  | RemovedMessage
  | FinalityMessage
  | ReplacedMessage
  | DroppedMessage;
