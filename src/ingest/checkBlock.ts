import { RpcFaultError } from '../domain/errors.ts';
import type { BlockLink, Hex } from '../domain/types.ts';
import { excerpt } from './excerpt.ts';
import type { RpcBlock, RpcReceipt, RpcTx } from './toChainBlock.ts';

/** What ingest keeps of a block to follow the chain: its number, hash and parent. */
export type Header = BlockLink;

/** What a block answer must be: the block asked for, by number or by hash. */
export interface BlockExpectation {
  readonly number?: number;
  readonly hash?: Hex;
  /** The chain's id: a transaction that names another chain is refused. */
  readonly chainId: number;
  /** The request, for messages: `eth_getBlockByNumber(0x31)`. */
  readonly call: string;
  /** The number of a block whose hash is `hash`, when ingest knows it (for messages). */
  readonly numberOf?: (hash: Hex) => number | undefined;
}

const QUANTITY = /^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$/;
const LOOSE_QUANTITY = /^0x[0-9a-fA-F]+$/;
const HASH = /^0x[0-9a-fA-F]{64}$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function malformed(call: string, what: string, raw: unknown): RpcFaultError {
  return new RpcFaultError('malformed', `${call} answered ${what} ${excerpt(raw)}`, { method: methodOf(call) });
}

function inconsistent(call: string, what: string): RpcFaultError {
  return new RpcFaultError('inconsistent', `${call} answered ${what}`, { method: methodOf(call) });
}

function methodOf(call: string): string {
  const paren = call.indexOf('(');
  return paren < 0 ? call : call.slice(0, paren);
}

/** A block number as a canonical JSON-RPC quantity (0x, no leading zeros, at most 2^53 - 1). */
export function toBlockNumber(raw: unknown): number | undefined {
  if (typeof raw !== 'string' || raw.length > 16 || !QUANTITY.test(raw)) return undefined;
  const n = Number.parseInt(raw.slice(2), 16);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * The chain id of an `eth_chainId` answer (a canonical quantity); throws fault `malformed`
 * otherwise.
 */
export function toChainId(raw: unknown): number {
  const id = toBlockNumber(raw);
  if (id === undefined) {
    throw new RpcFaultError('malformed', `eth_chainId answered ${excerpt(raw)}`, { method: 'eth_chainId' });
  }
  return id;
}

/** Fault `wrong_chain`: the node answered `eth_chainId` with `id`, not `expected`, so `consequence`. */
export function wrongChain(id: number, expected: number, consequence: string): RpcFaultError {
  return new RpcFaultError('wrong_chain', `eth_chainId answered ${id}, not ${expected}: ${consequence}`, {
    method: 'eth_chainId',
  });
}

/**
 * The `chainId` a transaction names: `undefined` when it names none (absent, null, or 0 as
 * pre-EIP-155 transactions may say), `NaN` when it is not a quantity.
 */
export function txChainId(raw: unknown): number | undefined {
  if (raw === undefined || raw === null) return undefined;
  const n = typeof raw === 'string' ? looseNumber(raw) : undefined;
  if (n === undefined) return Number.NaN;
  return n === 0 ? undefined : n;
}

/** A quantity as a number, accepting leading zeros; `undefined` when it is not one or passes 2^53. */
function looseNumber(raw: string): number | undefined {
  if (!LOOSE_QUANTITY.test(raw)) return undefined;
  const n = Number.parseInt(raw.slice(2), 16);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** `0x31`, the way requests name block numbers. */
export function toQuantity(n: number): Hex {
  return `0x${n.toString(16)}`;
}

/**
 * The header of a block answer (`eth_getBlockBy*`): its number must be a canonical quantity, its
 * hash and parent hash 32-byte hex. Throws fault `malformed` otherwise (`null` included).
 */
export function toHeader(raw: unknown, call: string): Header {
  if (!isObject(raw)) throw malformed(call, 'a block that is not an object:', raw);
  const number = toBlockNumber(raw['number']);
  if (number === undefined) throw malformed(call, 'a block whose number is', raw['number']);
  const hash = raw['hash'];
  if (typeof hash !== 'string' || !HASH.test(hash)) throw malformed(call, 'a block whose hash is', hash);
  const parentHash = raw['parentHash'];
  if (typeof parentHash !== 'string' || !HASH.test(parentHash)) {
    throw malformed(call, 'a block whose parentHash is', parentHash);
  }
  return { number, hash: hash.toLowerCase() as Hex, parentHash: parentHash.toLowerCase() as Hex };
}

/**
 * Checks a block answer of `eth_getBlockBy*(…, true)` before it may enter the chain: it is the
 * block asked for (that number, that hash), and each transaction is full, at its own position
 * (`transactionIndex`), of this block (`blockHash`, `blockNumber` when given) and of this chain
 * (`chainId` when given and not 0). Throws fault `malformed` (wrong shape) or `inconsistent`.
 * The fields of each transaction are checked as they are converted (see `toChainBlock`).
 */
export function checkBlock(raw: unknown, expected: BlockExpectation): { block: RpcBlock; header: Header } {
  const { call } = expected;
  if (raw === null) throw inconsistent(call, 'no block');
  const header = toHeader(raw, call);
  const block = raw as unknown as RpcBlock;
  if (expected.number !== undefined && header.number !== expected.number) {
    const parent = expected.numberOf?.(header.parentHash);
    const whose = parent === undefined ? '' : ` whose parent is block ${parent}'s hash`;
    throw inconsistent(call, `block ${toQuantity(header.number)}${whose}`);
  }
  if (expected.hash !== undefined && header.hash !== expected.hash) {
    throw inconsistent(call, `block ${header.hash} (number ${header.number})`);
  }
  const transactions: unknown = block.transactions;
  if (!Array.isArray(transactions)) throw malformed(call, 'transactions that are not a list:', transactions);
  for (let i = 0; i < transactions.length; i++) {
    const tx: unknown = transactions[i];
    if (!isObject(tx)) throw malformed(call, `transaction ${i} that is not an object:`, tx);
    checkTx(tx, i, header, expected);
  }
  return { block, header };
}

function checkTx(tx: Record<string, unknown>, i: number, header: Header, expected: BlockExpectation): void {
  const { call } = expected;
  const hash = tx['hash'];
  if (typeof hash !== 'string' || !HASH.test(hash)) throw malformed(call, `transaction ${i} whose hash is`, hash);
  const index = tx['transactionIndex'];
  // The usual form is compared as it is; anything else is parsed before it is judged.
  if (index !== toQuantity(i)) {
    const n = typeof index === 'string' ? looseNumber(index) : undefined;
    if (n === undefined) throw malformed(call, `transaction ${i} whose transactionIndex is`, index);
    if (n !== i) throw inconsistent(call, `transaction ${i} with transactionIndex ${n}`);
  }
  const blockHash = tx['blockHash'];
  if (blockHash !== undefined && blockHash !== null && blockHash !== header.hash) {
    if (typeof blockHash !== 'string' || !HASH.test(blockHash)) {
      throw malformed(call, `transaction ${i} whose blockHash is`, blockHash);
    }
    if (blockHash.toLowerCase() !== header.hash) {
      throw inconsistent(call, `transaction ${i} of another block (${blockHash})`);
    }
  }
  const blockNumber = tx['blockNumber'];
  if (blockNumber !== undefined && blockNumber !== null) {
    const n = typeof blockNumber === 'string' ? looseNumber(blockNumber) : undefined;
    if (n === undefined) throw malformed(call, `transaction ${i} whose blockNumber is`, blockNumber);
    if (n !== header.number) throw inconsistent(call, `transaction ${i} of block ${n}`);
  }
  const chainId = txChainId(tx['chainId']);
  if (Number.isNaN(chainId)) throw malformed(call, `transaction ${i} whose chainId is`, tx['chainId']);
  if (chainId !== undefined && chainId !== expected.chainId) {
    throw inconsistent(call, `transaction ${i} of chain ${chainId}, not ${expected.chainId}`);
  }
}

/** Checks that one receipt belongs to transaction `i` of the block; throws `malformed` or `inconsistent`. */
function checkReceipt(raw: unknown, i: number, tx: RpcTx, header: Header, call: string): RpcReceipt {
  if (raw === null) throw inconsistent(call, `no receipt for transaction ${i} of block ${header.number}`);
  if (!isObject(raw)) throw malformed(call, `receipt ${i} that is not an object:`, raw);
  const hash = raw['transactionHash'];
  if (typeof hash !== 'string' || !HASH.test(hash))
    throw malformed(call, `receipt ${i} whose transactionHash is`, hash);
  // The transaction's hash was checked with its block.
  if (hash !== tx.hash && hash.toLowerCase() !== tx.hash.toLowerCase()) {
    throw inconsistent(call, `receipt ${i} of transaction ${hash}, not ${tx.hash}`);
  }
  const blockHash = raw['blockHash'];
  if (blockHash !== undefined && blockHash !== null && blockHash !== header.hash) {
    if (typeof blockHash !== 'string' || !HASH.test(blockHash)) {
      throw malformed(call, `receipt ${i} whose blockHash is`, blockHash);
    }
    if (blockHash.toLowerCase() !== header.hash) throw inconsistent(call, `receipt ${i} of block ${blockHash}`);
  }
  const blockNumber = raw['blockNumber'];
  if (blockNumber !== undefined && blockNumber !== null) {
    const n = typeof blockNumber === 'string' ? looseNumber(blockNumber) : undefined;
    if (n === undefined) throw malformed(call, `receipt ${i} whose blockNumber is`, blockNumber);
    if (n !== header.number) throw inconsistent(call, `receipt ${i} of block ${n}`);
  }
  return raw as unknown as RpcReceipt;
}

/**
 * Checks the answer of `eth_getBlockReceipts` for a checked block: exactly one receipt per
 * transaction, in order, each of that transaction and of this block.
 */
export function checkBlockReceipts(raw: unknown, block: RpcBlock, header: Header, call: string): RpcReceipt[] {
  if (!Array.isArray(raw)) throw malformed(call, 'receipts that are not a list:', raw);
  const txs = block.transactions;
  if (raw.length !== txs.length) {
    throw inconsistent(call, `${raw.length} receipts for the ${txs.length} transactions of block ${header.number}`);
  }
  for (let i = 0; i < raw.length; i++) checkReceipt(raw[i], i, txs[i] as RpcTx, header, call);
  return raw as RpcReceipt[];
}

/** Checks the answer of `eth_getTransactionReceipt` for transaction `i` of a checked block. */
export function checkTxReceipt(raw: unknown, i: number, block: RpcBlock, header: Header, call: string): RpcReceipt {
  return checkReceipt(raw, i, block.transactions[i] as RpcTx, header, call);
}
