import type { ChainHistory } from '../chainlog/ChainHistory.ts';
import type { CursorPosition } from '../domain/cursor.ts';
import type { ChainBlock } from '../domain/types.ts';
import { deliveryDepth, type Subscription } from '../index/SubscriptionIndex.ts';
import type { DeliveryLedger } from './DeliveryLedger.ts';
import type { Frame } from './encode.ts';
import { type Fanout, frameBytes, type Peer } from './Fanout.ts';
import type { ReplayJob } from './ReplayQueue.ts';

/** What a resume needs of its chain's feed. */
export interface ResumeContext<O extends Peer> {
  readonly chainId: number;
  readonly history: ChainHistory;
  readonly fanout: Fanout<O>;
  readonly ledger: DeliveryLedger<Subscription<O>>;
  /** The number of the last block sent at a confirmation depth (or that would have been). */
  readonly through: (depth: number) => number | undefined;
}

/** A chain that keeps reorganising under a resume: after this many restarts it gives up (`recovered:false`). */
const MAX_RESTARTS = 3;

/**
 * One subscription's resume from a client's cursor (PROTOCOL.md, Resume), done in slices: walks
 * from the cursor back to the canonical chain (`removed` for each orphaned block the client may
 * have seen), then matches every canonical block since, up to what the subscription's depth has
 * been sent, building its frames. Nothing is written until the end; then, in one synchronous
 * step, the frames go out as one write, what was sent goes into the ledger, and `onDone(true)`
 * makes the subscription live, so no block can slip between the catch-up and live delivery.
 * When blocks it matched are reorganised away meanwhile, it starts again. It ends with
 * `onDone(false)`, sending nothing, when the cursor is of another chain, unknown or older than
 * the window, or the catch-up would pass `maxBytes`.
 */
export class ResumeJob<O extends Peer> implements ReplayJob {
  readonly #context: ResumeContext<O>;
  readonly #sub: Subscription<O>;
  readonly #cursor: CursorPosition;
  readonly #maxBytes: number;
  readonly #onDone: (recovered: boolean) => void;
  #done = false;
  #restarts = 0;
  /** The canonical block the client is back at (the cursor's block, or its canonical ancestor). */
  #at: ChainBlock | undefined;
  /** The last canonical block looked at: when it leaves the chain, the job starts again. */
  #last: ChainBlock | undefined;
  #next = 0;
  #frames: Frame[] = [];
  #bytes = 0;
  /** Activity blocks replayed, with the indexes of their events, for the ledger. */
  #sent: Array<[ChainBlock, number[]]> = [];

  constructor(
    context: ResumeContext<O>,
    sub: Subscription<O>,
    cursor: CursorPosition,
    maxBytes: number,
    onDone: (recovered: boolean) => void,
  ) {
    this.#context = context;
    this.#sub = sub;
    this.#cursor = cursor;
    this.#maxBytes = maxBytes;
    this.#onDone = onDone;
  }

  step(until: number): boolean {
    if (this.#done) return true;
    const { history, fanout } = this.#context;
    const last = this.#last;
    if (last === undefined || history.at(last.number)?.hash !== last.hash) {
      if (last !== undefined && ++this.#restarts > MAX_RESTARTS) return this.#finish(false);
      if (!this.#start()) return this.#finish(false);
    }
    const depth = deliveryDepth(this.#sub.filter);
    for (let work = 0; ; work++) {
      const through = this.#context.through(depth);
      if (through === undefined) return this.#finish(false);
      if (this.#next > through) return this.#finish(true);
      if (work > 0 && performance.now() >= until) return false;
      const block = history.at(this.#next);
      if (block === undefined) return this.#finish(false);
      const replay = fanout.replayFrame(this.#sub, block);
      if (replay !== undefined) {
        if (!this.#add(replay.frame)) return this.#finish(false);
        if (this.#sub.filter.channel === 'activity') this.#sent.push([block, replay.events]);
      }
      this.#last = block;
      this.#next++;
    }
  }

  cancel(): void {
    this.#done = true;
  }

  /** Finds where the client is back at and queues `removed` for what it saw that is orphaned. */
  #start(): boolean {
    const { history, fanout, chainId } = this.#context;
    this.#frames = [];
    this.#bytes = 0;
    this.#sent = [];
    if (this.#cursor.chainId !== chainId || history.head === undefined) return false;
    let at = history.byHash(this.#cursor.hash);
    if (at === undefined || at.block.number !== this.#cursor.number) return false;
    // Orphans link to their parents; the walk ends at a canonical block or fails (bounded by the window).
    for (let steps = 0; !at.canonical; steps++) {
      const frame = fanout.removedFrame(this.#sub, at.block);
      if (frame !== undefined && !this.#add(frame)) return false;
      const parent = history.byHash(at.block.parentHash);
      if (parent === undefined || steps > history.windowBlocks) return false;
      at = parent;
    }
    this.#at = at.block;
    this.#last = at.block;
    this.#next = at.block.number + 1;
    return true;
  }

  #add(frame: Frame): boolean {
    this.#frames.push(frame);
    this.#bytes += frameBytes(frame);
    return this.#bytes <= this.#maxBytes;
  }

  #finish(recovered: boolean): true {
    this.#done = true;
    const sub = this.#sub;
    if (recovered) {
      const { fanout, ledger, history } = this.#context;
      fanout.deliver(sub.owner, this.#frames);
      const at = this.#at as ChainBlock;
      // What the client may hold from before its resume point counts as sent: a later reorg retracts it too.
      if (sub.filter.channel === 'blocks') ledger.setFirstBlock(sub, history.oldestNumber ?? at.number);
      else {
        for (const [block, events] of this.#sent) ledger.recordOne(block, sub, events);
        ledger.setHeldThrough(sub, at.number);
      }
    }
    this.#frames = [];
    this.#sent = [];
    this.#onDone(recovered);
    return true;
  }
}
