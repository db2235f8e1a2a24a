import type { ChainBlock, ChainLog, Hex, TxEvent } from '../domain/types.ts';
import { notificationText, toQuantity } from './rpcProtocol.ts';

/** What an `eth_subscribe logs` filter asks for: addresses (empty: any) and topics by position. */
export interface LogFilter {
  readonly addresses: ReadonlySet<Hex>;
  /** Per position: `null` (any) or the alternatives; at most 4 positions. */
  readonly topics: ReadonlyArray<ReadonlySet<Hex> | null>;
}

/** Where a hub's notifications go: one connection. Frames of one block are written together. */
export interface RpcPeer {
  readonly deliver: (frames: readonly RpcFrameBytes[]) => void;
}

/** A notification as written: text, or its UTF-8 bytes shared by every connection that gets it. */
export type RpcFrameBytes = string | Uint8Array;

/** One subscription of `/rpc`. */
export type RpcSubscription =
  | { readonly id: string; readonly peer: RpcPeer; readonly kind: 'newHeads' }
  | {
      readonly id: string;
      readonly peer: RpcPeer;
      readonly kind: 'logs';
      readonly filter: LogFilter;
      /** Blocks applied after this sequence number were sent to it: only those are retracted. */
      since: number;
    }
  | { readonly id: string; readonly peer: RpcPeer; readonly kind: 'newPendingTransactions'; readonly full: boolean };

/** Whether a log passes a filter. */
export function logMatches(log: ChainLog, filter: LogFilter): boolean {
  if (filter.addresses.size > 0 && !filter.addresses.has(log.address)) return false;
  for (let i = 0; i < filter.topics.length; i++) {
    const wanted = filter.topics[i];
    if (wanted === null || wanted === undefined || wanted.size === 0) continue;
    const topic = log.topics[i];
    if (topic === undefined || !wanted.has(topic)) return false;
  }
  return true;
}

/** A log as `eth_subscribe logs` sends it. */
function logJson(log: ChainLog, removed: boolean): string {
  return JSON.stringify({ ...log.raw, removed });
}

/**
 * The `/rpc` subscriptions of one chain, and what each block, retraction and mempool batch sends
 * them. Every canonical block is sent to every `newHeads` subscription, in order, none skipped;
 * logs matched once per block and subscription; a retracted block's logs are sent again once with
 * `removed: true`, only to subscriptions that were sent the block.
 */
export class RpcHub {
  readonly chainId: number;
  readonly #heads = new Set<Extract<RpcSubscription, { kind: 'newHeads' }>>();
  readonly #logsByAddress = new Map<Hex, Set<Extract<RpcSubscription, { kind: 'logs' }>>>();
  readonly #logsAnyAddress = new Set<Extract<RpcSubscription, { kind: 'logs' }>>();
  readonly #pending = new Set<Extract<RpcSubscription, { kind: 'newPendingTransactions' }>>();
  /** Sequence numbers of applied blocks by hash (recent ones), for retractions. */
  readonly #sequenceOf = new Map<Hex, number>();
  readonly #keepBlocks: number;
  #sequence = 0;

  /** `keepBlocks`: how many applied blocks' sequence numbers are kept (the history window). */
  constructor(chainId: number, keepBlocks: number) {
    this.chainId = chainId;
    this.#keepBlocks = keepBlocks;
  }

  /** The sequence number of the newest applied block: a logs subscription made now gets what follows it. */
  get sequence(): number {
    return this.#sequence;
  }

  /** The sequence number a block was applied with, if it is recent. */
  sequenceOf(hash: Hex): number | undefined {
    return this.#sequenceOf.get(hash);
  }

  /** How many subscriptions want the mempool. */
  get pendingSubscriptions(): number {
    return this.#pending.size;
  }

  add(sub: RpcSubscription): void {
    if (sub.kind === 'newHeads') this.#heads.add(sub);
    else if (sub.kind === 'newPendingTransactions') this.#pending.add(sub);
    else if (sub.filter.addresses.size === 0) this.#logsAnyAddress.add(sub);
    else {
      for (const address of sub.filter.addresses) {
        let set = this.#logsByAddress.get(address);
        if (set === undefined) {
          set = new Set();
          this.#logsByAddress.set(address, set);
        }
        set.add(sub);
      }
    }
  }

  remove(sub: RpcSubscription): void {
    if (sub.kind === 'newHeads') this.#heads.delete(sub);
    else if (sub.kind === 'newPendingTransactions') this.#pending.delete(sub);
    else if (sub.filter.addresses.size === 0) this.#logsAnyAddress.delete(sub);
    else {
      for (const address of sub.filter.addresses) {
        const set = this.#logsByAddress.get(address);
        set?.delete(sub);
        if (set?.size === 0) this.#logsByAddress.delete(address);
      }
    }
  }

  /** The logs of a block that a filter matches, as notification results (for a backfill). */
  static matching(block: ChainBlock, filter: LogFilter): string[] {
    return (block.logs ?? []).filter((log) => logMatches(log, filter)).map((log) => logJson(log, false));
  }

  /** A new canonical block: its header to `newHeads`, its matching logs to `logs`. */
  onBlock(block: ChainBlock): void {
    this.#sequence++;
    this.#sequenceOf.set(block.hash, this.#sequence);
    if (this.#sequenceOf.size > this.#keepBlocks * 2) {
      // Map order is insertion order: the oldest go first.
      for (const hash of this.#sequenceOf.keys()) {
        if (this.#sequenceOf.size <= this.#keepBlocks) break;
        this.#sequenceOf.delete(hash);
      }
    }
    const out = new Map<RpcPeer, RpcFrameBytes[]>();
    const push = (peer: RpcPeer, frame: RpcFrameBytes): void => {
      const frames = out.get(peer);
      if (frames === undefined) out.set(peer, [frame]);
      else frames.push(frame);
    };
    if (this.#heads.size > 0) {
      const header = JSON.stringify(block.header ?? fallbackHeader(block));
      // Encoded once per subscription id: most connections' ids are the same (see RpcSession).
      const byId = new Map<string, Uint8Array>();
      for (const sub of this.#heads) {
        let frame = byId.get(sub.id);
        if (frame === undefined) {
          frame = Buffer.from(notificationText(sub.id, header));
          byId.set(sub.id, frame);
        }
        push(sub.peer, frame);
      }
    }
    this.#sendLogs(block, false, push, undefined);
    for (const [peer, frames] of out) peer.deliver(frames);
  }

  /** A block undone by a reorg: its matching logs again, with `removed: true`, to those that were sent them. */
  onRetract(block: ChainBlock): void {
    const sequence = this.#sequenceOf.get(block.hash);
    this.#sequenceOf.delete(block.hash);
    if (sequence === undefined) return;
    const out = new Map<RpcPeer, RpcFrameBytes[]>();
    this.#sendLogs(
      block,
      true,
      (peer, frame) => {
        const frames = out.get(peer);
        if (frames === undefined) out.set(peer, [frame]);
        else frames.push(frame);
      },
      sequence,
    );
    for (const [peer, frames] of out) peer.deliver(frames);
  }

  /** Mempool transactions: hashes (or the transactions, with `true`) to `newPendingTransactions`. */
  onPending(events: readonly TxEvent[]): void {
    if (this.#pending.size === 0 || events.length === 0) return;
    // Each form is encoded once, and only if some subscription wants it.
    let hashes: string[] | undefined;
    let full: string[] | undefined;
    const byId = new Map<string, Uint8Array[]>();
    for (const sub of this.#pending) {
      const key = `${sub.full ? 'full' : 'hash'}${sub.id}`;
      let frames = byId.get(key);
      if (frames === undefined) {
        if (sub.full) full ??= events.map((e) => JSON.stringify(pendingTransaction(e)));
        else hashes ??= events.map((e) => JSON.stringify(e.txHash));
        const results = (sub.full ? full : hashes) as string[];
        frames = results.map((result) => Buffer.from(notificationText(sub.id, result)));
        byId.set(key, frames);
      }
      sub.peer.deliver(frames);
    }
  }

  #sendLogs(
    block: ChainBlock,
    removed: boolean,
    push: (peer: RpcPeer, frame: RpcFrameBytes) => void,
    retractedSequence: number | undefined,
  ): void {
    const logs = block.logs ?? [];
    if (logs.length === 0 || (this.#logsByAddress.size === 0 && this.#logsAnyAddress.size === 0)) return;
    for (const log of logs) {
      let json: string | undefined;
      let byId: Map<string, Uint8Array> | undefined;
      const send = (sub: Extract<RpcSubscription, { kind: 'logs' }>): void => {
        // A retraction goes only to those that were sent the block.
        if (retractedSequence !== undefined && retractedSequence <= sub.since) return;
        if (!logMatches(log, sub.filter)) return;
        json ??= logJson(log, removed);
        byId ??= new Map();
        let frame = byId.get(sub.id);
        if (frame === undefined) {
          frame = Buffer.from(notificationText(sub.id, json));
          byId.set(sub.id, frame);
        }
        push(sub.peer, frame);
      };
      for (const sub of this.#logsAnyAddress) send(sub);
      const byAddress = this.#logsByAddress.get(log.address);
      if (byAddress !== undefined) for (const sub of byAddress) send(sub);
    }
  }
}

/** A header from the fields a block always has (for a block built without the node's object). */
function fallbackHeader(block: ChainBlock): Record<string, unknown> {
  return {
    number: toQuantity(block.number),
    hash: block.hash,
    parentHash: block.parentHash,
    timestamp: toQuantity(block.timestamp),
    miner: block.miner,
    gasUsed: block.gasUsed,
    gasLimit: block.gasLimit,
    ...(block.baseFeePerGas === undefined ? {} : { baseFeePerGas: block.baseFeePerGas }),
    transactions: block.transactions.map((tx) => tx.hash),
  };
}

/** A mempool transaction as `newPendingTransactions` with `true` sends it: the fields the gateway holds. */
function pendingTransaction(event: TxEvent): Record<string, unknown> {
  return {
    hash: event.txHash,
    from: event.from,
    to: event.to,
    value: event.value,
    nonce: toQuantity(event.nonce),
    blockHash: null,
    blockNumber: null,
    transactionIndex: null,
  };
}
