import { describe, expect, it } from 'vitest';
import { RpcFaultError } from '../domain/errors.ts';
import type { BlockLink, Hex } from '../domain/types.ts';
import { type ChainPlan, type NodeView, type PlanLimits, planChain } from './planChain.ts';

const LIMITS: PlanLimits = { windowBlocks: 8, backfillConcurrency: 4 };

/** The hash of block `number` on `fork` (readable in failures: `0xa_17`). */
const hashOf = (fork: string, number: number): Hex => `0x${fork}_${number}`;

/** Blocks `from..to` of `fork`, each the parent of the next; the first's parent is `parentHash`. */
function line(fork: string, from: number, to: number, parentHash: Hex = hashOf(fork, from - 1)): BlockLink[] {
  const blocks: BlockLink[] = [];
  for (let number = from; number <= to; number++) {
    blocks.push({
      number,
      hash: hashOf(fork, number),
      parentHash: number === from ? parentHash : hashOf(fork, number - 1),
    });
  }
  return blocks;
}

/** `base` up to block `at`, then `fork` from `at + 1` to `to`. */
function forkOf(base: readonly BlockLink[], at: number, fork: string, to: number): BlockLink[] {
  const kept = base.filter((link) => link.number <= at);
  const parent = kept.at(-1);
  if (parent === undefined) throw new Error(`forkOf: no block ${at} in the base chain`);
  return [...kept, ...line(fork, at + 1, to, parent.hash)];
}

const hashes = (links: readonly BlockLink[]): Hex[] => links.map((link) => link.hash);

/** What following a scripted node did: the plans in order, the retractions, the blocks applied, what is held at the end. */
interface Followed {
  readonly plans: ReadonlyArray<ChainPlan<BlockLink>['kind']>;
  readonly retracted: Hex[];
  readonly applied: Hex[];
  readonly pastWindow: boolean[];
  readonly held: BlockLink[];
  readonly fetchedBy: { readonly number: number; readonly hash: boolean }[];
}

/**
 * Carries out plans as the watcher does, against a node whose canonical chain is `nodeChain`
 * (oldest first; every block of `known` can be fetched by hash), until `idle` or `behind`.
 */
function follow(
  start: readonly BlockLink[],
  nodeChain: readonly BlockLink[],
  options: { followBelow?: boolean; known?: readonly BlockLink[] } = {},
): Followed {
  const byHash = new Map([...(options.known ?? []), ...nodeChain].map((link) => [link.hash, link]));
  const byNumber = new Map(nodeChain.map((link) => [link.number, link]));
  const node: NodeView = { head: nodeChain.at(-1) as BlockLink, followBelow: options.followBelow ?? false };
  const result: Followed = { plans: [], retracted: [], applied: [], pastWindow: [], held: [...start], fetchedBy: [] };
  const plans = result.plans as Array<ChainPlan<BlockLink>['kind']>;
  let fetched: BlockLink[] = [];
  for (let step = 0; step < 100; step++) {
    const plan = planChain(result.held, node, fetched, LIMITS);
    plans.push(plan.kind);
    if (plan.kind === 'idle' || plan.kind === 'behind') return result;
    if (plan.kind === 'fetch') {
      const blocks = plan.blocks.map((request) => {
        result.fetchedBy.push({ number: request.number, hash: request.hash !== undefined });
        const block = request.hash === undefined ? byNumber.get(request.number) : byHash.get(request.hash);
        if (block === undefined || block.number !== request.number) throw new Error(`no block ${request.number}`);
        return block;
      });
      fetched = [...blocks, ...fetched];
      continue;
    }
    for (const link of plan.retract) {
      expect(link, 'a retraction names our head').toEqual(result.held.at(-1));
      result.held.pop();
      result.retracted.push(link.hash);
    }
    if (plan.kind === 'apply') {
      result.pastWindow.push(plan.pastWindow);
      for (const block of plan.branch) {
        const tip = result.held.at(-1);
        if (tip !== undefined && !plan.pastWindow)
          expect(block.parentHash, 'a block continues our head').toBe(tip.hash);
        result.held.push(block);
        if (result.held.length > LIMITS.windowBlocks) result.held.shift();
        result.applied.push(block.hash);
      }
    }
    fetched = [];
  }
  throw new Error('follow: no decision within 100 plans');
}

describe('planChain', () => {
  const held = line('a', 10, 17);

  it('fetches a head one above ours by hash and applies it', () => {
    const nodeChain = line('a', 10, 18);
    expect(planChain(held, { head: nodeChain.at(-1) as BlockLink }, [], LIMITS)).toEqual({
      kind: 'fetch',
      blocks: [{ number: 18, hash: hashOf('a', 18) }],
    });
    const followed = follow(held, nodeChain);
    expect(followed.plans).toEqual(['fetch', 'apply', 'idle']);
    expect(followed.applied).toEqual([hashOf('a', 18)]);
    expect(followed.retracted).toEqual([]);
  });

  it('is idle when the node’s head is ours', () => {
    expect(planChain(held, { head: held.at(-1) as BlockLink }, [], LIMITS)).toEqual({ kind: 'idle' });
  });

  it('backfills a gap of 5 by number, backfillConcurrency at a time, the head by hash', () => {
    const nodeChain = line('a', 10, 22);
    const followed = follow(held, nodeChain);
    expect(followed.fetchedBy).toEqual([
      { number: 18, hash: false },
      { number: 19, hash: false },
      { number: 20, hash: false },
      { number: 21, hash: false },
      { number: 22, hash: true },
    ]);
    expect(followed.plans).toEqual(['fetch', 'apply', 'fetch', 'apply', 'idle']);
    expect(followed.applied).toEqual(hashes(line('a', 18, 22)));
    expect(followed.held).toEqual(line('a', 15, 22));
  });

  it('applies only the linked start of a batch whose blocks changed while it was fetched', () => {
    const batch = [...line('a', 18, 19), ...line('b', 20, 21, hashOf('b', 19))];
    const plan = planChain(
      held,
      { head: { number: 21, hash: hashOf('b', 21), parentHash: hashOf('b', 20) } },
      batch,
      LIMITS,
    );
    expect(plan).toEqual({ kind: 'apply', retract: [], branch: line('a', 18, 19), pastWindow: false });
  });

  it('retracts one block for a 1-block reorg at the same height', () => {
    const nodeChain = forkOf(held, 16, 'b', 17);
    const followed = follow(held, nodeChain);
    expect(followed.fetchedBy).toEqual([{ number: 17, hash: true }]);
    expect(followed.plans).toEqual(['fetch', 'apply', 'idle']);
    expect(followed.retracted).toEqual([hashOf('a', 17)]);
    expect(followed.applied).toEqual([hashOf('b', 17)]);
    expect(followed.pastWindow).toEqual([false]);
  });

  it('walks back a 3-block reorg with a longer new branch, then retracts newest first and applies the branch', () => {
    const nodeChain = forkOf(held, 14, 'b', 19);
    const followed = follow(held, nodeChain);
    // The batch up to the head by number, then each parent by hash down to the common ancestor.
    expect(followed.fetchedBy).toEqual([
      { number: 18, hash: false },
      { number: 19, hash: true },
      { number: 17, hash: true },
      { number: 16, hash: true },
      { number: 15, hash: true },
    ]);
    expect(followed.retracted).toEqual([hashOf('a', 17), hashOf('a', 16), hashOf('a', 15)]);
    expect(followed.applied).toEqual(hashes(line('b', 15, 19)));
    expect(followed.pastWindow).toEqual([false]);
    expect(followed.held).toEqual(nodeChain.slice(-LIMITS.windowBlocks));
    expect(followed.plans.at(-1)).toEqual('idle');
  });

  it('retracts everything held for a reorg deeper than the window, and marks it pastWindow', () => {
    const nodeChain = forkOf(line('a', 0, 17), 5, 'b', 18);
    const followed = follow(held, nodeChain);
    expect(followed.retracted).toEqual(hashes([...held].reverse()));
    expect(followed.pastWindow).toEqual([true]);
    // The walk stops below the oldest block held: the branch starts there.
    expect(followed.applied).toEqual(hashes(line('b', 10, 18)));
    expect(followed.fetchedBy.length).toBeLessThanOrEqual(LIMITS.windowBlocks + LIMITS.backfillConcurrency);
  });

  it('stops a walk back at the window even when more blocks are held', () => {
    const long = line('a', 0, 17);
    const nodeChain = line('b', 0, 17, hashOf('x', -1));
    const branch = nodeChain.slice(-(LIMITS.windowBlocks + 1));
    const plan = planChain(long, { head: nodeChain.at(-1) as BlockLink }, branch, LIMITS);
    expect(plan).toEqual({ kind: 'apply', retract: [...long].reverse(), branch, pastWindow: true });
  });

  it('follows a node reset (no common ancestor among fewer blocks than the window) past the window', () => {
    const few = line('a', 10, 13);
    const nodeChain = line('c', 0, 15);
    const followed = follow(few, nodeChain);
    expect(followed.retracted).toEqual(hashes([...few].reverse()));
    expect(followed.pastWindow).toEqual([true]);
    expect(followed.applied).toEqual(hashes(line('c', 10, 15)));
    expect(followed.held).toEqual(line('c', 10, 15));
  });

  it('waits for a head below ours until followBelow, then reverts to the block it holds', () => {
    const nodeChain = line('a', 10, 14);
    expect(follow(held, nodeChain).plans).toEqual(['behind']);
    expect(planChain(held, { head: nodeChain.at(-1) as BlockLink, followBelow: true }, [], LIMITS)).toEqual({
      kind: 'revert',
      to: nodeChain.at(-1),
      retract: [...line('a', 15, 17)].reverse(),
    });
    const followed = follow(held, nodeChain, { followBelow: true });
    expect(followed.plans).toEqual(['revert', 'idle']);
    expect(followed.retracted).toEqual([hashOf('a', 17), hashOf('a', 16), hashOf('a', 15)]);
    expect(followed.held).toEqual(line('a', 10, 14));
  });

  it('follows a shorter branch down once followBelow', () => {
    const nodeChain = forkOf(held, 12, 'b', 14);
    const followed = follow(held, nodeChain, { followBelow: true });
    expect(followed.retracted).toEqual(hashes([...line('a', 13, 17)].reverse()));
    expect(followed.applied).toEqual(hashes(line('b', 13, 14)));
    expect(followed.pastWindow).toEqual([false]);
  });

  it('never follows a node behind below the blocks held, even after the grace period', () => {
    const nodeChain = line('a', 0, 5);
    expect(planChain(held, { head: nodeChain.at(-1) as BlockLink }, [], LIMITS)).toEqual({ kind: 'behind' });
    expect(planChain(held, { head: nodeChain.at(-1) as BlockLink, followBelow: true }, [], LIMITS)).toEqual({
      kind: 'behind',
    });
  });

  it('starts a new log (nothing held) from the node’s head', () => {
    const nodeChain = line('a', 0, 20);
    const followed = follow([], nodeChain);
    expect(followed.fetchedBy).toEqual([{ number: 20, hash: true }]);
    expect(followed.plans).toEqual(['fetch', 'apply', 'idle']);
    expect(followed.applied).toEqual([hashOf('a', 20)]);
    expect(followed.retracted).toEqual([]);
  });

  it('refuses a block that names a held block of another height as its parent', () => {
    const liar: BlockLink = { number: 17, hash: hashOf('b', 17), parentHash: hashOf('a', 17) };
    expect(() => planChain(held, { head: liar }, [liar], LIMITS)).toThrow(RpcFaultError);
    expect(() => planChain(held, { head: liar }, [liar], LIMITS)).toThrow(
      `block 17 (${hashOf('b', 17)}) names block 17 (${hashOf('a', 17)}) as its parent`,
    );
  });
});
