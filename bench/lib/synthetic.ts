/**
 * A deterministic synthetic chain for the benchmarks: blocks as ingest hands them to the stages
 * after it (`ChainBlock`), and the addresses subscribers watch, both drawn from one address
 * universe whose popularity follows a Zipf law. The same seed gives the same blocks and the same
 * watch lists in every process, so servers and the controller agree without sending them around.
 */
import type { ChainBlock, ChainTx, Erc20TransferEvent, Hex, InternalTransferEvent } from '../../src/domain/types.ts';

/** The chain id of the synthetic chain. */
export const BENCH_CHAIN_ID = 1;

/** What the blocks of a benchmark look like and who watches what. */
export interface Workload {
  /** `blocks`: every subscriber subscribes to `blocks`; `activity`: to the activity of its addresses. */
  readonly channel: 'blocks' | 'activity';
  readonly seed: number;
  /** Transactions per block. */
  readonly txPerBlock: number;
  /** ERC-20 transfers per block, one per transaction from the first on (at most `txPerBlock`). */
  readonly transfersPerBlock: number;
  /** Number of distinct addresses that transactions and watch lists draw from. */
  readonly universe: number;
  /** Zipf exponent of address popularity (0 is uniform). */
  readonly zipfExponent: number;
  /** Addresses each activity subscriber watches. */
  readonly addressesPerSubscriber: number;
  /**
   * Internal transfers per block (as ingest adds them from call traces): each from one of
   * {@link SYNTHETIC_CONTRACTS} contracts, to an address of the universe drawn like the others,
   * within a transaction of the block drawn at random. @default 0
   */
  readonly internalPerBlock?: number;
  /**
   * Token transfers carry `symbol`, `decimals` and `name` (as ingest adds them once it knows the
   * token), each transfer of one of {@link SYNTHETIC_TOKENS} tokens; otherwise every transfer is
   * of one token without metadata. @default false
   */
  readonly tokenMetadata?: boolean;
}

/** Tokens the transfers of a workload with `tokenMetadata` are drawn from. */
export const SYNTHETIC_TOKENS = 50;

/** Contracts the internal transfers of a workload with `internalPerBlock` come from. */
export const SYNTHETIC_CONTRACTS = 20;

/** Uniform numbers in [0, 1) from a 32-bit seed (mulberry32): fast and the same everywhere. */
export function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d_2b_79_f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function word(seed: number): string {
  return Math.floor(createRandom(seed)() * 4_294_967_296)
    .toString(16)
    .padStart(8, '0');
}

/** The address of rank `rank` in the universe (rank 0 is the most popular): lowercase, 42 characters. */
export function syntheticAddress(rank: number): Hex {
  return `0x${word(rank * 5 + 1)}${word(rank * 5 + 2)}${word(rank * 5 + 3)}${word(rank * 5 + 4)}${word(rank * 5 + 5)}`;
}

/** A 32-byte hash for `(tag, n)`: 66 characters. */
export function syntheticHash(tag: number, n: number): Hex {
  let out = '0x';
  for (let i = 0; i < 8; i++) out += word(tag * 1_000_003 + n * 8 + i + 0x5eed);
  return out as Hex;
}

/** Draws ranks in [0, size) with probability proportional to 1 / (rank + 1)^exponent, from `random`. */
export function createZipf(size: number, exponent: number): (random: () => number) => number {
  if (exponent === 0) return (random) => Math.floor(random() * size);
  const cdf = new Float64Array(size);
  let total = 0;
  for (let r = 0; r < size; r++) {
    total += 1 / (r + 1) ** exponent;
    cdf[r] = total;
  }
  return (random) => {
    const x = random() * total;
    let lo = 0;
    let hi = size - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] as number) < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** What a token of a workload with `tokenMetadata` says about itself: a 3-5 letter symbol, a ~12 character name. */
export interface SyntheticToken {
  readonly address: Hex;
  readonly symbol: string;
  readonly decimals: number;
  readonly name: string;
}

/** The tokens of a workload with `tokenMetadata`, outside the universe (nobody watches a token). */
function syntheticTokens(universe: number): SyntheticToken[] {
  const random = createRandom(0x70_6b_6e);
  return Array.from({ length: SYNTHETIC_TOKENS }, (_, k) => {
    let symbol = '';
    for (let c = 0; c < 3 + (k % 3); c++) symbol += String.fromCharCode(65 + Math.floor(random() * 26));
    return {
      address: syntheticAddress(universe + 100 + k),
      symbol,
      decimals: [18, 6, 8][k % 3] as number,
      name: `Token ${symbol} ${k}`,
    };
  });
}

function hexQuantity(n: number): Hex {
  return `0x${Math.max(0, Math.floor(n)).toString(16)}`;
}

/** A source of synthetic blocks for one workload; block `n` is the same every time it is asked for. */
export interface BlockSource {
  /** Block `number` of the chain, with its transactions (and their transfers). */
  readonly block: (number: number) => ChainBlock;
}

/** Creates the block source of a workload. */
export function createBlockSource(workload: Workload): BlockSource {
  // One CDF shared by every block; each block seeds its own draws, so blocks are independent.
  const zipf = createZipf(workload.universe, workload.zipfExponent);
  const token = syntheticAddress(workload.universe + 7);
  const tokens = workload.tokenMetadata === true ? syntheticTokens(workload.universe) : undefined;
  const contracts = Array.from({ length: SYNTHETIC_CONTRACTS }, (_, k) =>
    syntheticAddress(workload.universe + 1000 + k),
  );
  const block = (number: number): ChainBlock => {
    const random = createRandom(workload.seed ^ Math.imul(number, 0x9e_37_79_b1));
    const rank = (): number => zipf(random);
    const transactions: ChainTx[] = [];
    for (let i = 0; i < workload.txPerBlock; i++) {
      const hash = syntheticHash(number, i);
      const from = syntheticAddress(rank());
      let to = syntheticAddress(rank());
      for (let tries = 0; to === from && tries < 8; tries++) to = syntheticAddress(rank());
      const tx: ChainTx = {
        hash,
        index: i,
        from,
        to,
        value: hexQuantity(random() * 1e15),
        nonce: Math.floor(random() * 5000),
        status: 1,
        gas: '0x5208',
        maxFeePerGas: '0x6fc23ac00',
        maxPriorityFeePerGas: '0x3b9aca00',
        input: '0xa9059cbb',
      };
      if (i < workload.transfersPerBlock) {
        const transferFrom = syntheticAddress(rank());
        let transferTo = syntheticAddress(rank());
        for (let tries = 0; transferTo === transferFrom && tries < 8; tries++) transferTo = syntheticAddress(rank());
        const logIndex = i;
        const transfer: Erc20TransferEvent = {
          kind: 'erc20',
          id: `${hash}:${logIndex}`,
          txHash: hash,
          logIndex,
          token,
          from: transferFrom,
          to: transferTo,
          value: hexQuantity(random() * 1e12),
        };
        transactions.push({ ...tx, to: token, transfers: [transfer] });
      } else {
        transactions.push(tx);
      }
    }
    // The features draw from their own streams: without them, blocks are what they always were.
    if (tokens !== undefined)
      withTokenMetadata(transactions, tokens, createRandom(workload.seed ^ number ^ 0x3c_6e_f3_72));
    const internalPerBlock = workload.internalPerBlock ?? 0;
    if (internalPerBlock > 0) {
      const extra = createRandom(workload.seed ^ Math.imul(number, 0x85_eb_ca_6b) ^ 0x1b_87_35_93);
      withInternalTransfers(transactions, internalPerBlock, contracts, () => syntheticAddress(zipf(extra)), extra);
    }
    return {
      chainId: BENCH_CHAIN_ID,
      number,
      hash: syntheticHash(0, number),
      parentHash: syntheticHash(0, number - 1),
      timestamp: 1_700_000_000 + number * 12,
      miner: syntheticAddress(workload.universe + 3),
      gasUsed: '0x1c9c380',
      gasLimit: '0x1c9c380',
      baseFeePerGas: '0x5d21dba00',
      transactions,
      ...(internalPerBlock > 0 ? { traced: true } : {}),
    };
  };
  return { block };
}

/** Makes each token transfer of `transactions` one of `tokens`, with its metadata (in place). */
function withTokenMetadata(transactions: ChainTx[], tokens: readonly SyntheticToken[], random: () => number): void {
  for (let i = 0; i < transactions.length; i++) {
    const tx = transactions[i] as ChainTx;
    if (tx.transfers === undefined) continue;
    const { address, symbol, decimals, name } = tokens[Math.floor(random() * tokens.length)] as SyntheticToken;
    const transfers = tx.transfers.map((transfer) => ({ ...transfer, token: address, symbol, decimals, name }));
    transactions[i] = { ...tx, to: address, transfers };
  }
}

/** Adds `count` internal transfers (value calls from `contracts` to `recipient()`) to random transactions (in place). */
function withInternalTransfers(
  transactions: ChainTx[],
  count: number,
  contracts: readonly Hex[],
  recipient: () => Hex,
  random: () => number,
): void {
  if (transactions.length === 0) return;
  const byTx = new Map<number, InternalTransferEvent[]>();
  for (let n = 0; n < count; n++) {
    const at = Math.floor(random() * transactions.length);
    const tx = transactions[at] as ChainTx;
    const list = byTx.get(at) ?? [];
    byTx.set(at, list);
    const from = contracts[Math.floor(random() * contracts.length)] as Hex;
    list.push({
      kind: 'internal',
      id: `${tx.hash}:call:${list.length}`,
      txHash: tx.hash,
      from,
      to: recipient(),
      value: hexQuantity(1 + random() * 1e15),
      callType: 'call',
    });
  }
  // In transaction order, as ingest hands them over.
  for (const [at, internal] of byTx) transactions[at] = { ...(transactions[at] as ChainTx), internal };
}

/**
 * The addresses each of `subscribers` activity subscribers watches: `addressesPerSubscriber`
 * distinct ones each, drawn by popularity (popular addresses are watched by many).
 */
export function watchLists(workload: Workload, subscribers: number): Hex[][] {
  const random = createRandom(workload.seed ^ 0x5b_5c_71_be);
  const zipf = createZipf(workload.universe, workload.zipfExponent);
  const rank = (): number => zipf(random);
  const lists: Hex[][] = [];
  for (let s = 0; s < subscribers; s++) {
    const ranks = new Set<number>();
    for (let tries = 0; ranks.size < workload.addressesPerSubscriber && tries < 1000; tries++) ranks.add(rank());
    lists.push([...ranks].map(syntheticAddress));
  }
  return lists;
}

/** One subscribe request per subscriber, as a JSON text frame of protocol v1. */
export function subscribeLines(workload: Workload, subscribers: number): string[] {
  if (workload.channel === 'blocks') return [JSON.stringify({ op: 'subscribe', id: 1, channel: 'blocks' })];
  return watchLists(workload, subscribers).map((addresses) =>
    JSON.stringify({ op: 'subscribe', id: 1, channel: 'activity', addresses }),
  );
}
