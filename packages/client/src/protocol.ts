/**
 * The wire types of protocol v1 (docs/PROTOCOL.md): the events and messages the gateway sends and
 * its error codes, field for field. The one source of these shapes for both sides: the SDK builds
 * on them, and the gateway's domain imports them (type-only). Types only: this module has no
 * runtime code and imports nothing.
 */

/** A lowercase 0x-prefixed hex string (address, hash or quantity). */
export type Hex = `0x${string}`;

/** A block's number and hash. */
export interface BlockRef {
  readonly number: number;
  readonly hash: Hex;
}

/** The event kinds of an `activity` subscription. */
export type EventKind = 'tx' | 'erc20' | 'erc721' | 'erc1155' | 'internal';

/**
 * What a token contract says of itself (ERC-20 `symbol()`, `decimals()`, `name()`), read once per
 * token and carried on its transfer events. A token seen for the first time may come without them
 * (they are read in the background, never holding a block back); they come on later blocks. A
 * contract that lacks one (or answers something unreadable) never has it.
 */
export interface TokenMetadataFields {
  readonly symbol?: string;
  /** How many decimals the amounts have (`value` / 10^decimals is the amount shown). */
  readonly decimals?: number;
  readonly name?: string;
}

/** A transaction whose `from`, `to` or created contract is a watched address. */
export interface TxEvent {
  readonly kind: 'tx';
  /** Stable across replays: the transaction hash. */
  readonly id: string;
  readonly txHash: Hex;
  /** Position in its block; `null` in `pending` messages. */
  readonly txIndex: number | null;
  readonly from: Hex;
  /** `null` for a contract creation. */
  readonly to: Hex | null;
  /** Wei, as 0x hex. */
  readonly value: Hex;
  readonly nonce: number;
  /** 1 success, 0 reverted; absent in `pending` messages. */
  readonly status?: 0 | 1;
  readonly contractAddress?: Hex;
  /** Gas it used, from its receipt, as 0x hex; absent in `pending` messages and where the node gave none. */
  readonly gasUsed?: Hex;
  /** Wei per gas it paid (the receipt's `effectiveGasPrice`), as 0x hex. */
  readonly effectiveGasPrice?: Hex;
  /** Wei it paid for gas, `gasUsed` × `effectiveGasPrice`, as 0x hex. */
  readonly fee?: Hex;
  /** Wei it paid for blob gas (EIP-4844), `blobGasUsed` × `blobGasPrice` of its receipt, as 0x hex; blob transactions only. */
  readonly blobFee?: Hex;
}

/** An ERC-20 `Transfer(address indexed from, address indexed to, uint256 value)` log. */
export interface Erc20TransferEvent extends TokenMetadataFields {
  readonly kind: 'erc20';
  /** Stable across replays: `txHash:logIndex`. */
  readonly id: string;
  readonly txHash: Hex;
  /** Index of the log in its block. */
  readonly logIndex: number;
  /** The contract that emitted the log. */
  readonly token: Hex;
  readonly from: Hex;
  readonly to: Hex;
  /** Amount in the token's smallest unit, as 0x hex. */
  readonly value: Hex;
}

/** An ERC-721 `Transfer(address indexed from, address indexed to, uint256 indexed tokenId)` log. */
export interface Erc721TransferEvent extends TokenMetadataFields {
  readonly kind: 'erc721';
  /** Stable across replays: `txHash:logIndex`. */
  readonly id: string;
  readonly txHash: Hex;
  /** Index of the log in its block. */
  readonly logIndex: number;
  /** The contract that emitted the log. */
  readonly token: Hex;
  readonly from: Hex;
  readonly to: Hex;
  /** As 0x hex. */
  readonly tokenId: Hex;
}

/** One transfer of an ERC-1155 `TransferSingle` log, or one item of a `TransferBatch` log. */
export interface Erc1155TransferEvent extends TokenMetadataFields {
  readonly kind: 'erc1155';
  /** Stable across replays: `txHash:logIndex`, or `txHash:logIndex:i` for the i-th item of a batch. */
  readonly id: string;
  readonly txHash: Hex;
  /** Index of the log in its block. */
  readonly logIndex: number;
  /** The contract that emitted the log. */
  readonly token: Hex;
  /** Who made the transfer (carried, never matched). */
  readonly operator: Hex;
  readonly from: Hex;
  readonly to: Hex;
  /** As 0x hex. */
  readonly tokenId: Hex;
  /** Amount, as 0x hex. */
  readonly value: Hex;
}

/**
 * ETH moved by a contract inside a transaction (a value-carrying CALL, CREATE, CREATE2 or
 * SELFDESTRUCT below the top level, in a frame that did not fail), from the node's call traces.
 */
export interface InternalTransferEvent {
  readonly kind: 'internal';
  /** Stable across replays: `txHash:call:path`, the path being the frame's trace address (`0.1`). */
  readonly id: string;
  readonly txHash: Hex;
  /** The contract that sent the ETH. */
  readonly from: Hex;
  /** Who got it: the callee, the created contract, or the SELFDESTRUCT's beneficiary. */
  readonly to: Hex;
  /** Wei, as 0x hex (never 0). */
  readonly value: Hex;
  readonly callType: 'call' | 'create' | 'create2' | 'selfdestruct';
}

/** A token transfer decoded from a log (kinds `erc20`, `erc721`, `erc1155`). */
export type TokenTransferEvent = Erc20TransferEvent | Erc721TransferEvent | Erc1155TransferEvent;

/** Every event an `activity`, `pending` or `removed` message can carry; `kind` tells them apart. */
export type ActivityEvent = TxEvent | TokenTransferEvent | InternalTransferEvent;

/** A transaction of a `full` block: the `tx` event without `kind` and `id`, plus gas and input. */
export interface BlockTransaction extends Omit<TxEvent, 'kind' | 'id'> {
  readonly gas: Hex;
  readonly gasPrice?: Hex;
  readonly maxFeePerGas?: Hex;
  readonly maxPriorityFeePerGas?: Hex;
  /** Call data; cut to the 4-byte selector unless the subscription asked for `fullInput`. */
  readonly input: Hex;
}

/** The first message of every connection. */
export interface WelcomeMessage {
  readonly type: 'welcome';
  readonly protocol: number;
  readonly chains: readonly WelcomeChain[];
  readonly limits: Readonly<Record<string, number>>;
  /** What the connection's key or token is, when the gateway needs one. */
  readonly auth?: AuthSummary;
}

/** A chain in `welcome`: its head, and what its node offers once the gateway knows. */
export interface WelcomeChain {
  readonly chainId: number;
  readonly head: BlockRef | null;
  /** `finality` subscriptions and `finality` messages are served (the node has `safe`/`finalized`). */
  readonly finality?: boolean;
  /** `internal` events are served (the node has call traces). */
  readonly internal?: boolean;
}

/** A connection's credential as the gateway sees it (`welcome.auth`, `authed`). */
export interface AuthSummary {
  /** The key's name (`token` for a token). */
  readonly key: string;
  /** The token's `sub`. */
  readonly subject?: string;
  /** When the token expires, in seconds since the epoch: the connection is closed with 4401 then. */
  readonly expiresAt?: number;
  /** How many addresses the key or token may watch, when it names them. */
  readonly addresses?: number;
}

/** The gateway took a fresh token (`op: "auth"`): the connection's deadline moved. */
export interface AuthedMessage extends AuthSummary {
  readonly type: 'authed';
  readonly id?: number | string;
}

/**
 * The server accepted a subscription (also after a resume). `sub` is the server's id for it on
 * the current connection: it changes with every reconnect.
 */
export interface SubscribedMessage {
  readonly type: 'subscribed';
  readonly id?: number | string;
  readonly sub: string;
  readonly channel: 'blocks' | 'activity';
  readonly chainId: number;
  readonly head: BlockRef | null;
  /**
   * Only on a resume: `true` when everything missed was replayed, `false` when the server could
   * not (cursor too old or unknown) and delivery restarts at the head: resync by other means.
   */
  readonly recovered?: boolean;
  /** The subscription's position: everything up to this block has been sent (resume from it). */
  readonly cursor?: string;
}

/** Reply to `update`. */
export interface UpdatedMessage {
  readonly type: 'updated';
  readonly id?: number | string;
  readonly sub: string;
  readonly addresses: number;
}

/** Reply to `unsubscribe`. */
export interface UnsubscribedMessage {
  readonly type: 'unsubscribed';
  readonly id?: number | string;
  readonly sub: string;
}

/** Reply to `ping`. */
export interface PongMessage {
  readonly type: 'pong';
  readonly id?: number | string;
  /**
   * Each subscription's position (`sub` → cursor) when the pong was sent: every message up to
   * it arrived before the pong, so a quiet subscription can resume from there.
   */
  readonly cursors?: Readonly<Record<string, string>>;
}

/** The stable error codes of protocol v1. */
export type ProtocolErrorCode =
  | 'BAD_REQUEST'
  | 'BAD_ADDRESS'
  | 'UNKNOWN_CHAIN'
  | 'UNKNOWN_SUBSCRIPTION'
  | 'TOO_MANY_ADDRESSES'
  | 'TOO_MANY_SUBSCRIPTIONS'
  | 'RATE_LIMITED'
  | 'UNSUPPORTED'
  | 'OVERLOADED'
  | 'TRY_AGAIN'
  | 'FORBIDDEN'
  | 'UNAUTHORIZED';

/** The server refused a request (with its `id`) or a message it could not read. */
export interface ErrorMessage {
  readonly type: 'error';
  readonly id?: number | string;
  readonly code: ProtocolErrorCode;
  readonly message: string;
  /** With `TRY_AGAIN`: how long to wait before sending the request again, in ms. */
  readonly retryAfterMs?: number;
}

/** A new block on a `blocks` subscription. */
export interface BlockMessage {
  readonly type: 'block';
  readonly sub: string;
  readonly chainId: number;
  readonly number: number;
  readonly hash: Hex;
  readonly parentHash: Hex;
  /** Seconds since the epoch. */
  readonly timestamp: number;
  readonly miner: Hex;
  readonly gasUsed: Hex;
  readonly gasLimit: Hex;
  readonly baseFeePerGas?: Hex;
  readonly txCount: number;
  /** Hand back to resume after this block. */
  readonly cursor: string;
  /** Only with `full: true`. */
  readonly transactions?: readonly BlockTransaction[];
}

/** Every match of one block on an `activity` subscription (at most one message per block). */
export interface ActivityMessage {
  readonly type: 'activity';
  readonly sub: string;
  readonly chainId: number;
  readonly block: BlockRef & { readonly timestamp: number };
  /** Hand back to resume after this block. */
  readonly cursor: string;
  readonly events: readonly ActivityEvent[];
}

/** Matching mempool transactions on an `activity` subscription with `pending: true`. */
export interface PendingMessage {
  readonly type: 'pending';
  readonly sub: string;
  readonly chainId: number;
  readonly events: readonly ActivityEvent[];
}

/**
 * A block left the canonical chain: forget what was delivered for it. On `activity` it lists the
 * events that had been delivered for that block; on `blocks` it only names the block.
 */
export interface RemovedMessage {
  readonly type: 'removed';
  readonly sub: string;
  readonly chainId: number;
  readonly block: BlockRef;
  /** Points at the retracted block's parent: where the subscription stands now. */
  readonly cursor: string;
  /** On `activity` subscriptions only. */
  readonly events?: readonly ActivityEvent[];
}

/**
 * The node's finalized block moved past what a subscription was sent (every `blocks`
 * subscription at each move; an `activity` one when a block it was sent activity for became
 * final; none that waits for finality itself): every block up to `finalized` is final and will
 * never be removed.
 */
export interface FinalityMessage {
  readonly type: 'finality';
  readonly sub: string;
  readonly chainId: number;
  readonly safe: BlockRef;
  readonly finalized: BlockRef;
}

/**
 * A pending transaction of a watched address was replaced: another transaction of the same
 * sender and nonce (`by`) was mined in `block`. `reason` is `cancel` when the replacement sends
 * nothing to the sender itself, `speedup` otherwise.
 */
export interface ReplacedMessage {
  readonly type: 'replaced';
  readonly sub: string;
  readonly chainId: number;
  /** The replaced transaction's hash (the `id` of its `pending` event). */
  readonly id: Hex;
  readonly from: Hex;
  readonly nonce: number;
  readonly by: Hex;
  readonly reason: 'speedup' | 'cancel';
  readonly block: BlockRef;
}

/** A pending transaction of a watched address left the node's mempool and was not mined in time. */
export interface DroppedMessage {
  readonly type: 'dropped';
  readonly sub: string;
  readonly chainId: number;
  /** The dropped transaction's hash (the `id` of its `pending` event). */
  readonly id: Hex;
  readonly from: Hex;
  readonly nonce: number;
}

/**
 * The levels a subscription may wait for instead of a count of confirmations: the node's `safe`
 * or `finalized` block (its `finality` option).
 */
export type FinalityLevel = 'safe' | 'finalized';

/** Every message the server sends, discriminated by `type`. */
export type ServerMessage =
  | WelcomeMessage
  | SubscribedMessage
  | UpdatedMessage
  | UnsubscribedMessage
  | PongMessage
  | AuthedMessage
  | ErrorMessage
  | BlockMessage
  | ActivityMessage
  | PendingMessage
  | RemovedMessage
  | FinalityMessage
  | ReplacedMessage
  | DroppedMessage;
