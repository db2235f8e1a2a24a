/**
 * The messages of protocol v1 (docs/PROTOCOL.md) as a client receives them: the wire types of
 * `protocol.ts`, plus what the SDK's listeners get. The client imports nothing from the server.
 */
import type {
  ActivityMessage,
  BlockMessage,
  EventKind,
  PendingMessage,
  RemovedMessage,
  SubscribedMessage,
} from './protocol.ts';

export type * from './protocol.ts';

/** Every event kind, in protocol order. */
export const EVENT_KINDS: readonly EventKind[] = ['tx', 'erc20', 'erc721', 'erc1155'];

/** What the listener of `client.subscribeBlocks` receives. */
export type BlocksSubscriptionMessage = SubscribedMessage | BlockMessage | RemovedMessage;

/** What the listener of `client.watchAddresses` receives. */
export type ActivitySubscriptionMessage = SubscribedMessage | ActivityMessage | PendingMessage | RemovedMessage;
