import type { ActivityEvent, ChainBlock, ChainTx, Hex, TxEvent } from './types.ts';

/** The `tx` activity event of a transaction (PROTOCOL.md `Event`); its `id` is the tx hash. */
export function toTxEvent(tx: ChainTx): TxEvent {
  const event: TxEvent = {
    kind: 'tx',
    id: tx.hash,
    txHash: tx.hash,
    txIndex: tx.index,
    from: tx.from,
    to: tx.to,
    value: tx.value,
    nonce: tx.nonce,
    ...(tx.status === undefined ? {} : { status: tx.status }),
    ...(tx.contractAddress === undefined ? {} : { contractAddress: tx.contractAddress }),
  };
  return event;
}

/** One activity event of a block and the addresses it is matched on. */
export interface ActivityEntry {
  readonly event: ActivityEvent;
  /** Lowercase addresses whose watchers get this event (tx: from, to, created contract). */
  readonly addresses: readonly Hex[];
}

/**
 * Every activity event of a block, in block order (each transaction, then the events decoded
 * from its logs in log order), with the addresses each one is matched on.
 */
export function blockActivity(block: ChainBlock): ActivityEntry[] {
  const entries: ActivityEntry[] = [];
  for (const tx of block.transactions) {
    const addresses: Hex[] = [tx.from];
    if (tx.to !== null && tx.to !== tx.from) addresses.push(tx.to);
    if (tx.contractAddress !== undefined) addresses.push(tx.contractAddress);
    entries.push({ event: toTxEvent(tx), addresses });
  }
  return entries;
}
