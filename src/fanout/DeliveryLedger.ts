import type { BlockRef, Hex } from '../domain/types.ts';

/** The events one subscription was sent for a block: indexes into the block's activity, ascending. */
export type SentEvents = number | readonly number[];

/** The event indexes of {@link SentEvents} as a list. */
export function sentList(sent: SentEvents): readonly number[] {
  return typeof sent === 'number' ? [sent] : sent;
}

interface BlockEntry<S> {
  readonly number: number;
  readonly sent: Map<S, SentEvents>;
}

/**
 * What the subscriptions of one chain were sent, kept for `removed` while the blocks are within
 * the history window. Compact: per block, per activity subscription, the indexes of the events it
 * was sent (a number when one); per `blocks` subscription, the first block it holds; per resumed
 * subscription, the block it resumed at (everything up to it counts as held, matched when a
 * retraction comes). Everything of a subscription is released when it ends ({@link release}).
 */
export class DeliveryLedger<S> {
  readonly #windowBlocks: number;
  readonly #byBlock = new Map<Hex, BlockEntry<S>>();
  /** The hashes of the blocks a subscription has entries for, to release it without a scan. */
  readonly #blocksOf = new Map<S, Hex[]>();
  readonly #firstBlock = new Map<S, number>();
  readonly #heldThrough = new Map<S, number>();
  #trims = 0;

  /** @param windowBlocks how many recent blocks' deliveries are kept. @default 256 */
  constructor(windowBlocks = 256) {
    this.#windowBlocks = windowBlocks;
  }

  /** Records the events each subscription was sent for a block (the map is kept, not copied). */
  record(block: BlockRef, matches: Map<S, number[]>): void {
    const entry = this.#byBlock.get(block.hash);
    if (entry === undefined) {
      const sent = matches as Map<S, SentEvents>;
      // One event (the common case) is kept as its index, not a one-element array.
      for (const [sub, events] of matches) {
        if (events.length === 1) sent.set(sub, events[0] as number);
        this.#note(sub, block.hash);
      }
      this.#byBlock.set(block.hash, { number: block.number, sent });
    } else {
      for (const [sub, events] of matches) this.#set(entry, block.hash, sub, events);
    }
  }

  /** Records the events one subscription was sent for a block. */
  recordOne(block: BlockRef, sub: S, events: readonly number[]): void {
    let entry = this.#byBlock.get(block.hash);
    if (entry === undefined) {
      entry = { number: block.number, sent: new Map() };
      this.#byBlock.set(block.hash, entry);
    }
    this.#set(entry, block.hash, sub, events);
  }

  #set(entry: BlockEntry<S>, hash: Hex, sub: S, events: readonly number[]): void {
    if (!entry.sent.has(sub)) this.#note(sub, hash);
    entry.sent.set(sub, events.length === 1 ? (events[0] as number) : events);
  }

  #note(sub: S, hash: Hex): void {
    let hashes = this.#blocksOf.get(sub);
    if (hashes === undefined) {
      this.#blocksOf.set(sub, [hash]);
      return;
    }
    // A subscription matched in every block: forget the hashes of blocks no longer held.
    if (hashes.length >= 2 * this.#windowBlocks) {
      hashes = hashes.filter((h) => this.#byBlock.get(h)?.sent.has(sub) === true);
      this.#blocksOf.set(sub, hashes);
    }
    hashes.push(hash);
  }

  /** The subscriptions sent something for the block `hash`, with what; `undefined` when none. */
  sentAt(hash: Hex): ReadonlyMap<S, SentEvents> | undefined {
    return this.#byBlock.get(hash)?.sent;
  }

  /** Forgets what `sub` was sent for the block `hash` (it was retracted from it). */
  forget(hash: Hex, sub: S): void {
    const entry = this.#byBlock.get(hash);
    if (entry === undefined) return;
    entry.sent.delete(sub);
    if (entry.sent.size === 0) this.#byBlock.delete(hash);
  }

  /** Notes the first block a `blocks` subscription was sent, unless it has one. */
  noteFirstBlock(sub: S, number: number): void {
    if (!this.#firstBlock.has(sub)) this.#firstBlock.set(sub, number);
  }

  /** Sets the first block a `blocks` subscription holds (a resume: the oldest block of the window). */
  setFirstBlock(sub: S, number: number): void {
    this.#firstBlock.set(sub, number);
  }

  /** The first block a `blocks` subscription was sent: it holds every later one. */
  firstBlock(sub: S): number | undefined {
    return this.#firstBlock.get(sub);
  }

  /** A subscription resumed at block `number`: blocks up to it it may hold from before count as sent. */
  setHeldThrough(sub: S, number: number): void {
    this.#heldThrough.set(sub, number);
  }

  /** Resumed subscriptions and the block each resumed at. */
  held(): ReadonlyMap<S, number> {
    return this.#heldThrough;
  }

  /** Drops what is older than the window below `headNumber`. */
  trim(headNumber: number): void {
    const oldest = headNumber - this.#windowBlocks;
    for (const [hash, entry] of this.#byBlock) if (entry.number <= oldest) this.#byBlock.delete(hash);
    // Resume points age out of the window too; looked at every few blocks (there can be many).
    if (++this.#trims % 16 === 0) {
      for (const [sub, through] of this.#heldThrough) if (through <= oldest) this.#heldThrough.delete(sub);
    }
  }

  /** Forgets everything of a subscription that ended. */
  release(sub: S): void {
    const hashes = this.#blocksOf.get(sub);
    if (hashes !== undefined) {
      for (const hash of hashes) this.forget(hash, sub);
      this.#blocksOf.delete(sub);
    }
    this.#firstBlock.delete(sub);
    this.#heldThrough.delete(sub);
  }

  /** What is held, for tests and metrics: blocks with entries, and subscriptions with any state. */
  get size(): { blocks: number; subscriptions: number } {
    const subs = new Set<S>([...this.#blocksOf.keys(), ...this.#firstBlock.keys(), ...this.#heldThrough.keys()]);
    return { blocks: this.#byBlock.size, subscriptions: subs.size };
  }
}
