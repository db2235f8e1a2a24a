import { expect } from 'vitest';
import { type Encoding, type Message, TestClient } from './client.ts';

/**
 * A client that watches some addresses and, as a barrier, all blocks with their transactions:
 * once its `blocks` subscription has delivered block N, everything the gateway sent it for block N
 * and before is in (a whole block's messages go out together, before the next block's; a block
 * without transactions would come from its header, ahead of them).
 */
export class Watcher {
  constructor(
    readonly client: TestClient,
    readonly blocksSub: string,
    readonly activitySub: string,
  ) {}

  /** Connects and subscribes to blocks and to the activity of `addresses` (plus `options`). */
  static async start(
    url: string,
    encoding: Encoding,
    addresses: readonly string[],
    options: Record<string, unknown> = {},
  ): Promise<Watcher> {
    const client = await TestClient.connect(url, encoding);
    const blocksSub = await client.subscribe({ channel: 'blocks', full: true });
    const activitySub = await client.subscribe({ channel: 'activity', addresses, ...options });
    return new Watcher(client, blocksSub, activitySub);
  }

  /** Waits (bounded) until the `blocks` subscription delivered block `number`. */
  async through(number: number, timeoutMs = 15_000): Promise<void> {
    await this.client.next((m) => m['sub'] === this.blocksSub && m['number'] === number, timeoutMs);
  }

  /** The `activity` messages of a subscription for block `number`. */
  activityAt(number: number, sub = this.activitySub): Message[] {
    return this.client.of(sub, 'activity').filter((m) => (m['block'] as { number: number }).number === number);
  }

  /** The events of block `number`: asserts that they came in at most one message. */
  eventsAt(number: number, sub = this.activitySub): Array<Record<string, unknown>> {
    const messages = this.activityAt(number, sub);
    expect(messages.length, `activity messages for block ${number}`).toBeLessThanOrEqual(1);
    return (messages[0]?.['events'] ?? []) as Array<Record<string, unknown>>;
  }

  close(): void {
    this.client.close();
  }
}
