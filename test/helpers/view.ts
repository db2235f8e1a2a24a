import { expect } from 'vitest';
import { rpc, type TestChain } from './chain.ts';
import type { Message, TestClient } from './client.ts';

interface NodeTx {
  hash: string;
  from: string;
  to: string | null;
}

/**
 * What a client holds after applying its messages in order (delivered minus removed), with
 * every breach of the protocol's promises noted: a block delivered over one still held, a
 * block delivered twice, a `removed` for something not held.
 */
export class ClientView {
  readonly blocks = new Map<number, string>();
  /** Block hash → ids of the events held for it. */
  readonly activity = new Map<string, { number: number; ids: string[] }>();
  readonly violations: string[] = [];
  readonly #seenBlocks = new Set<string>();
  readonly #seenEvents = new Set<string>();

  /** Applies one message of a `blocks` or `activity` subscription. */
  apply(m: Message): void {
    const block = (m['block'] ?? {}) as { number: number; hash: string };
    if (m.type === 'block') {
      const number = m['number'] as number;
      const hash = m['hash'] as string;
      if (this.blocks.has(number))
        this.violations.push(`block ${number} ${hash} delivered while ${this.blocks.get(number)} held`);
      if (this.#seenBlocks.has(hash)) this.violations.push(`block ${hash} delivered twice`);
      this.#seenBlocks.add(hash);
      this.blocks.set(number, hash);
    } else if (m.type === 'activity') {
      const ids = (m['events'] as Array<{ id: string }>).map((e) => e.id);
      if (this.activity.has(block.hash)) this.violations.push(`activity for ${block.hash} delivered twice`);
      for (const id of ids) {
        if (this.#seenEvents.has(`${block.hash}/${id}`))
          this.violations.push(`event ${id} of ${block.hash} delivered twice`);
        this.#seenEvents.add(`${block.hash}/${id}`);
      }
      this.activity.set(block.hash, { number: block.number, ids });
    } else if (m.type === 'removed') {
      if (m['events'] === undefined) {
        if (this.blocks.get(block.number) !== block.hash)
          this.violations.push(`removed ${block.number} ${block.hash} not held`);
        this.blocks.delete(block.number);
      } else {
        const held = this.activity.get(block.hash);
        const ids = (m['events'] as Array<{ id: string }>).map((e) => e.id);
        if (held === undefined) this.violations.push(`removed activity of ${block.hash} not held`);
        else expect(ids).toEqual(held.ids);
        this.activity.delete(block.hash);
      }
    }
  }

  /** Builds the view from every message of the given subscriptions, in arrival order. */
  static of(messages: readonly Message[], subs: readonly string[]): ClientView {
    const view = new ClientView();
    for (const m of messages) if (subs.includes(m['sub'] as string)) view.apply(m);
    return view;
  }
}

/** The node's canonical hash at each height from `from` to `to`. */
export async function canonicalHashes(url: string, from: number, to: number): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  for (let n = from; n <= to; n++) {
    const block = await rpc<{ hash: string }>(url, 'eth_getBlockByNumber', [`0x${n.toString(16)}`, false]);
    out.set(n, block.hash);
  }
  return out;
}

/** The node's canonical activity of `addresses` from `from` to `to`: block hash → tx hashes. */
export async function canonicalActivity(
  url: string,
  addresses: readonly string[],
  from: number,
  to: number,
): Promise<Map<string, { number: number; ids: string[] }>> {
  const out = new Map<string, { number: number; ids: string[] }>();
  for (let n = from; n <= to; n++) {
    const block = await rpc<{ hash: string; transactions: NodeTx[] }>(url, 'eth_getBlockByNumber', [
      `0x${n.toString(16)}`,
      true,
    ]);
    const ids = block.transactions
      .filter(
        (tx) =>
          addresses.includes(tx.from.toLowerCase()) || (tx.to !== null && addresses.includes(tx.to.toLowerCase())),
      )
      .map((tx) => tx.hash);
    if (ids.length > 0) out.set(block.hash, { number: n, ids });
  }
  return out;
}

/** Asserts that a view equals the node's canonical chain between two heights. */
export async function expectCanonical(
  view: ClientView,
  url: string,
  range: { from: number; to: number },
  addresses?: readonly string[],
): Promise<void> {
  expect(view.violations).toEqual([]);
  if (addresses === undefined) {
    const held = new Map([...view.blocks].filter(([n]) => n >= range.from && n <= range.to));
    expect(held).toEqual(await canonicalHashes(url, range.from, range.to));
  } else {
    const held = new Map([...view.activity].filter(([, a]) => a.number >= range.from && a.number <= range.to));
    expect(held).toEqual(await canonicalActivity(url, addresses, range.from, range.to));
  }
}

/** The block number a block, activity or removed message is about. */
export function blockNumberOf(m: Message): number | undefined {
  return (m['number'] as number | undefined) ?? (m['block'] as { number: number } | undefined)?.number;
}

/** What {@link resumeAcrossReorg} drives: the node, how to mine, and where the client is before and after. */
export interface ReorgAwayCase {
  readonly anvilUrl: string;
  readonly chain: TestChain;
  /** A client on the gateway it leaves. */
  readonly before: TestClient;
  /** A client on the gateway it comes back to (the same one, or another reading the same log). */
  readonly after: () => Promise<TestClient>;
  /** Mines a block (with a transfer from dev wallet 0 unless `false`) and waits until the gateways have it. */
  readonly mine: (transfer?: boolean) => Promise<number>;
}

/**
 * A client subscribed to blocks and to the activity of dev wallet 0 goes away; the last two
 * blocks are reorged out (one new block moves ETH elsewhere) and one more comes; it resumes both
 * subscriptions from its cursors: `removed` for the orphans newest first, the new branch, the
 * live block, `recovered: true`, and its whole history equals the node's chain.
 */
export async function resumeAcrossReorg(c: ReorgAwayCase): Promise<void> {
  const { chain, before: client } = c;
  const blocks = await client.subscribe({ channel: 'blocks' });
  const activity = await client.subscribe({ channel: 'activity', addresses: [chain.address(0)] });
  const from = (await c.mine()) + 1;
  await c.mine();
  const top = await c.mine();
  await client.next((m) => m['sub'] === activity && blockNumberOf(m) === top, 20_000);
  const blockCursor = client.of(blocks, 'block').at(-1)?.['cursor'];
  const activityCursor = client.of(activity, 'activity').at(-1)?.['cursor'];
  client.close();

  await rpc(c.anvilUrl, 'anvil_reorg', [2, [[{ from: chain.address(0), to: chain.address(2), value: '0x77' }, 1]]]);
  chain.resetNonces();
  const live = await c.mine(false);

  const back = await c.after();
  const resumedBlocks = await back.resume({ channel: 'blocks', from: blockCursor });
  expect(resumedBlocks.reply).toMatchObject({ recovered: true });
  expect(resumedBlocks.before.map((m) => `${m.type}:${blockNumberOf(m)}`)).toEqual([
    `removed:${top}`,
    `removed:${top - 1}`,
    `block:${top - 1}`,
    `block:${top}`,
    `block:${live}`,
  ]);
  const resumedActivity = await back.resume({
    channel: 'activity',
    addresses: [chain.address(0)],
    from: activityCursor,
  });
  expect(resumedActivity.reply).toMatchObject({ recovered: true });
  // The client's whole history, before then after, equals the node's chain.
  const blocksView = ClientView.of(
    [...client.of(blocks, 'block'), ...resumedBlocks.before],
    [blocks, resumedBlocks.reply['sub'] as string],
  );
  await expectCanonical(blocksView, c.anvilUrl, { from, to: live });
  const activityView = ClientView.of(
    [...client.messages.filter((m) => m['sub'] === activity), ...resumedActivity.before],
    [activity, resumedActivity.reply['sub'] as string],
  );
  await expectCanonical(activityView, c.anvilUrl, { from, to: live }, [chain.address(0)]);
  back.close();
}
