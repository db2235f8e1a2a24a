import { describe, expect, it } from 'vitest';
import { GatewayError } from '../domain/errors.ts';
import { toPendingTxEvent } from './toPendingTxEvent.ts';

/** A pending EIP-1559 transaction as anvil's `eth_getTransactionByHash` gives it. */
const PENDING = {
  type: '0x2',
  chainId: '0x7a69',
  nonce: '0x0a',
  gas: '0x5208',
  maxFeePerGas: '0x77359400',
  maxPriorityFeePerGas: '0x3b9aca00',
  to: '0x70997970C51812dc3A010C7d01b50e0d17dc79C8',
  value: '0x0001',
  input: '0x',
  hash: '0xA23B52004FE574000765FBE20A311B2785A318C9DBE6B0BF6A4C1F8936F57FF3',
  blockHash: null,
  blockNumber: null,
  transactionIndex: null,
  from: '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266',
};

describe('toPendingTxEvent', () => {
  it('gives the tx event with lowercase hex, minimal quantities and no block position', () => {
    expect(toPendingTxEvent(PENDING)).toStrictEqual({
      kind: 'tx',
      id: PENDING.hash.toLowerCase(),
      txHash: PENDING.hash.toLowerCase(),
      txIndex: null,
      from: PENDING.from.toLowerCase(),
      to: PENDING.to.toLowerCase(),
      value: '0x1',
      nonce: 10,
    });
  });

  it('keeps a contract creation with to null', () => {
    expect(toPendingTxEvent({ ...PENDING, to: null })).toMatchObject({ to: null });
  });

  it('leaves a transaction that is already in a block to its block', () => {
    expect(toPendingTxEvent({ ...PENDING, blockNumber: '0x5', transactionIndex: '0x0' })).toBeUndefined();
  });

  it.each([
    ['not an object', 'nope'],
    ['null', null],
    ['a bad hash', { ...PENDING, hash: '0x12' }],
    ['a bad from', { ...PENDING, from: 'alice' }],
    ['a missing value', { ...PENDING, value: undefined }],
    ['a nonce past 2^53', { ...PENDING, nonce: '0xffffffffffffffffff' }],
  ])('throws RPC_FAILED on %s', (_, raw) => {
    expect(() => toPendingTxEvent(raw)).toThrow(GatewayError);
    try {
      toPendingTxEvent(raw);
    } catch (error) {
      expect((error as GatewayError).code).toBe('RPC_FAILED');
    }
  });
});
