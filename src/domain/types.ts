/**
 * The plain types that cross every stage seam. Values follow PROTOCOL.md: addresses and hashes
 * are lowercase 0x hex, quantities that can pass 2^53 are 0x hex strings without leading zeros,
 * block numbers, timestamps (seconds) and indexes are integers.
 */

import type {
  BlockRef,
  EventKind,
  Hex,
  InternalTransferEvent,
  TokenTransferEvent,
} from '../../packages/client/src/protocol.ts';

// The wire types both sides use live in the SDK's protocol module (type-only: no runtime link
// from the gateway to the SDK); src/domain/protocol.test-d.ts fails when the two drift.
export type {
  ActivityEvent,
  BlockRef,
  Erc20TransferEvent,
  Erc721TransferEvent,
  Erc1155TransferEvent,
  EventKind,
  Hex,
  InternalTransferEvent,
  TokenTransferEvent,
  TxEvent,
} from '../../packages/client/src/protocol.ts';

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
  /** From the receipt, as 0x hex (absent where the node gave none). */
  readonly gasUsed?: Hex;
  readonly effectiveGasPrice?: Hex;
  /** Blob gas (EIP-4844) from the receipt: blob transactions only. */
  readonly blobGasUsed?: Hex;
  readonly blobGasPrice?: Hex;
  readonly gas: Hex;
  readonly gasPrice?: Hex;
  readonly maxFeePerGas?: Hex;
  readonly maxPriorityFeePerGas?: Hex;
  readonly input: Hex;
  /** Token transfers decoded from the receipt's logs, in log order; absent when there are none. */
  readonly transfers?: readonly TokenTransferEvent[];
  /** ETH moved by contracts within it, from the node's call traces, in call order; absent when none (or not traced). */
  readonly internal?: readonly InternalTransferEvent[];
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
  /**
   * The node's `safe` and `finalized` blocks as ingest last read them when it handed this block
   * over; absent where the node has no such tags (then finality is off for the chain).
   */
  readonly finality?: Finality;
  /**
   * Ingest asked the node for this block's call traces where it could hold internal transfers
   * (`ChainTx.internal`): set on every block of a chain whose node serves traces.
   */
  readonly traced?: boolean;
  /**
   * Only the block's header is known (the node announced it and ingest handed it over before its
   * transactions, a `head` entry of the chain log): `transactions` is empty, `txCount` counts them.
   * The whole block follows under the same hash, or the header is retracted.
   */
  readonly headerOnly?: true;
  /** How many transactions the block has, where `transactions` does not hold them ({@link headerOnly}). */
  readonly txCount?: number;
}

/** What a chain's node offers beyond blocks, as far as known (PROTOCOL.md `welcome.chains`). */
export interface ChainFeatures {
  /**
   * `finality` subscriptions can be served: the node serves the `safe` and `finalized` tags, and
   * the finalized block is within the blocks the gateway keeps. `undefined` before the first block.
   */
  readonly finality: boolean | undefined;
  /** Why `finality` is false, for the error a subscription asking for it gets. */
  readonly finalityOff?: string;
  /** The node serves call traces: `internal` events. `undefined` before the first block. */
  readonly internal: boolean | undefined;
}

/** Where a chain's finality tags stood: the node's `safe` and `finalized` blocks. */
export interface Finality {
  readonly safe: BlockRef;
  readonly finalized: BlockRef;
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

/** The event kinds of an `activity` subscription (PROTOCOL.md), in protocol order. */
export const EVENT_KINDS = ['tx', 'erc20', 'erc721', 'erc1155', 'internal'] as const satisfies readonly EventKind[];

/** A block's place in its chain: its number, its hash and its parent's hash. */
export interface BlockLink extends BlockRef {
  readonly parentHash: Hex;
}
