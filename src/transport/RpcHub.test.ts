import { describe, expect, it } from 'vitest';
import type { ChainBlock, ChainLog, Hex, TxEvent } from '../domain/types.ts';
import {
  type LogFilter,
  logMatches,
  type RpcFrameBytes,
  RpcHub,
  type RpcPeer,
  type RpcSubscription,
} from './RpcHub.ts';

const CHAIN = 31_337;
const KEEP_BLOCKS = 64;
const TOKEN = '0x00000000000000000000000000000000000000aa' as Hex;
const OTHER = '0x00000000000000000000000000000000000000bb' as Hex;
const THIRD = '0x00000000000000000000000000000000000000cc' as Hex;
/** An address no log of these tests comes from. */
const NOBODY = '0x00000000000000000000000000000000000000ff' as Hex;
const TRANSFER = topic(0xd1);
const APPROVAL = topic(0xd2);
const ALICE = topic(0xa1);
const BOB = topic(0xb0);

function topic(n: number): Hex {
  return `0x${n.toString(16).padStart(64, '0')}`;
}

function blockHash(number: number, fork = 0): Hex {
  return `0x${(fork * 0x1_0000 + number).toString(16).padStart(64, '0')}`;
}

/** A log as ingest builds it: `raw` is the node's log object without `removed`. */
function log(number: number, logIndex: number, address: Hex, topics: Hex[], fork = 0): ChainLog {
  return {
    address,
    topics,
    raw: {
      address,
      topics,
      data: '0x01',
      blockNumber: `0x${number.toString(16)}`,
      blockHash: blockHash(number, fork),
      transactionHash: topic(0x7000 + number * 16 + logIndex),
      transactionIndex: '0x0',
      logIndex: `0x${logIndex.toString(16)}`,
    },
  };
}

function block(number: number, logs: ChainLog[] = [], fork = 0): ChainBlock {
  const hash = blockHash(number, fork);
  const parentHash = blockHash(number - 1);
  return {
    chainId: CHAIN,
    number,
    hash,
    parentHash,
    timestamp: 1_700_000_000 + number,
    miner: '0x00000000000000000000000000000000000000c0',
    gasUsed: '0x0',
    gasLimit: '0x1c9c380',
    transactions: [],
    header: {
      number: `0x${number.toString(16)}`,
      hash,
      parentHash,
      timestamp: `0x${(1_700_000_000 + number).toString(16)}`,
      miner: '0x00000000000000000000000000000000000000c0',
      extraData: '0xd883010d',
      mixHash: topic(0xeeee),
      transactions: [],
    },
    logs,
  };
}

/** A peer that records every `deliver` call, and the notifications in them. */
class Peer implements RpcPeer {
  readonly calls: string[][] = [];
  readonly deliver = (frames: readonly RpcFrameBytes[]): void => {
    // Frames shared between connections come as UTF-8 bytes.
    this.calls.push(frames.map((f) => (typeof f === 'string' ? f : Buffer.from(f).toString('utf8'))));
  };

  /** Every notification delivered, parsed. */
  notifications(): Array<{ subscription: string; result: unknown }> {
    return this.calls.flat().map((text) => {
      const message = JSON.parse(text) as {
        jsonrpc: string;
        method: string;
        params: { subscription: string; result: unknown };
      };
      expect(message.jsonrpc).toBe('2.0');
      expect(message.method).toBe('eth_subscription');
      return message.params;
    });
  }

  /** The results sent to one subscription. */
  results(id: string): unknown[] {
    return this.notifications()
      .filter((n) => n.subscription === id)
      .map((n) => n.result);
  }
}

function filter(addresses: Hex[] = [], topics: Array<Hex[] | null> = []): LogFilter {
  return { addresses: new Set(addresses), topics: topics.map((t) => (t === null ? null : new Set(t))) };
}

let nextId = 0;
function subId(): string {
  return `0x${(++nextId).toString(16).padStart(32, '0')}`;
}

function heads(hub: RpcHub, peer: RpcPeer): RpcSubscription {
  const sub: RpcSubscription = { id: subId(), peer, kind: 'newHeads' };
  hub.add(sub);
  return sub;
}

function logs(hub: RpcHub, peer: RpcPeer, f: LogFilter = filter()): RpcSubscription {
  const sub: RpcSubscription = { id: subId(), peer, kind: 'logs', filter: f, since: hub.sequence };
  hub.add(sub);
  return sub;
}

function pending(hub: RpcHub, peer: RpcPeer, full: boolean): RpcSubscription {
  const sub: RpcSubscription = { id: subId(), peer, kind: 'newPendingTransactions', full };
  hub.add(sub);
  return sub;
}

function withRemoved(l: ChainLog, removed: boolean): Record<string, unknown> {
  return { ...l.raw, removed };
}

describe('RpcHub newHeads', () => {
  it('sends every block to every newHeads subscription, in order, none skipped when they come back to back', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const a = new Peer();
    const b = new Peer();
    const subA = heads(hub, a);
    const subB = heads(hub, b);
    const blocks = [1, 2, 3, 4, 5, 6].map((n) => block(n));
    for (const b of blocks) hub.onBlock(b);
    expect(a.results(subA.id)).toEqual(blocks.map((b) => b.header));
    expect(b.results(subB.id)).toEqual(blocks.map((b) => b.header));
    expect(a.calls).toHaveLength(6);
  });

  it('passes the header as it is, with the fields the gateway does not read', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    const sub = heads(hub, peer);
    const b = block(9);
    hub.onBlock(b);
    expect(peer.results(sub.id)).toEqual([b.header]);
    expect(peer.results(sub.id)[0]).toMatchObject({ extraData: '0xd883010d', mixHash: topic(0xeeee) });
  });

  it('sends nothing to a subscription added after the block, nor after it is removed', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    hub.onBlock(block(1));
    const sub = heads(hub, peer);
    hub.onBlock(block(2));
    hub.remove(sub);
    hub.onBlock(block(3));
    expect(peer.results(sub.id)).toEqual([block(2).header]);
  });

  it('writes a header from the fields it holds when the block has no node object', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    const sub = heads(hub, peer);
    const { header: _header, ...bare } = block(0x10);
    hub.onBlock(bare);
    expect(peer.results(sub.id)).toEqual([
      {
        number: '0x10',
        hash: bare.hash,
        parentHash: bare.parentHash,
        timestamp: `0x${bare.timestamp.toString(16)}`,
        miner: bare.miner,
        gasUsed: '0x0',
        gasLimit: '0x1c9c380',
        transactions: [],
      },
    ]);
  });

  it('counts applied blocks and remembers their sequence numbers', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    expect(hub.sequence).toBe(0);
    hub.onBlock(block(1));
    hub.onBlock(block(2));
    expect(hub.sequence).toBe(2);
    expect(hub.sequenceOf(blockHash(1))).toBe(1);
    expect(hub.sequenceOf(blockHash(2))).toBe(2);
    expect(hub.sequenceOf(blockHash(3))).toBeUndefined();
  });

  it('forgets the sequence numbers of blocks older than its window', () => {
    const hub = new RpcHub(CHAIN, 2);
    for (let n = 1; n <= 10; n++) hub.onBlock(block(n));
    expect(hub.sequenceOf(blockHash(1))).toBeUndefined();
    expect(hub.sequenceOf(blockHash(10))).toBe(10);
    expect(hub.sequenceOf(blockHash(9))).toBe(9);
  });
});

describe('logMatches', () => {
  const l = log(1, 0, TOKEN, [TRANSFER, ALICE, BOB]);

  it('matches any address when the filter names none', () => {
    expect(logMatches(l, filter())).toBe(true);
  });

  it('matches by one address or any of many', () => {
    expect(logMatches(l, filter([TOKEN]))).toBe(true);
    expect(logMatches(l, filter([OTHER]))).toBe(false);
    expect(logMatches(l, filter([OTHER, TOKEN]))).toBe(true);
    expect(logMatches(l, filter([OTHER, THIRD]))).toBe(false);
  });

  it('matches topics by position', () => {
    expect(logMatches(l, filter([], [[TRANSFER]]))).toBe(true);
    expect(logMatches(l, filter([], [[TRANSFER], [ALICE], [BOB]]))).toBe(true);
    expect(logMatches(l, filter([], [[ALICE]]))).toBe(false);
    expect(logMatches(l, filter([], [[TRANSFER], [BOB]]))).toBe(false);
  });

  it('matches any topic at a null position', () => {
    expect(logMatches(l, filter([], [null, [ALICE]]))).toBe(true);
    expect(logMatches(l, filter([], [null, null, [BOB]]))).toBe(true);
    expect(logMatches(l, filter([], [null, [BOB]]))).toBe(false);
  });

  it('matches any of the alternatives at a position', () => {
    expect(logMatches(l, filter([], [[APPROVAL, TRANSFER]]))).toBe(true);
    expect(logMatches(l, filter([], [[TRANSFER], [BOB, ALICE]]))).toBe(true);
    expect(logMatches(l, filter([], [[APPROVAL, ALICE]]))).toBe(false);
  });

  it('does not match a log with fewer topics than a position the filter names', () => {
    expect(logMatches(l, filter([], [null, null, null, [BOB]]))).toBe(false);
    expect(logMatches(l, filter([], [null, null, null, null]))).toBe(true);
    expect(logMatches(log(1, 0, TOKEN, []), filter([], [[TRANSFER]]))).toBe(false);
  });

  it('needs the address and the topics both', () => {
    expect(logMatches(l, filter([TOKEN], [[TRANSFER]]))).toBe(true);
    expect(logMatches(l, filter([OTHER], [[TRANSFER]]))).toBe(false);
    expect(logMatches(l, filter([TOKEN], [[APPROVAL]]))).toBe(false);
  });
});

describe('RpcHub logs', () => {
  const transfer = log(5, 0, TOKEN, [TRANSFER, ALICE, BOB]);
  const approval = log(5, 1, TOKEN, [APPROVAL, ALICE]);
  const other = log(5, 2, OTHER, [TRANSFER, BOB, ALICE]);
  const third = log(5, 3, THIRD, []);
  const five = block(5, [transfer, approval, other, third]);

  it('sends one notification per matching log, in log order, with removed false', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    const any = logs(hub, peer);
    const one = logs(hub, peer, filter([TOKEN]));
    const many = logs(hub, peer, filter([TOKEN, OTHER]));
    const none = logs(hub, peer, filter([NOBODY]));
    const transfers = logs(hub, peer, filter([], [[TRANSFER]]));
    const toBob = logs(hub, peer, filter([], [null, null, [BOB]]));
    hub.onBlock(five);
    expect(peer.results(any.id)).toEqual([transfer, approval, other, third].map((l) => withRemoved(l, false)));
    expect(peer.results(one.id)).toEqual([transfer, approval].map((l) => withRemoved(l, false)));
    expect(peer.results(many.id)).toEqual([transfer, approval, other].map((l) => withRemoved(l, false)));
    expect(peer.results(none.id)).toEqual([]);
    expect(peer.results(transfers.id)).toEqual([transfer, other].map((l) => withRemoved(l, false)));
    expect(peer.results(toBob.id)).toEqual([withRemoved(transfer, false)]);
  });

  it('writes the frames of one block to one peer in one deliver call, heads with logs', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    const bystander = new Peer();
    const head = heads(hub, peer);
    const any = logs(hub, peer);
    logs(hub, bystander, filter([OTHER]));
    hub.onBlock(five);
    expect(peer.calls).toHaveLength(1);
    expect(peer.calls[0]).toHaveLength(5);
    expect(peer.notifications()[0]).toEqual({ subscription: head.id, result: five.header });
    expect(peer.results(any.id)).toHaveLength(4);
    expect(bystander.calls).toEqual([[expect.any(String)]]);
  });

  it('calls deliver for no peer when nothing matches', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    logs(hub, peer, filter([NOBODY]));
    logs(hub, peer, filter([], [[topic(0x99)]]));
    hub.onBlock(five);
    hub.onBlock(block(6));
    expect(peer.calls).toEqual([]);
  });

  it('stops sending to a removed subscription, and keeps sending to another of the same address', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    const kept = logs(hub, peer, filter([TOKEN]));
    const removed = logs(hub, peer, filter([TOKEN, OTHER]));
    const any = logs(hub, peer);
    hub.remove(removed);
    hub.remove(any);
    hub.onBlock(five);
    expect(peer.results(removed.id)).toEqual([]);
    expect(peer.results(any.id)).toEqual([]);
    expect(peer.results(kept.id)).toHaveLength(2);
  });

  it('matches the logs of a block for a backfill as notification results', () => {
    expect(RpcHub.matching(five, filter([OTHER])).map((text) => JSON.parse(text))).toEqual([withRemoved(other, false)]);
    const { logs: _logs, ...bare } = five;
    expect(RpcHub.matching(bare, filter())).toEqual([]);
  });
});

describe('RpcHub.onRetract', () => {
  const t6 = log(6, 0, TOKEN, [TRANSFER, ALICE, BOB]);
  const o6 = log(6, 1, OTHER, [TRANSFER]);
  const six = block(6, [t6, o6]);

  it('sends the same logs again once, with removed true, to the subscriptions that were sent the block', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    const token = logs(hub, peer, filter([TOKEN]));
    const any = logs(hub, peer);
    const head = heads(hub, peer);
    hub.onBlock(block(5));
    hub.onBlock(six);
    peer.calls.length = 0;
    hub.onRetract(six);
    expect(peer.calls).toHaveLength(1);
    expect(peer.results(token.id)).toEqual([withRemoved(t6, true)]);
    expect(peer.results(any.id)).toEqual([withRemoved(t6, true), withRemoved(o6, true)]);
    expect(peer.results(head.id)).toEqual([]);
    // A second retraction of the same block sends nothing.
    hub.onRetract(six);
    expect(peer.calls).toHaveLength(1);
  });

  it('sends nothing to a subscription added after the block', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const before = new Peer();
    const after = new Peer();
    const early = logs(hub, before);
    hub.onBlock(six);
    const late = logs(hub, after);
    hub.onRetract(six);
    expect(before.results(early.id)).toEqual(
      [withRemoved(t6, false), withRemoved(o6, false)].concat([withRemoved(t6, true), withRemoved(o6, true)]),
    );
    expect(after.results(late.id)).toEqual([]);
    expect(after.calls).toEqual([]);
  });

  it('sends a retraction to a subscription whose since is before the block (a backfill)', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    hub.onBlock(six);
    const sequence = hub.sequenceOf(six.hash) as number;
    const sub: RpcSubscription = { id: subId(), peer, kind: 'logs', filter: filter([OTHER]), since: sequence - 1 };
    hub.add(sub);
    hub.onRetract(six);
    expect(peer.results(sub.id)).toEqual([withRemoved(o6, true)]);
  });

  it('retracts nothing for a block it never applied', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    logs(hub, peer);
    hub.onBlock(block(6, [t6], 1));
    hub.onRetract(six);
    expect(peer.calls).toHaveLength(1);
  });

  it('retracts a replaced block, then sends its successor to the same subscription', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    const any = logs(hub, peer);
    hub.onBlock(six);
    const t6b = log(6, 0, TOKEN, [APPROVAL], 1);
    hub.onRetract(six);
    hub.onBlock(block(6, [t6b], 1));
    expect(peer.results(any.id)).toEqual([
      withRemoved(t6, false),
      withRemoved(o6, false),
      withRemoved(t6, true),
      withRemoved(o6, true),
      withRemoved(t6b, false),
    ]);
  });
});

describe('RpcHub.onPending', () => {
  const tx = (n: number): TxEvent => ({
    kind: 'tx',
    id: topic(0x5000 + n),
    txHash: topic(0x5000 + n),
    txIndex: null,
    from: TOKEN,
    to: OTHER,
    value: '0x2a',
    nonce: n,
  });

  it('sends hashes, or the transactions to a subscription made with true', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    const hashes = pending(hub, peer, false);
    const full = pending(hub, peer, true);
    expect(hub.pendingSubscriptions).toBe(2);
    hub.onPending([tx(1), tx(2)]);
    expect(peer.results(hashes.id)).toEqual([topic(0x5001), topic(0x5002)]);
    expect(peer.results(full.id)).toEqual([
      {
        hash: topic(0x5001),
        from: TOKEN,
        to: OTHER,
        value: '0x2a',
        nonce: '0x1',
        blockHash: null,
        blockNumber: null,
        transactionIndex: null,
      },
      expect.objectContaining({ hash: topic(0x5002), nonce: '0x2' }),
    ]);
  });

  it('sends nothing for an empty batch, and nothing after remove', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    const sub = pending(hub, peer, false);
    hub.onPending([]);
    hub.remove(sub);
    expect(hub.pendingSubscriptions).toBe(0);
    hub.onPending([tx(1)]);
    expect(peer.calls).toEqual([]);
  });

  it('sends no mempool transaction to newHeads or logs subscriptions', () => {
    const hub = new RpcHub(CHAIN, KEEP_BLOCKS);
    const peer = new Peer();
    heads(hub, peer);
    logs(hub, peer);
    hub.onPending([tx(1)]);
    expect(peer.calls).toEqual([]);
  });
});
