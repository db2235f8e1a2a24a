import type { Erc1155TransferEvent, Hex, TokenTransferEvent } from '../domain/types.ts';

/**
 * A log as a receipt carries it (the fields read). Typed loosely on purpose: everything in a log
 * but its shape is chosen by whichever contract emitted it, so the decoder checks each field.
 */
export interface RpcLog {
  address: string;
  topics: string[];
  data: string;
  logIndex: string;
  removed?: boolean;
}

/** `keccak256("Transfer(address,address,uint256)")`: ERC-20 and ERC-721. */
export const TRANSFER_TOPIC = '0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef';
/** `keccak256("TransferSingle(address,address,address,uint256,uint256)")`: ERC-1155. */
export const TRANSFER_SINGLE_TOPIC = '0xc3d58168c5ae7397731d063d5bbf3d657854427343f4c083240f7aacaa2d0f62';
/** `keccak256("TransferBatch(address,address,address,uint256[],uint256[])")`: ERC-1155. */
export const TRANSFER_BATCH_TOPIC = '0x4a39dc06d4c0dbc64b70af90fd698a233a518aa5d07e595d983b8c0526c8f7fb';

/**
 * Why a log that carries a token transfer signature gave no event (logs with any other first
 * topic are not token transfers and are passed over without a reason).
 *
 * - `malformed`: not a log as JSON-RPC writes one (address, 32-byte topics, even-length hex data,
 *   logIndex), or marked `removed`.
 * - `transfer-topics`: `Transfer` with fewer than 3 or more than 4 topics (e.g. nothing indexed,
 *   as pre-ERC-721 contracts emitted it): which argument is which cannot be told.
 * - `erc20-data`: `Transfer` with 3 topics whose data is not exactly one 32-byte word.
 * - `erc721-data`: `Transfer` with 4 topics whose data is not empty.
 * - `address-topic`: an address topic (from, to, operator) whose upper 12 bytes are not zero, so
 *   it is not an ABI-encoded address.
 * - `erc1155-topics`: `TransferSingle` or `TransferBatch` without exactly 4 topics.
 * - `erc1155-data`: `TransferSingle` data that is not exactly two 32-byte words.
 * - `erc1155-batch-data`: `TransferBatch` data that is not two ABI-encoded `uint256[]` of equal
 *   length: an offset or length past the data (however large it claims to be), or lengths that differ.
 */
export const SKIP_REASONS = [
  'malformed',
  'transfer-topics',
  'erc20-data',
  'erc721-data',
  'address-topic',
  'erc1155-topics',
  'erc1155-data',
  'erc1155-batch-data',
] as const;

/** Why a token-signature log was skipped; see {@link SKIP_REASONS}. */
export type SkipReason = (typeof SKIP_REASONS)[number];

/** Called for each skipped token-signature log: its position in the receipt's logs and the rule. */
export type OnSkippedLog = (position: number, reason: SkipReason) => void;

const WORD_CHARS = 64;
const TOPIC = /^0x[0-9a-f]{64}$/;
const ADDRESS = /^0x[0-9a-f]{40}$/;
const DATA = /^0x(?:[0-9a-f]{2})*$/;
const QUANTITY = /^0x[0-9a-f]{1,16}$/;
const ZERO_ADDRESS_PAD = '0'.repeat(24);

class Skip {
  constructor(readonly reason: SkipReason) {}
}

/** A 32-byte word (64 hex chars, no prefix) as a 0x quantity without leading zeros. */
function wordQuantity(word: string): Hex {
  let i = 0;
  while (i < word.length - 1 && word.charCodeAt(i) === 48) i++;
  return `0x${word.slice(i)}`;
}

/** The address in a topic; the upper 12 bytes must be zero. */
function topicAddress(topic: string): Hex {
  if (!topic.startsWith(ZERO_ADDRESS_PAD, 2)) throw new Skip('address-topic');
  return `0x${topic.slice(26)}`;
}

/** The i-th 32-byte word of data (without 0x), `undefined` past its end. */
function word(data: string, i: number): string | undefined {
  const start = 2 + i * WORD_CHARS;
  return start + WORD_CHARS > data.length ? undefined : data.slice(start, start + WORD_CHARS);
}

/** A word read as a non-negative integer index, or `undefined` when it passes 2^48. */
function smallInt(w: string): number | undefined {
  // Byte offsets and lengths within one log's data fit in 48 bits by far; larger claims are absurd.
  if (!/^0{52}/.test(w)) return undefined;
  return Number.parseInt(w.slice(52), 16);
}

/** The ABI-encoded `uint256[]` whose offset is in head word `headWord`: its words (no 0x). */
function uintArray(data: string, headWord: number, dataWords: number): string[] {
  const offsetWord = word(data, headWord);
  const offset = offsetWord === undefined ? undefined : smallInt(offsetWord);
  if (offset === undefined || offset % 32 !== 0) throw new Skip('erc1155-batch-data');
  const lengthAt = offset / 32;
  const lengthWord = word(data, lengthAt);
  const length = lengthWord === undefined ? undefined : smallInt(lengthWord);
  // Bounds first, so a length of 2^40 allocates nothing.
  if (length === undefined || lengthAt + 1 + length > dataWords) throw new Skip('erc1155-batch-data');
  const items: string[] = [];
  for (let i = 0; i < length; i++) items.push(word(data, lengthAt + 1 + i) as string);
  return items;
}

function decodeLog(txHash: Hex, raw: unknown): TokenTransferEvent[] {
  if (typeof raw !== 'object' || raw === null) throw new Skip('malformed');
  const log = raw as Partial<Record<keyof RpcLog, unknown>>;
  const topics = log.topics;
  if (!Array.isArray(topics)) throw new Skip('malformed');
  const topic0 = typeof topics[0] === 'string' ? topics[0].toLowerCase() : undefined;
  const isTransfer = topic0 === TRANSFER_TOPIC;
  const isSingle = topic0 === TRANSFER_SINGLE_TOPIC;
  const isBatch = topic0 === TRANSFER_BATCH_TOPIC;
  if (!isTransfer && !isSingle && !isBatch) return [];

  if (log.removed === true) throw new Skip('malformed');
  const address = typeof log.address === 'string' ? log.address.toLowerCase() : '';
  const data = typeof log.data === 'string' ? log.data.toLowerCase() : '';
  const logIndexHex = typeof log.logIndex === 'string' ? log.logIndex.toLowerCase() : '';
  const lowered = topics.map((t) => (typeof t === 'string' ? t.toLowerCase() : ''));
  if (
    !ADDRESS.test(address) ||
    !DATA.test(data) ||
    !QUANTITY.test(logIndexHex) ||
    !lowered.every((t) => TOPIC.test(t))
  ) {
    throw new Skip('malformed');
  }
  const token = address as Hex;
  const logIndex = Number.parseInt(logIndexHex.slice(2), 16);
  const id = `${txHash}:${logIndex}`;
  const dataBytes = (data.length - 2) / 2;

  if (isTransfer) {
    if (lowered.length !== 3 && lowered.length !== 4) throw new Skip('transfer-topics');
    const from = topicAddress(lowered[1] as string);
    const to = topicAddress(lowered[2] as string);
    if (lowered.length === 3) {
      if (dataBytes !== 32) throw new Skip('erc20-data');
      return [{ kind: 'erc20', id, txHash, logIndex, token, from, to, value: wordQuantity(data.slice(2)) }];
    }
    if (dataBytes !== 0) throw new Skip('erc721-data');
    const tokenId = wordQuantity((lowered[3] as string).slice(2));
    return [{ kind: 'erc721', id, txHash, logIndex, token, from, to, tokenId }];
  }

  if (lowered.length !== 4) throw new Skip('erc1155-topics');
  const operator = topicAddress(lowered[1] as string);
  const from = topicAddress(lowered[2] as string);
  const to = topicAddress(lowered[3] as string);
  if (isSingle) {
    if (dataBytes !== 64) throw new Skip('erc1155-data');
    const tokenId = wordQuantity(word(data, 0) as string);
    const value = wordQuantity(word(data, 1) as string);
    return [{ kind: 'erc1155', id, txHash, logIndex, token, operator, from, to, tokenId, value }];
  }
  if (dataBytes % 32 !== 0) throw new Skip('erc1155-batch-data');
  const dataWords = dataBytes / 32;
  const ids = uintArray(data, 0, dataWords);
  const values = uintArray(data, 1, dataWords);
  if (ids.length !== values.length) throw new Skip('erc1155-batch-data');
  const events: Erc1155TransferEvent[] = [];
  for (let i = 0; i < ids.length; i++) {
    events.push({
      kind: 'erc1155',
      id: `${id}:${i}`,
      txHash,
      logIndex,
      token,
      operator,
      from,
      to,
      tokenId: wordQuantity(ids[i] as string),
      value: wordQuantity(values[i] as string),
    });
  }
  return events;
}

/**
 * Decodes the token transfers of one transaction's receipt logs, in log order: ERC-20 and
 * ERC-721 `Transfer`, ERC-1155 `TransferSingle` and `TransferBatch` (one event per item).
 *
 * A log is classified by its shape alone (first topic, topic count, data length): the emitting
 * contract is not asked whether it is a token, so a well-formed `Transfer` from any contract is
 * an event whose `token` names that contract. A log with a token signature and any other shape
 * gives no event and is reported to `onSkip` with a {@link SkipReason}; nothing here throws.
 */
export function decodeTransfers(txHash: Hex, logs: unknown, onSkip?: OnSkippedLog): TokenTransferEvent[] {
  if (!Array.isArray(logs)) return [];
  const events: TokenTransferEvent[] = [];
  for (let i = 0; i < logs.length; i++) {
    try {
      const decoded = decodeLog(txHash, logs[i]);
      for (const event of decoded) events.push(event);
    } catch (error) {
      // Only a Skip can come out of decodeLog; anything else is treated as a malformed log too,
      // so that no log content can stop ingest.
      onSkip?.(i, error instanceof Skip ? error.reason : 'malformed');
    }
  }
  return events;
}
