import type { ChainTx, TxEvent } from './types.ts';

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
