import type { BlockMessage, BlockTransaction, ServerMessage } from '../../packages/client/src/protocol.ts';
import { toCursor } from '../domain/cursor.ts';
import type { ChainBlock, ChainTx, Finality, Hex, TxEvent } from '../domain/types.ts';
import { deliveryDepth, type Subscription, type SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import { type DeliveryLedger, sentList } from './DeliveryLedger.ts';
import { buildFrame, EncodedFields, type Encoding, encodePrefix, type Frame, type FramePrefix } from './encode.ts';
import { encodedValues, matchActivity, matchSubscription } from './matchActivity.ts';
import { matchPending, pendingWatchers } from './matchPending.ts';
import type { TxFate } from './TxLifecycle.ts';

/** What fan-out needs to know of a subscriber's connection. */
export interface Peer {
  readonly encoding: Encoding;
}

/** Writes one block's frames to one connection, in order, in one go (the transport corks them). */
export type Deliver<O> = (owner: O, frames: readonly Frame[]) => void;

/** The server's message types (PROTOCOL.md). */
type MessageType = ServerMessage['type'];

/** What one block's fan-out produced, for metrics. */
export interface FanoutResult {
  readonly blockMessages: number;
  readonly activityMessages: number;
  readonly blockBytes: number;
  readonly activityBytes: number;
  /** `finality` messages sent with it, and their bytes. */
  readonly finalityMessages: number;
  readonly finalityBytes: number;
  readonly connections: number;
}

/** One block to deliver at one delivery depth (see `deliveryDepth`). */
export interface BlockPass {
  readonly block: ChainBlock;
  readonly depth: number;
}

/** A move of a chain's finalized block to tell (see {@link Fanout.publishFinality}). */
export interface FinalityMove<O> {
  readonly chainId: number;
  readonly finality: Finality;
  readonly sentActivity: Iterable<Subscription<O>>;
}

type Counts = { -readonly [K in keyof FanoutResult]: number };

function noCounts(): Counts {
  return {
    blockMessages: 0,
    activityMessages: 0,
    blockBytes: 0,
    activityBytes: 0,
    finalityMessages: 0,
    finalityBytes: 0,
    connections: 0,
  };
}

/** What one batch of pending transactions' fan-out produced, for metrics. */
export interface PendingFanoutResult {
  readonly messages: number;
  readonly bytes: number;
  readonly connections: number;
}

const INPUT_SELECTOR_CHARS = 10;

function toTx(tx: ChainTx, fullInput: boolean): BlockTransaction {
  // Absent fields are left out, not set to undefined: MessagePack has no undefined (msgpackr
  // would write an extension type) and JSON drops it, so both encodings carry the same keys.
  // Optional fields are set, not spread: this runs for every transaction of every full block.
  const out: { -readonly [K in keyof BlockTransaction]: BlockTransaction[K] } = {
    txHash: tx.hash,
    txIndex: tx.index,
    from: tx.from,
    to: tx.to,
    value: tx.value,
    nonce: tx.nonce,
    gas: tx.gas,
    // A prefix of 0x hex is 0x hex.
    input: fullInput ? tx.input : (tx.input.slice(0, INPUT_SELECTOR_CHARS) as Hex),
  };
  if (tx.status !== undefined) out.status = tx.status;
  if (tx.contractAddress !== undefined) out.contractAddress = tx.contractAddress;
  if (tx.gasPrice !== undefined) out.gasPrice = tx.gasPrice;
  if (tx.maxFeePerGas !== undefined) out.maxFeePerGas = tx.maxFeePerGas;
  if (tx.maxPriorityFeePerGas !== undefined) out.maxPriorityFeePerGas = tx.maxPriorityFeePerGas;
  return out;
}

/** One pass's frames, gathered per connection and then written once per connection, in order. */
class FrameBatch<O> {
  readonly #perOwner = new Map<O, Frame[]>();

  /** Queues a frame for `owner`; returns its size in bytes. */
  add(owner: O, frame: Frame): number {
    const frames = this.#perOwner.get(owner);
    if (frames === undefined) this.#perOwner.set(owner, [frame]);
    else frames.push(frame);
    return frameBytes(frame);
  }

  /** Hands every connection its frames; returns how many connections were written. */
  flush(deliver: Deliver<O>): number {
    for (const [owner, frames] of this.#perOwner) deliver(owner, frames);
    return this.#perOwner.size;
  }
}

/** The fields of a `block` message without `type`, `sub` and transactions (PROTOCOL.md). */
export type BlockHeaderFields = Omit<BlockMessage, 'type' | 'sub' | 'transactions'>;

/** The fields of a `block` message without its transactions (PROTOCOL.md). */
export function toBlockHeader(block: ChainBlock): BlockHeaderFields {
  return {
    chainId: block.chainId,
    number: block.number,
    hash: block.hash,
    parentHash: block.parentHash,
    timestamp: block.timestamp,
    miner: block.miner,
    gasUsed: block.gasUsed,
    gasLimit: block.gasLimit,
    ...(block.baseFeePerGas === undefined ? {} : { baseFeePerGas: block.baseFeePerGas }),
    txCount: block.txCount ?? block.transactions.length,
    cursor: toCursor(block.chainId, block),
  };
}

/** The encoded parts of one block's messages, built on first use and shared by every pass. */
class BlockParts {
  readonly #block: ChainBlock;
  // Three shapes of a block message: header only, with transactions, with their whole input.
  readonly #shapes: Array<EncodedFields | undefined> = [undefined, undefined, undefined];
  #activity: EncodedFields | undefined;
  #removed: EncodedFields | undefined;

  constructor(block: ChainBlock) {
    this.#block = block;
  }

  blockFields(filter: { readonly full: boolean; readonly fullInput: boolean }): EncodedFields {
    const shape = filter.full ? (filter.fullInput ? 2 : 1) : 0;
    let fields = this.#shapes[shape];
    if (fields === undefined) {
      const block = this.#block;
      const header = toBlockHeader(block);
      fields = new EncodedFields(
        shape === 0 ? header : { ...header, transactions: block.transactions.map((tx) => toTx(tx, shape === 2)) },
      );
      this.#shapes[shape] = fields;
    }
    return fields;
  }

  get activityFields(): EncodedFields {
    const block = this.#block;
    this.#activity ??= new EncodedFields({
      chainId: block.chainId,
      block: { number: block.number, hash: block.hash, timestamp: block.timestamp },
      cursor: toCursor(block.chainId, block),
    });
    return this.#activity;
  }

  /** A `removed` message's fields; its cursor points at the parent, where the client is back at. */
  get removedFields(): EncodedFields {
    const block = this.#block;
    this.#removed ??= new EncodedFields({
      chainId: block.chainId,
      block: { number: block.number, hash: block.hash },
      cursor: toCursor(block.chainId, { number: block.number - 1, hash: block.parentHash }),
    });
    return this.#removed;
  }
}

const blockParts = new WeakMap<ChainBlock, BlockParts>();

function partsOf(block: ChainBlock): BlockParts {
  let parts = blockParts.get(block);
  if (parts === undefined) {
    parts = new BlockParts(block);
    blockParts.set(block, parts);
  }
  return parts;
}

/**
 * Fan-out of one block: matches it against the index, builds each subscription's one message
 * from parts encoded once per block, and hands every connection its frames together. What was
 * sent is kept in the chain's {@link DeliveryLedger}, for `removed`.
 */
export class Fanout<O extends Peer> {
  readonly #index: SubscriptionIndex<O>;
  readonly #deliver: Deliver<O>;
  /** Each subscription's encoded message heads (`type` and `sub`), by message type, built on first use. */
  readonly #prefixes = new WeakMap<Subscription<O>, Partial<Record<MessageType, FramePrefix>>>();

  constructor(index: SubscriptionIndex<O>, deliver: Deliver<O>) {
    this.#index = index;
    this.#deliver = deliver;
  }

  /** The head of `type` messages (by default the subscription's block or activity message) of `sub`. */
  #prefix(
    sub: Subscription<O>,
    type: MessageType = sub.filter.channel === 'blocks' ? 'block' : 'activity',
  ): FramePrefix {
    let prefixes = this.#prefixes.get(sub);
    if (prefixes === undefined) {
      prefixes = {};
      this.#prefixes.set(sub, prefixes);
    }
    let prefix = prefixes[type];
    if (prefix === undefined) {
      prefix = encodePrefix(type, sub.sid);
      prefixes[type] = prefix;
    }
    return prefix;
  }

  /**
   * Delivers one canonical block to every subscription of delivery depth `depths` (one, or each
   * of several) that it matches: at most one message each, every connection's frames in one
   * write. What was sent goes into `ledger`.
   */
  publishBlock(
    block: ChainBlock,
    depths: number | readonly number[],
    ledger: DeliveryLedger<Subscription<O>>,
  ): FanoutResult {
    const passes = typeof depths === 'number' ? [{ block, depth: depths }] : depths.map((depth) => ({ block, depth }));
    return this.publish(passes, ledger);
  }

  /**
   * Delivers blocks at their depths (in order), then tells a move of the finalized block, in one
   * pass: every connection gets all of its frames in one write. What was sent goes into `ledger`.
   */
  publish(passes: readonly BlockPass[], ledger: DeliveryLedger<Subscription<O>>, move?: FinalityMove<O>): FanoutResult {
    const batch = new FrameBatch<O>();
    const counts = noCounts();
    for (const { block, depth } of passes) this.#blockInto(batch, counts, block, depth, ledger);
    if (move !== undefined) this.#finalityInto(batch, counts, move);
    counts.connections = batch.flush(this.#deliver);
    return counts;
  }

  #blockInto(
    batch: FrameBatch<O>,
    counts: Counts,
    block: ChainBlock,
    confirmations: number,
    ledger: DeliveryLedger<Subscription<O>>,
  ): void {
    const parts = partsOf(block);

    // Subscriptions whose messages are the same bytes (same shape, encoding and id on their
    // connection: the common case) share the last frame built instead of a copy each.
    const lastFrames: Array<{ fields: EncodedFields; sid: string; frame: Frame } | undefined> = [undefined, undefined];
    for (const sub of this.#index.blockSubscribers(block.chainId)) {
      if (sub.filter.channel !== 'blocks' || deliveryDepth(sub.filter) !== confirmations) continue;
      ledger.noteFirstBlock(sub, block.number);
      const fields = parts.blockFields(sub.filter);
      const slot = sub.owner.encoding === 'json' ? 1 : 0;
      let last = lastFrames[slot];
      if (last === undefined || last.fields !== fields || last.sid !== sub.sid) {
        last = { fields, sid: sub.sid, frame: buildFrame(sub.owner.encoding, this.#prefix(sub), fields) };
        lastFrames[slot] = last;
      }
      counts.blockBytes += batch.add(sub.owner, last.frame);
      counts.blockMessages++;
    }

    const matches = matchActivity(this.#index, block, confirmations);
    if (matches.size > 0) {
      const shared = parts.activityFields;
      const values = encodedValues(block);
      // Most subscriptions match one event (popular addresses have many watchers): those with the
      // same event, id and encoding share the frame built for the first of them.
      const single = new Map<number, { sid: string; encoding: Encoding; frame: Frame }>();
      for (const [sub, indexes] of matches) {
        const only = indexes.length === 1 ? (indexes[0] as number) : undefined;
        const built = only === undefined ? undefined : single.get(only);
        let frame: Frame;
        if (built !== undefined && built.sid === sub.sid && built.encoding === sub.owner.encoding) {
          frame = built.frame;
        } else {
          frame = buildFrame(sub.owner.encoding, this.#prefix(sub), shared, values, indexes);
          if (only !== undefined) single.set(only, { sid: sub.sid, encoding: sub.owner.encoding, frame });
        }
        counts.activityBytes += batch.add(sub.owner, frame);
        counts.activityMessages++;
      }
      ledger.record(block, matches);
    }
  }

  /**
   * Retracts a block that left the canonical chain from the subscriptions of depth
   * `confirmations` that were sent something for it (or, resumed past it, may hold it from
   * before): a `removed` message each, naming the block (and, for activity, the events it had
   * carried). Its cursor points at the parent.
   */
  retractBlock(block: ChainBlock, confirmations: number, ledger: DeliveryLedger<Subscription<O>>): FanoutResult {
    const batch = new FrameBatch<O>();
    let blockMessages = 0;
    let activityMessages = 0;
    let blockBytes = 0;
    let activityBytes = 0;
    const shared = partsOf(block).removedFields;
    for (const sub of this.#index.blockSubscribers(block.chainId)) {
      if (deliveryDepth(sub.filter) !== confirmations) continue;
      const first = ledger.firstBlock(sub);
      if (first === undefined || first > block.number) continue;
      blockBytes += batch.add(sub.owner, buildFrame(sub.owner.encoding, this.#prefix(sub, 'removed'), shared));
      blockMessages++;
    }
    const sent = ledger.sentAt(block.hash);
    const retracted = new Set<Subscription<O>>();
    if (sent !== undefined) {
      // Deleting the entry being visited is safe while iterating a Map.
      for (const [sub, events] of sent) {
        if (deliveryDepth(sub.filter) !== confirmations || !this.#index.has(sub)) continue;
        ledger.forget(block.hash, sub);
        retracted.add(sub);
        const frame = buildFrame(
          sub.owner.encoding,
          this.#prefix(sub, 'removed'),
          shared,
          encodedValues(block),
          sentList(events),
        );
        activityBytes += batch.add(sub.owner, frame);
        activityMessages++;
      }
    }
    // Resumed subscriptions may hold this block from before their resume: what matches them now.
    for (const [sub, through] of ledger.held()) {
      if (through < block.number || retracted.has(sub) || deliveryDepth(sub.filter) !== confirmations) continue;
      if (!this.#index.has(sub)) continue;
      const events = matchSubscription(sub, block);
      if (events.length === 0) continue;
      const frame = buildFrame(sub.owner.encoding, this.#prefix(sub, 'removed'), shared, encodedValues(block), events);
      activityBytes += batch.add(sub.owner, frame);
      activityMessages++;
    }
    const connections = batch.flush(this.#deliver);
    return {
      blockMessages,
      activityMessages,
      blockBytes,
      activityBytes,
      finalityMessages: 0,
      finalityBytes: 0,
      connections,
    };
  }

  /** The `removed` frame of an orphaned block for a subscription; `undefined` when it had nothing in it. */
  removedFrame(sub: Subscription<O>, orphan: ChainBlock): Frame | undefined {
    const fields = partsOf(orphan).removedFields;
    if (sub.filter.channel === 'blocks') return buildFrame(sub.owner.encoding, this.#prefix(sub, 'removed'), fields);
    const events = matchSubscription(sub, orphan);
    if (events.length === 0) return undefined;
    return buildFrame(sub.owner.encoding, this.#prefix(sub, 'removed'), fields, encodedValues(orphan), events);
  }

  /**
   * The message a subscription would have had for a canonical block, with the indexes of its
   * events (activity); `undefined` when the block has nothing for it.
   */
  replayFrame(sub: Subscription<O>, block: ChainBlock): { frame: Frame; events: number[] } | undefined {
    const parts = partsOf(block);
    const filter = sub.filter;
    if (filter.channel === 'blocks') {
      return { frame: buildFrame(sub.owner.encoding, this.#prefix(sub), parts.blockFields(filter)), events: [] };
    }
    const events = matchSubscription(sub, block);
    if (events.length === 0) return undefined;
    const frame = buildFrame(sub.owner.encoding, this.#prefix(sub), parts.activityFields, encodedValues(block), events);
    return { frame, events };
  }

  /** Writes frames to one connection, in order, in one go. */
  deliver(owner: O, frames: readonly Frame[]): void {
    if (frames.length > 0) this.#deliver(owner, frames);
  }

  /**
   * Tells that the node's finalized block moved, to the subscriptions of a chain that do not
   * themselves wait for finality: every `blocks` subscription, and the `activity` subscriptions
   * in `sentActivity` (those that were sent activity for a block the move made final; the others
   * have nothing that became final). One `finality` message each, its fields encoded once.
   * Everything up to `finality.finalized` will never be retracted.
   */
  publishFinality(chainId: number, finality: Finality, sentActivity: Iterable<Subscription<O>>): PendingFanoutResult {
    const batch = new FrameBatch<O>();
    const counts = noCounts();
    this.#finalityInto(batch, counts, { chainId, finality, sentActivity });
    return { messages: counts.finalityMessages, bytes: counts.finalityBytes, connections: batch.flush(this.#deliver) };
  }

  #finalityInto(batch: FrameBatch<O>, counts: Counts, { chainId, finality, sentActivity }: FinalityMove<O>): void {
    const shared = finalityFields(chainId, finality);
    for (const subs of [this.#index.blockSubscribers(chainId), sentActivity]) {
      for (const sub of subs) {
        if (sub.filter.finality !== undefined || !this.#index.has(sub)) continue;
        const prefix = this.#prefix(sub, 'finality');
        counts.finalityBytes += batch.add(sub.owner, buildFrame(sub.owner.encoding, prefix, shared));
        counts.finalityMessages++;
      }
    }
  }

  /**
   * Tells what became of pending transactions (replaced, dropped) to the activity subscriptions
   * with `pending: true` that watch their sender or recipient: one message per transaction and
   * subscription, its fields encoded once.
   */
  publishFates(chainId: number, fates: readonly TxFate[]): PendingFanoutResult {
    const batch = new FrameBatch<O>();
    let messages = 0;
    let bytes = 0;
    for (const fate of fates) {
      const watchers = pendingWatchers(this.#index, chainId, fate.from, fate.to);
      if (watchers.size === 0) continue;
      const shared = new EncodedFields(
        fate.status === 'replaced'
          ? {
              chainId,
              id: fate.id,
              from: fate.from,
              nonce: fate.nonce,
              by: fate.by,
              reason: fate.reason,
              block: { number: fate.block.number, hash: fate.block.hash },
            }
          : { chainId, id: fate.id, from: fate.from, nonce: fate.nonce },
      );
      for (const sub of watchers) {
        const prefix = this.#prefix(sub, fate.status);
        bytes += batch.add(sub.owner, buildFrame(sub.owner.encoding, prefix, shared));
        messages++;
      }
    }
    return { messages, bytes, connections: batch.flush(this.#deliver) };
  }

  /**
   * Delivers a batch of mempool transactions of a chain to the activity subscriptions with
   * `pending: true` that watch their `from` or `to`: one `pending` message per subscription per
   * batch, each event encoded once. `watched` lists the events some subscription was sent.
   */
  publishPending(chainId: number, events: readonly TxEvent[]): PendingFanoutResult & { watched: readonly TxEvent[] } {
    const watched: TxEvent[] = [];
    const matches = matchPending(this.#index, chainId, events, watched);
    if (matches.size === 0) return { messages: 0, bytes: 0, connections: 0, watched };
    const shared = new EncodedFields({ chainId });
    const batch = new FrameBatch<O>();
    let bytes = 0;
    for (const [sub, matched] of matches) {
      const frame = buildFrame(sub.owner.encoding, this.#prefix(sub, 'pending'), shared, matched);
      bytes += batch.add(sub.owner, frame);
    }
    return { messages: matches.size, bytes, connections: batch.flush(this.#deliver), watched };
  }
}

/** The `finality` message's fields of a chain (PROTOCOL.md), without `type` and `sub`. */
export function finalityFields(chainId: number, finality: Finality): EncodedFields {
  return new EncodedFields({
    chainId,
    safe: { number: finality.safe.number, hash: finality.safe.hash },
    finalized: { number: finality.finalized.number, hash: finality.finalized.hash },
  });
}

/** The size of a frame in bytes. */
export function frameBytes(frame: Frame): number {
  return typeof frame === 'string' ? Buffer.byteLength(frame) : frame.byteLength;
}
