import { GatewayError } from '../domain/errors.ts';
import type { Hex, TxEvent } from '../domain/types.ts';

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const HASH = /^0x[0-9a-fA-F]{64}$/;
const QUANTITY = /^0x[0-9a-fA-F]+$/;

function field(tx: Record<string, unknown>, key: string, pattern: RegExp): string {
  const value = tx[key];
  if (typeof value !== 'string' || !pattern.test(value)) {
    throw new GatewayError('RPC_FAILED', `node sent a bad pending transaction ${key}: ${String(value).slice(0, 80)}`);
  }
  return value;
}

function minimalQuantity(raw: string): Hex {
  return `0x${BigInt(raw).toString(16)}`;
}

/**
 * The `tx` event of a mempool transaction as `eth_getTransactionByHash` (or a full
 * `newPendingTransactions` notification) gives it: `txIndex` is `null` and there is no `status`
 * (no block yet). `undefined` when the node says it is already in a block: its `activity` comes
 * with that block. Throws a `RPC_FAILED` {@link GatewayError} on data that is not a transaction.
 */
export function toPendingTxEvent(raw: unknown): TxEvent | undefined {
  if (typeof raw !== 'object' || raw === null) {
    throw new GatewayError('RPC_FAILED', 'node sent a pending transaction that is not an object');
  }
  const tx = raw as Record<string, unknown>;
  if (tx['blockNumber'] !== null && tx['blockNumber'] !== undefined) return undefined;
  const hash = field(tx, 'hash', HASH).toLowerCase() as Hex;
  const to = tx['to'] === null || tx['to'] === undefined ? null : (field(tx, 'to', ADDRESS).toLowerCase() as Hex);
  const nonce = Number(minimalQuantity(field(tx, 'nonce', QUANTITY)));
  if (!Number.isSafeInteger(nonce))
    throw new GatewayError('RPC_FAILED', `pending transaction ${hash}: nonce too large`);
  return {
    kind: 'tx',
    id: hash,
    txHash: hash,
    txIndex: null,
    from: field(tx, 'from', ADDRESS).toLowerCase() as Hex,
    to,
    value: minimalQuantity(field(tx, 'value', QUANTITY)),
    nonce,
  };
}
