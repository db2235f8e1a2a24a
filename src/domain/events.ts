import type { ActivityEvent, ChainBlock, ChainTx, Hex, TokenTransferEvent, TxEvent } from './types.ts';

/** The `tx` activity event of a transaction (PROTOCOL.md `Event`); its `id` is the tx hash. */
export function toTxEvent(tx: ChainTx): TxEvent {
  // Optional fields are set, not spread: this runs for every transaction of every block.
  const event: { -readonly [K in keyof TxEvent]: TxEvent[K] } = {
    kind: 'tx',
    id: tx.hash,
    txHash: tx.hash,
    txIndex: tx.index,
    from: tx.from,
    to: tx.to,
    value: tx.value,
    nonce: tx.nonce,
  };
  if (tx.status !== undefined) event.status = tx.status;
  if (tx.contractAddress !== undefined) event.contractAddress = tx.contractAddress;
  // The fee paid, from the receipt ingest already fetched.
  if (tx.gasUsed !== undefined) event.gasUsed = tx.gasUsed;
  if (tx.effectiveGasPrice !== undefined) event.effectiveGasPrice = tx.effectiveGasPrice;
  if (tx.gasUsed !== undefined && tx.effectiveGasPrice !== undefined) {
    event.fee = `0x${(BigInt(tx.gasUsed) * BigInt(tx.effectiveGasPrice)).toString(16)}`;
  }
  if (tx.blobGasUsed !== undefined && tx.blobGasPrice !== undefined) {
    event.blobFee = `0x${(BigInt(tx.blobGasUsed) * BigInt(tx.blobGasPrice)).toString(16)}`;
  }
  return event;
}

/** One activity event of a block and the addresses it is matched on. */
export interface ActivityEntry {
  readonly event: ActivityEvent;
  /** Lowercase addresses whose watchers get this event (tx: from, to, created contract). */
  readonly addresses: readonly Hex[];
}

/** The addresses a transaction is matched on: `from`, `to`, and the contract it created. */
export function txAddresses(tx: Pick<ChainTx, 'from' | 'to' | 'contractAddress'>): Hex[] {
  const addresses: Hex[] = [tx.from];
  if (tx.to !== null && tx.to !== tx.from) addresses.push(tx.to);
  if (tx.contractAddress !== undefined) addresses.push(tx.contractAddress);
  return addresses;
}

/** The addresses a transfer is matched on: `from` and `to` (never an operator or the token). */
export function transferAddresses(transfer: Pick<TokenTransferEvent, 'from' | 'to'>): Hex[] {
  return transfer.from === transfer.to ? [transfer.from] : [transfer.from, transfer.to];
}

/**
 * Every activity event of a block, in block order (each transaction, then the token transfers
 * decoded from its logs in log order, then its internal transfers in call order), with the
 * addresses each one is matched on (`from` and `to` of a transfer).
 */
export function blockActivity(block: ChainBlock): ActivityEntry[] {
  const entries: ActivityEntry[] = [];
  for (const tx of block.transactions) {
    entries.push({ event: toTxEvent(tx), addresses: txAddresses(tx) });
    if (tx.transfers !== undefined) {
      for (const transfer of tx.transfers) entries.push({ event: transfer, addresses: transferAddresses(transfer) });
    }
    if (tx.internal !== undefined) {
      for (const transfer of tx.internal) entries.push({ event: transfer, addresses: transferAddresses(transfer) });
    }
  }
  return entries;
}
