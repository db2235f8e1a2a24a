import { describe, expect, it } from 'vitest';
import { RpcFaultError } from '../domain/errors.ts';
import type { Hex } from '../domain/types.ts';
import { checkBlock, checkBlockReceipts, checkTxReceipt, toBlockNumber, toHeader } from './checkBlock.ts';
import type { RpcBlock } from './toChainBlock.ts';

const h = (n: number): Hex => `0x${n.toString(16).padStart(64, '0')}`;
const CHAIN = 1337;

function tx(i: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    hash: h(1000 + i),
    transactionIndex: `0x${i.toString(16)}`,
    blockHash: h(49),
    blockNumber: '0x31',
    chainId: '0x539',
    from: `0x${'11'.repeat(20)}`,
    to: `0x${'22'.repeat(20)}`,
    value: '0x1',
    nonce: '0x0',
    gas: '0x5208',
    input: '0x',
    ...extra,
  };
}

function block(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { number: '0x31', hash: h(49), parentHash: h(48), transactions: [tx(0), tx(1)], ...extra };
}

function receipt(i: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { transactionHash: h(1000 + i), blockHash: h(49), blockNumber: '0x31', status: '0x1', logs: [], ...extra };
}

/** The fault `run` throws; fails the test when it throws none. */
function faultOf(run: () => unknown): RpcFaultError {
  try {
    run();
  } catch (error) {
    if (error instanceof RpcFaultError) return error;
    throw error;
  }
  throw new Error('accepted');
}

const byNumber = { number: 49, chainId: CHAIN, call: 'eth_getBlockByNumber(0x31)' };

describe('toBlockNumber', () => {
  it.each([
    ['0x0', 0],
    ['0x31', 49],
    ['0x1fffffffffffff', 2 ** 53 - 1],
  ])('reads %s as %i', (raw, n) => {
    expect(toBlockNumber(raw)).toBe(n);
  });

  it.each([['0x'], ['0x031'], ['31'], ['0x3g'], ['NaN'], [49], [null], ['0x20000000000000'], [`0x${'f'.repeat(40)}`]])(
    'refuses %j',
    (raw) => {
      expect(toBlockNumber(raw)).toBeUndefined();
    },
  );
});

describe('toHeader', () => {
  it('reads the number, hash and parent hash of a block answer, in lowercase', () => {
    expect(toHeader({ number: '0x31', hash: h(49).toUpperCase().replace('0X', '0x'), parentHash: h(48) }, 'x')).toEqual(
      {
        number: 49,
        hash: h(49),
        parentHash: h(48),
      },
    );
  });

  it.each([
    ['null', null, 'not an object'],
    ['a number that is not hex', { number: 'NaN', hash: h(1), parentHash: h(0) }, 'number is NaN'],
    ['a number with leading zeros', { number: '0x01', hash: h(1), parentHash: h(0) }, 'number is 0x01'],
    ['a short hash', { number: '0x1', hash: '0x1234', parentHash: h(0) }, 'hash is 0x1234'],
    ['no parent hash', { number: '0x1', hash: h(1) }, 'parentHash is undefined'],
  ])('refuses %s as malformed', (_, raw, message) => {
    const fault = faultOf(() => toHeader(raw, 'eth_getBlockByNumber(latest)'));
    expect(fault.fault).toBe('malformed');
    expect(fault.method).toBe('eth_getBlockByNumber');
    expect(fault.message).toContain(message);
  });
});

describe('checkBlock', () => {
  it('accepts the block asked for, with its transactions at their positions', () => {
    const { header, block: checked } = checkBlock(block(), byNumber);
    expect(header).toEqual({ number: 49, hash: h(49), parentHash: h(48) });
    expect(checked.transactions).toHaveLength(2);
  });

  it('accepts a transaction without block fields and a legacy one with chain id 0', () => {
    const loose = { ...tx(0, { chainId: '0x0' }) };
    delete loose['blockHash'];
    delete loose['blockNumber'];
    expect(() => checkBlock(block({ transactions: [loose] }), byNumber)).not.toThrow();
  });

  it('refuses a block of another number, naming its parent where known', () => {
    const fault = faultOf(() =>
      checkBlock(block({ number: '0x36' }), { ...byNumber, numberOf: (hash) => (hash === h(48) ? 48 : undefined) }),
    );
    expect(fault.fault).toBe('inconsistent');
    expect(fault.message).toBe("eth_getBlockByNumber(0x31) answered block 0x36 whose parent is block 48's hash");
  });

  it('refuses a block with another hash than asked for', () => {
    const fault = faultOf(() => checkBlock(block(), { hash: h(50), chainId: CHAIN, call: 'eth_getBlockByHash' }));
    expect(fault.fault).toBe('inconsistent');
  });

  it('refuses no block as inconsistent: the node named it', () => {
    expect(faultOf(() => checkBlock(null, byNumber)).fault).toBe('inconsistent');
  });

  it.each([
    ['transactions that are not a list', block({ transactions: 'many' }), 'malformed'],
    ['hashes instead of transactions', block({ transactions: [h(1000)] }), 'malformed'],
    [
      'a transaction at another position',
      block({ transactions: [tx(0), tx(1, { transactionIndex: '0x7' })] }),
      'inconsistent',
    ],
    [
      'a transaction index that is not hex',
      block({ transactions: [tx(0, { transactionIndex: 'zero' })] }),
      'malformed',
    ],
    ['a transaction of another block (hash)', block({ transactions: [tx(0, { blockHash: h(7) })] }), 'inconsistent'],
    [
      'a transaction of another block (number)',
      block({ transactions: [tx(0, { blockNumber: '0x30' })] }),
      'inconsistent',
    ],
    ['a transaction of another chain', block({ transactions: [tx(0, { chainId: '0x1' })] }), 'inconsistent'],
    ['a chain id that is not hex', block({ transactions: [tx(0, { chainId: 1 })] }), 'malformed'],
    ['a transaction hash that is not one', block({ transactions: [tx(0, { hash: 42 })] }), 'malformed'],
  ])('refuses %s', (_, raw, fault) => {
    expect(faultOf(() => checkBlock(raw, byNumber)).fault).toBe(fault);
  });

  it('accepts the usual transaction index form and a padded one', () => {
    const padded = block({ transactions: [tx(0, { transactionIndex: '0x00' }), tx(1, { transactionIndex: '0x01' })] });
    expect(() => checkBlock(padded, byNumber)).not.toThrow();
  });
});

describe('checkBlockReceipts', () => {
  const { block: checked, header } = checkBlock(block(), byNumber);
  const call = 'eth_getBlockReceipts';

  it('accepts one receipt per transaction, in order', () => {
    expect(checkBlockReceipts([receipt(0), receipt(1)], checked as RpcBlock, header, call)).toHaveLength(2);
  });

  it.each([
    ['fewer receipts than transactions', [receipt(0)], 'inconsistent'],
    ['more receipts than transactions', [receipt(0), receipt(1), receipt(2)], 'inconsistent'],
    ['receipts in another order', [receipt(1), receipt(0)], 'inconsistent'],
    ['a receipt of another block', [receipt(0), receipt(1, { blockHash: h(3) })], 'inconsistent'],
    ['a receipt of another block number', [receipt(0), receipt(1, { blockNumber: '0x1' })], 'inconsistent'],
    ['no list', { receipts: [] }, 'malformed'],
    ['a receipt that is not an object', [receipt(0), 'receipt'], 'malformed'],
    ['a receipt without a transaction hash', [receipt(0), { status: '0x1' }], 'malformed'],
  ])('refuses %s', (_, raw, fault) => {
    expect(faultOf(() => checkBlockReceipts(raw, checked as RpcBlock, header, call)).fault).toBe(fault);
  });

  it('checks a receipt fetched by transaction hash the same way', () => {
    expect(checkTxReceipt(receipt(1), 1, checked as RpcBlock, header, 'r')).toMatchObject({ status: '0x1' });
    expect(faultOf(() => checkTxReceipt(null, 1, checked as RpcBlock, header, 'r')).fault).toBe('inconsistent');
    expect(faultOf(() => checkTxReceipt(receipt(0), 1, checked as RpcBlock, header, 'r')).fault).toBe('inconsistent');
  });
});
