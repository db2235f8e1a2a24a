import { RpcFaultError } from '../domain/errors.ts';
import type { BlockLink, Hex } from '../domain/types.ts';

/** A block to fetch: by number, or by hash when `hash` is given (its number is then checked too). */
export interface BlockRequest {
  readonly number: number;
  readonly hash?: Hex;
}

/** What the node says, for {@link planChain}. */
export interface NodeView {
  /** The node's head. */
  readonly head: BlockLink;
  /**
   * The node's head has stayed below ours for the grace period, so it is followed down (a revert,
   * or a shorter branch); while `false`, a head below ours is waited for. @default false
   */
  readonly followBelow?: boolean;
}

/** Bounds of {@link planChain}, from the watcher's options. */
export interface PlanLimits {
  /** Recent canonical blocks held to find a reorg's common ancestor; a walk back never goes deeper. */
  readonly windowBlocks: number;
  /** Blocks fetched at once while catching up after a gap. */
  readonly backfillConcurrency: number;
}

/**
 * The next step towards the node's head, decided by {@link planChain}:
 * - `idle`: the node's head is ours;
 * - `behind`: the node's head is below ours (within the grace period, or below the blocks held):
 *   wait, and ask again next round;
 * - `fetch`: fetch these blocks (ascending), put them before `fetched` and plan again: a run of
 *   numbers after our head (a backfill), or one parent by hash (a step of a walk back);
 * - `apply`: retract `retract` (newest first, each our head when it goes), then apply `branch`
 *   (oldest first). `pastWindow` when no block held is an ancestor of the branch, or the walk back
 *   went deeper than the window: everything held is retracted and the branch does not continue
 *   what is left;
 * - `revert`: the node went back to a block held, `to`: retract `retract` (what is above it,
 *   newest first).
 */
export type ChainPlan<B extends BlockLink> =
  | { readonly kind: 'idle' }
  | { readonly kind: 'behind' }
  | { readonly kind: 'fetch'; readonly blocks: readonly BlockRequest[] }
  | {
      readonly kind: 'apply';
      readonly retract: readonly BlockLink[];
      readonly branch: readonly B[];
      readonly pastWindow: boolean;
    }
  | { readonly kind: 'revert'; readonly to: BlockLink; readonly retract: readonly BlockLink[] };

/**
 * Decides the next step of following a chain, from what is held and what the node says: the
 * reorg walk back and the gap backfill of the watcher, without its I/O (no request, no clock).
 * `held` is the window of recent canonical blocks, oldest first, contiguous by number and parent
 * hash up to our head (empty for a new log: the node's head is then the first block). `fetched`
 * is what the previous `fetch` plans of this step brought, oldest first (empty at the start of
 * a step, and after every `apply` or `revert`). The caller carries out the plan and asks again
 * until `idle` or `behind`; each answer moves our head or lengthens `fetched` towards a decision.
 *
 * @throws RpcFaultError (`inconsistent`) when a fetched block names a held block as its parent
 * whose number is not one below its own: the node contradicts itself.
 */
export function planChain<B extends BlockLink>(
  held: readonly BlockLink[],
  node: NodeView,
  fetched: readonly B[],
  limits: PlanLimits,
): ChainPlan<B> {
  const target = node.head;
  const tip = held.at(-1);
  if (tip === undefined) {
    const first = fetched.find((block) => block.hash === target.hash);
    if (first === undefined) return { kind: 'fetch', blocks: [{ number: target.number, hash: target.hash }] };
    return { kind: 'apply', retract: [], branch: [first], pastWindow: false };
  }
  if (fetched.length === 0) return planFromHead(held, tip, node, limits);
  return planFromBranch(held, tip, linkedPrefix(fetched), limits);
}

/** Nothing fetched yet: compares the node's head with ours. */
function planFromHead<B extends BlockLink>(
  held: readonly BlockLink[],
  tip: BlockLink,
  node: NodeView,
  limits: PlanLimits,
): ChainPlan<B> {
  const target = node.head;
  if (target.hash === tip.hash) return { kind: 'idle' };
  if (target.number > tip.number) {
    const last = Math.min(target.number, tip.number + Math.max(1, limits.backfillConcurrency));
    const blocks: BlockRequest[] = [];
    for (let number = tip.number + 1; number <= last; number++) {
      blocks.push(number === target.number ? { number, hash: target.hash } : { number });
    }
    return { kind: 'fetch', blocks };
  }
  if (target.number < tip.number) {
    const ours = heldAt(held, target.number);
    // Never below the window: a node that far behind is left to the head watchdog.
    if (node.followBelow !== true || ours === undefined) return { kind: 'behind' };
    if (ours.hash === target.hash) return { kind: 'revert', to: ours, retract: above(held, target.number) };
  }
  // Another block at our height (or, followed down, below it): walk back from it.
  return { kind: 'fetch', blocks: [{ number: target.number, hash: target.hash }] };
}

/** A branch fetched (oldest first): applies it once its parent is held, or walks one step further back. */
function planFromBranch<B extends BlockLink>(
  held: readonly BlockLink[],
  tip: BlockLink,
  branch: readonly B[],
  limits: PlanLimits,
): ChainPlan<B> {
  const oldest = branch[0] as B;
  const parentNumber = oldest.number - 1;
  const ours = heldAt(held, parentNumber);
  if (ours?.hash === oldest.parentHash) {
    return { kind: 'apply', retract: above(held, parentNumber), branch, pastWindow: false };
  }
  const misplaced = held.find((link) => link.hash === oldest.parentHash);
  if (misplaced !== undefined) {
    throw new RpcFaultError(
      'inconsistent',
      `block ${oldest.number} (${oldest.hash}) names block ${misplaced.number} (${misplaced.hash}) as its parent`,
    );
  }
  // Above our tip the walk goes on (a branch fetched by number); below the blocks held, or
  // deeper than the window, no ancestor is left to find.
  const belowHeld = ours === undefined && parentNumber <= tip.number;
  if (belowHeld || tip.number - parentNumber > limits.windowBlocks) {
    return { kind: 'apply', retract: [...held].reverse(), branch, pastWindow: true };
  }
  return { kind: 'fetch', blocks: [{ number: parentNumber, hash: oldest.parentHash }] };
}

/** The longest start of `blocks` in which each block is the parent of the next. */
function linkedPrefix<B extends BlockLink>(blocks: readonly B[]): readonly B[] {
  let end = 1;
  while (end < blocks.length) {
    const previous = blocks[end - 1] as B;
    const block = blocks[end] as B;
    if (block.parentHash !== previous.hash || block.number !== previous.number + 1) break;
    end++;
  }
  return end === blocks.length ? blocks : blocks.slice(0, end);
}

/** The held block of that number, if any (`held` is contiguous by number). */
function heldAt(held: readonly BlockLink[], number: number): BlockLink | undefined {
  const first = held[0];
  return first === undefined ? undefined : held[number - first.number];
}

/** The held blocks above `number`, newest first. */
function above(held: readonly BlockLink[], number: number): BlockLink[] {
  return held.filter((link) => link.number > number).reverse();
}
