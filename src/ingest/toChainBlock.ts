import { RpcFaultError } from '../domain/errors.ts';
import type { ChainBlock, ChainLog, ChainTx, Hex } from '../domain/types.ts';
import { decodeTransfers } from './decodeTransfers.ts';
import { excerpt } from './excerpt.ts';

/** A block as `eth_getBlockByNumber(n, true)` returns it (the fields ingest reads). */
export interface RpcBlock {
  number: string;
  hash: string;
  parentHash: string;
  timestamp: string;
  miner: string;
  gasUsed: string;
  gasLimit: string;
  baseFeePerGas?: string | null;
  transactions: RpcTx[];
}

/** A transaction object inside an {@link RpcBlock}. */
export interface RpcTx {
  hash: string;
  transactionIndex: string;
  from: string;
  to: string | null;
  value: string;
  nonce: string;
  gas: string;
  gasPrice?: string | null;
  maxFeePerGas?: string | null;
  maxPriorityFeePerGas?: string | null;
  input: string;
}

/** A receipt as `eth_getBlockReceipts` / `eth_getTransactionReceipt` return it (fields read). */
export interface RpcReceipt {
  transactionHash: string;
  blockHash?: string;
  status?: string | null;
  contractAddress?: string | null;
  gasUsed?: string | null;
  effectiveGasPrice?: string | null;
  blobGasUsed?: string | null;
  blobGasPrice?: string | null;
  /** Decoded into token transfers by {@link decodeTransfers}; malformed logs are skipped, never fatal. */
  logs?: unknown;
}

const CANONICAL_QUANTITY = /^0x(0|[1-9a-f][0-9a-f]*)$/;
const HEX_DATA = /^0x[0-9a-fA-F]*$/;

/** Characters of the longest quantity read: 0x and 256 bits. */
const MAX_QUANTITY_CHARS = 66;

function quantity(raw: unknown, field: string): Hex {
  if (typeof raw !== 'string' || raw.length > MAX_QUANTITY_CHARS) {
    throw new RpcFaultError('malformed', `node sent a bad quantity in ${field}: ${excerpt(raw)}`);
  }
  if (CANONICAL_QUANTITY.test(raw)) return raw as Hex;
  if (HEX_DATA.test(raw) && raw.length > 2) {
    return `0x${BigInt(raw).toString(16)}`;
  }
  throw new RpcFaultError('malformed', `node sent a bad quantity in ${field}: ${excerpt(raw)}`);
}

function int(raw: unknown, field: string): number {
  const n = Number(quantity(raw, field));
  if (!Number.isSafeInteger(n)) throw new RpcFaultError('malformed', `${field} is too large: ${excerpt(raw)}`);
  return n;
}

function data(raw: unknown, field: string): Hex {
  if (typeof raw === 'string' && HEX_DATA.test(raw)) return raw.toLowerCase() as Hex;
  throw new RpcFaultError('malformed', `node sent bad hex data in ${field}: ${excerpt(raw)}`);
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const HASH = /^0x[0-9a-fA-F]{64}$/;

function address(raw: unknown, field: string): Hex {
  if (typeof raw === 'string' && ADDRESS.test(raw)) return raw.toLowerCase() as Hex;
  throw new RpcFaultError('malformed', `node sent a bad address in ${field}: ${excerpt(raw)}`);
}

function hash(raw: unknown, field: string): Hex {
  if (typeof raw === 'string' && HASH.test(raw)) return raw.toLowerCase() as Hex;
  throw new RpcFaultError('malformed', `node sent a bad hash in ${field}: ${excerpt(raw)}`);
}

function optionalQuantity(raw: unknown, field: string): Hex | undefined {
  return raw === undefined || raw === null ? undefined : quantity(raw, field);
}

function toChainTx(tx: RpcTx, receipt: RpcReceipt | undefined): ChainTx {
  const gasPrice = optionalQuantity(tx.gasPrice, 'tx.gasPrice');
  const maxFeePerGas = optionalQuantity(tx.maxFeePerGas, 'tx.maxFeePerGas');
  const maxPriorityFeePerGas = optionalQuantity(tx.maxPriorityFeePerGas, 'tx.maxPriorityFeePerGas');
  const rawStatus = receipt?.status;
  const status =
    rawStatus === undefined || rawStatus === null
      ? undefined
      : Number(quantity(rawStatus, 'receipt.status')) === 1
        ? 1
        : 0;
  const contractAddress =
    receipt?.contractAddress === undefined || receipt.contractAddress === null
      ? undefined
      : address(receipt.contractAddress, 'receipt.contractAddress');
  const txHash = hash(tx.hash, 'tx.hash');
  const transfers = decodeTransfers(txHash, receipt?.logs);
  // Optional fields are set, not spread: this runs for every transaction of every block.
  const out: { -readonly [K in keyof ChainTx]: ChainTx[K] } = {
    hash: txHash,
    index: int(tx.transactionIndex, 'tx.transactionIndex'),
    from: address(tx.from, 'tx.from'),
    to: tx.to === null || tx.to === undefined ? null : address(tx.to, 'tx.to'),
    value: quantity(tx.value, 'tx.value'),
    nonce: int(tx.nonce, 'tx.nonce'),
    gas: quantity(tx.gas, 'tx.gas'),
    input: data(tx.input, 'tx.input'),
  };
  if (status !== undefined) out.status = status;
  if (contractAddress !== undefined) out.contractAddress = contractAddress;
  if (receipt !== undefined) {
    const gasUsed = optionalQuantity(receipt.gasUsed, 'receipt.gasUsed');
    const effectiveGasPrice = optionalQuantity(receipt.effectiveGasPrice, 'receipt.effectiveGasPrice');
    const blobGasUsed = optionalQuantity(receipt.blobGasUsed, 'receipt.blobGasUsed');
    const blobGasPrice = optionalQuantity(receipt.blobGasPrice, 'receipt.blobGasPrice');
    if (gasUsed !== undefined) out.gasUsed = gasUsed;
    if (effectiveGasPrice !== undefined) out.effectiveGasPrice = effectiveGasPrice;
    if (blobGasUsed !== undefined) out.blobGasUsed = blobGasUsed;
    if (blobGasPrice !== undefined) out.blobGasPrice = blobGasPrice;
  }
  if (transfers.length > 0) out.transfers = transfers;
  if (maxFeePerGas !== undefined) out.maxFeePerGas = maxFeePerGas;
  if (maxPriorityFeePerGas !== undefined) out.maxPriorityFeePerGas = maxPriorityFeePerGas;
  if (gasPrice !== undefined && maxFeePerGas === undefined) out.gasPrice = gasPrice;
  return out;
}

/**
 * Joins a block and its receipts into a {@link ChainBlock}. Receipts are matched by transaction
 * hash; a transaction without one keeps no `status`.
 */
export function toChainBlock(chainId: number, block: RpcBlock, receipts: readonly RpcReceipt[]): ChainBlock {
  // Receipts come in transaction order as a rule; the map is built only for those that do not.
  let byHash: Map<string, RpcReceipt> | undefined;
  const receiptOf = (tx: RpcTx, i: number): RpcReceipt | undefined => {
    const same = receipts[i];
    if (same !== undefined && same.transactionHash === tx.hash) return same;
    if (byHash === undefined) {
      byHash = new Map();
      for (const r of receipts) byHash.set(r.transactionHash.toLowerCase(), r);
    }
    return typeof tx.hash === 'string' ? byHash.get(tx.hash.toLowerCase()) : undefined;
  };
  return {
    ...headerFields(chainId, block),
    transactions: block.transactions.map((tx, i) => toChainTx(tx, receiptOf(tx, i))),
    header: toHeader(block),
    logs: toLogs(block.transactions, receiptOf),
  };
}

/** The fields of a {@link ChainBlock} that its header gives, checked and converted. */
function headerFields(chainId: number, block: Omit<RpcBlock, 'transactions'>) {
  const baseFeePerGas = optionalQuantity(block.baseFeePerGas, 'block.baseFeePerGas');
  return {
    chainId,
    number: int(block.number, 'block.number'),
    hash: hash(block.hash, 'block.hash'),
    parentHash: hash(block.parentHash, 'block.parentHash'),
    timestamp: int(block.timestamp, 'block.timestamp'),
    miner: address(block.miner, 'block.miner'),
    gasUsed: quantity(block.gasUsed, 'block.gasUsed'),
    gasLimit: quantity(block.gasLimit, 'block.gasLimit'),
    ...(baseFeePerGas === undefined ? {} : { baseFeePerGas }),
  };
}

/** The root of an empty transaction trie: a header with it announces a block without transactions. */
const EMPTY_TRIE_ROOT = '0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421';
/** Transaction hashes a header may list, at most, to be taken as a count (a hostile node's array is bounded). */
const MAX_LISTED_TRANSACTIONS = 1_000_000;

/**
 * A block as its header announces it (a `newHeads` notification, or `eth_getBlockByNumber(…,
 * false)`): a {@link ChainBlock} with {@link ChainBlock.headerOnly} and its transaction count, or
 * `undefined` when the header does not tell how many transactions the block has (geth's
 * `newHeads` lists none: only an empty transaction root says). Throws fault `malformed` for a
 * header field that is not what it must be.
 */
export function toChainHead(chainId: number, raw: Readonly<Record<string, unknown>>): ChainBlock | undefined {
  const listed = raw['transactions'];
  const txCount = Array.isArray(listed) ? listed.length : raw['transactionsRoot'] === EMPTY_TRIE_ROOT ? 0 : undefined;
  if (txCount === undefined || txCount > MAX_LISTED_TRANSACTIONS) return undefined;
  return {
    ...headerFields(chainId, raw as unknown as Omit<RpcBlock, 'transactions'>),
    transactions: [],
    txCount,
    headerOnly: true,
  };
}

/** The node's block object with its transactions as hashes, as `newHeads` gives it. */
function toHeader(block: RpcBlock): Readonly<Record<string, unknown>> {
  const header: Record<string, unknown> = { ...(block as unknown as Record<string, unknown>) };
  header['transactions'] = block.transactions.map((tx) => tx.hash);
  return Object.freeze(header);
}

const TOPIC = /^0x[0-9a-fA-F]{64}$/;

/**
 * Every log of the receipts, in order, for `eth_subscribe logs`. A log whose address or topics
 * are malformed is left out (a node's fault is never fatal here; decodeTransfers does the same).
 */
function toLogs(
  transactions: readonly RpcTx[],
  receiptOf: (tx: RpcTx, i: number) => RpcReceipt | undefined,
): readonly ChainLog[] {
  const out: ChainLog[] = [];
  transactions.forEach((tx, i) => {
    const logs = receiptOf(tx, i)?.logs;
    if (!Array.isArray(logs)) return;
    for (const log of logs as unknown[]) {
      if (typeof log !== 'object' || log === null) continue;
      const { address: rawAddress, topics: rawTopics } = log as { address?: unknown; topics?: unknown };
      if (typeof rawAddress !== 'string' || !ADDRESS.test(rawAddress)) continue;
      if (!Array.isArray(rawTopics) || rawTopics.length > 4) continue;
      if (!rawTopics.every((t) => typeof t === 'string' && TOPIC.test(t))) continue;
      const { removed: _removed, ...raw } = log as Record<string, unknown>;
      out.push({
        address: rawAddress.toLowerCase() as Hex,
        topics: (rawTopics as string[]).map((t) => t.toLowerCase() as Hex),
        raw: Object.freeze(raw),
      });
    }
  });
  return out;
}
