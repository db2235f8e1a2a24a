import type { ChainBlock, Hex } from '../domain/types.ts';

/**
 * The recent past of one chain: the canonical blocks of a window (by number), and the blocks
 * that were retracted from it (by hash) for as long as they are within the window. Fan-out
 * reads it to deliver confirmed blocks, to retract what it delivered, and to replay.
 */
export class ChainHistory {
  readonly #windowBlocks: number;
  readonly #canonical = new Map<number, ChainBlock>();
  /** The canonical blocks by hash (the same blocks as {@link #canonical}). */
  readonly #canonicalByHash = new Map<Hex, ChainBlock>();
  readonly #orphans = new Map<Hex, ChainBlock>();
  #head: ChainBlock | undefined;

  /** @param windowBlocks canonical blocks kept below and at the head. */
  constructor(windowBlocks: number) {
    this.#windowBlocks = windowBlocks;
  }

  /** Canonical blocks kept at and below the head. */
  get windowBlocks(): number {
    return this.#windowBlocks;
  }

  /** The newest canonical block. */
  get head(): ChainBlock | undefined {
    return this.#head;
  }

  /** Oldest block number still held. */
  get oldestNumber(): number | undefined {
    return this.#head === undefined ? undefined : Math.max(0, this.#head.number - this.#windowBlocks + 1);
  }

  /** Appends a canonical block (its parent is the head, or the history is empty or was cut). */
  apply(block: ChainBlock): void {
    this.#drop(block.number);
    this.#canonical.set(block.number, block);
    this.#canonicalByHash.set(block.hash, block);
    this.#head = block;
    const dropBelow = block.number - this.#windowBlocks;
    this.#drop(dropBelow);
    if (this.#orphans.size > 0) {
      for (const [hash, orphan] of this.#orphans) if (orphan.number <= dropBelow) this.#orphans.delete(hash);
    }
  }

  /** Moves the canonical block `hash` (the head) to the orphans; returns it, if it was held. */
  retract(hash: Hex): ChainBlock | undefined {
    const head = this.#head;
    if (head === undefined || head.hash !== hash) {
      // Not the head: only possible after a cut of the window (a reorg deeper than it).
      const block = this.#canonicalByHash.get(hash);
      if (block === undefined) return undefined;
      this.#drop(block.number);
      this.#addOrphan(block);
      return block;
    }
    this.#drop(head.number);
    this.#addOrphan(head);
    this.#head = this.#canonical.get(head.number - 1);
    return head;
  }

  /** Forgets every block (the log it mirrors was reset). */
  clear(): void {
    this.#canonical.clear();
    this.#canonicalByHash.clear();
    this.#orphans.clear();
    this.#head = undefined;
  }

  /** The canonical block at `number`, if held. */
  at(number: number): ChainBlock | undefined {
    return this.#canonical.get(number);
  }

  /** A held block by hash, canonical or orphaned. */
  byHash(hash: Hex): { block: ChainBlock; canonical: boolean } | undefined {
    const orphan = this.#orphans.get(hash);
    if (orphan !== undefined) return { block: orphan, canonical: false };
    const block = this.#canonicalByHash.get(hash);
    return block === undefined ? undefined : { block, canonical: true };
  }

  /**
   * Keeps a retracted block. A node that keeps switching branches without moving on could make
   * new orphans without end: past twice the window, the oldest kept goes first.
   */
  #addOrphan(block: ChainBlock): void {
    this.#orphans.set(block.hash, block);
    if (this.#orphans.size <= 2 * this.#windowBlocks) return;
    const oldest = this.#orphans.keys().next().value;
    if (oldest !== undefined) this.#orphans.delete(oldest);
  }

  /** Takes the canonical block at `number` out (both indexes), if one is there. */
  #drop(number: number): void {
    const block = this.#canonical.get(number);
    if (block === undefined) return;
    this.#canonical.delete(number);
    this.#canonicalByHash.delete(block.hash);
  }
}
