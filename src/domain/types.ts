/**
 * The plain types that cross every stage seam. Values follow PROTOCOL.md: addresses and hashes
 * are lowercase 0x hex, quantities that can pass 2^53 are 0x hex strings without leading zeros,
 * block numbers, timestamps (seconds) and indexes are integers.
 */

/** A lowercase 0x-prefixed hex string (address, hash or quantity). */
export type Hex = `0x${string}`;

/** A block's number and hash. */
export interface BlockRef {
  readonly number: number;
  readonly hash: Hex;
}

/** One transaction of a block, joined with its receipt. */
export interface ChainTx {
  readonly hash: Hex;
  readonly index: number;
  readonly from: Hex;
  /** `null` for a contract creation. */
  readonly to: Hex | null;
  /** Wei, as 0x hex. */
  readonly value: Hex;
  readonly nonce: number;
  /** 1 success, 0 reverted; absent when the node gave no receipt status (pre-Byzantium). */
  readonly status?: 0 | 1;
  readonly contractAddress?: Hex;
  readonly gas: Hex;
  readonly gasPrice?: Hex;
  readonly maxFeePerGas?: Hex;
  readonly maxPriorityFeePerGas?: Hex;
  readonly input: Hex;
  /** Token transfers decoded from the receipt's logs, in log order; absent when there are none. */
  readonly transfers?: readonly TokenTransferEvent[];
}

/** A canonical block with its transactions, as ingest hands it to the stages after it. */
export interface ChainBlock {
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
  readonly transactions: readonly ChainTx[];
  /**
   * The node's block object without its transactions, every field as the node gave it (what
   * `eth_subscribe newHeads` sends, and `eth_getBlockByNumber` without transactions).
   */
  readonly header?: Readonly<Record<string, unknown>>;
  /** Every log of the block's receipts, in log order (what `eth_subscribe logs` sends). */
  readonly logs?: readonly ChainLog[];
}

/** One log of a block, as the node gave it, with what matching reads from it. */
export interface ChainLog {
  /** The emitting contract, lowercase. */
  readonly address: Hex;
  /** Its topics, lowercase (at most 4). */
  readonly topics: readonly Hex[];
  /** The node's log object (`removed` left out), passed on as it is. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** The event kinds of an `activity` subscription (PROTOCOL.md). */
export const EVENT_KINDS = ['tx', 'erc20', 'erc721', 'erc1155'] as const;

/** One kind of activity event. */
export type EventKind = (typeof EVENT_KINDS)[number];

/** A transaction that touches a watched address, as sent in `activity` messages. */
export interface TxEvent {
  readonly kind: 'tx';
  /** Stable across replays: the transaction hash. */
  readonly id: string;
  readonly txHash: Hex;
  /** Position in its block; `null` in `pending` messages (not in a block yet). */
  readonly txIndex: number | null;
  readonly from: Hex;
  readonly to: Hex | null;
  readonly value: Hex;
  readonly nonce: number;
  readonly status?: 0 | 1;
  readonly contractAddress?: Hex;
}

/** An ERC-20 `Transfer(address indexed from, address indexed to, uint256 value)` log. */
export interface Erc20TransferEvent {
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
export interface Erc721TransferEvent {
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
export interface Erc1155TransferEvent {
  readonly kind: 'erc1155';
  /** Stable across replays: `txHash:logIndex` (single), `txHash:logIndex:i` (i-th item of a batch). */
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

/** A token transfer decoded from a log (kinds `erc20`, `erc721`, `erc1155`). */
export type TokenTransferEvent = Erc20TransferEvent | Erc721TransferEvent | Erc1155TransferEvent;

/** Every event an `activity` or `pending` message can carry. */
export type ActivityEvent = TxEvent | TokenTransferEvent;
