import type { ActivityMessage, BlockMessage, RemovedMessage } from './messages.ts';

/** How many blocks a {@link DedupeWindow} remembers by default (the gateway replays at most 256). */
export const DEDUPE_WINDOW_BLOCKS = 1024;

interface Held {
  readonly number: number;
  /** Event ids delivered for the block (`activity`); `undefined` on `blocks`. */
  readonly ids: Set<string> | undefined;
}

/**
 * What one subscription has delivered to the application, per block hash, so that the
 * at-least-once delivery around a resume reaches the application exactly once:
 * - a `block` whose hash is held is dropped;
 * - an `activity` message loses the events already held for its block (dropped when none is left);
 * - a `removed` forgets what it retracts (so a later re-delivery passes) and is passed on with the
 *   events that were held; a `removed` for a block never delivered is dropped.
 *
 * Remembers the newest `capacity` blocks; a `removed` for a block older than that is passed on.
 */
export class DedupeWindow {
  readonly #held = new Map<string, Held>();
  readonly #capacity: number;
  /** The highest block number forgotten for lack of room (-1: none). */
  #evictedThrough = -1;

  constructor(capacity = DEDUPE_WINDOW_BLOCKS) {
    this.#capacity = capacity;
  }

  /** Number of blocks held. */
  get size(): number {
    return this.#held.size;
  }

  /** The `block` to deliver, or `undefined` when its hash was delivered already. */
  block(message: BlockMessage): BlockMessage | undefined {
    if (this.#held.has(message.hash)) return undefined;
    this.#hold(message.hash, { number: message.number, ids: undefined });
    return message;
  }

  /** The `activity` message to deliver (without events already held), or `undefined` when nothing is new. */
  activity(message: ActivityMessage): ActivityMessage | undefined {
    const held = this.#held.get(message.block.hash);
    if (held?.ids === undefined) {
      this.#hold(message.block.hash, { number: message.block.number, ids: new Set(message.events.map((e) => e.id)) });
      return message;
    }
    const fresh = message.events.filter((e) => !held.ids?.has(e.id));
    if (fresh.length === 0) return undefined;
    for (const event of fresh) held.ids.add(event.id);
    return fresh.length === message.events.length ? message : { ...message, events: fresh };
  }

  /** The `removed` to deliver (limited to the events held), or `undefined` when nothing of it was delivered. */
  removed(message: RemovedMessage): RemovedMessage | undefined {
    const held = this.#held.get(message.block.hash);
    if (held === undefined) {
      // Older than what is remembered: it may have been delivered, so the application decides.
      return message.block.number <= this.#evictedThrough ? message : undefined;
    }
    this.#held.delete(message.block.hash);
    if (message.events === undefined || held.ids === undefined) return message;
    const ids = held.ids;
    const events = message.events.filter((e) => ids.has(e.id));
    return events.length === message.events.length ? message : { ...message, events };
  }

  #hold(hash: string, held: Held): void {
    this.#held.set(hash, held);
    // Blocks arrive in chain order, so insertion order is age order: the first key is the oldest.
    while (this.#held.size > this.#capacity) {
      const [oldest, entry] = this.#held.entries().next().value as [string, Held];
      this.#held.delete(oldest);
      this.#evictedThrough = Math.max(this.#evictedThrough, entry.number);
    }
  }
}
