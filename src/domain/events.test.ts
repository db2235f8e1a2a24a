import { describe, expect, it } from 'vitest';
import { blockActivity, toTxEvent, transferAddresses, txAddresses } from './events.ts';
import type { ChainBlock, ChainTx, Hex, TokenTransferEvent } from './types.ts';

const ALICE: Hex = '0x00000000000000000000000000000000000000a1';
const BOB: Hex = '0x00000000000000000000000000000000000000b0';
const OPERATOR: Hex = '0x00000000000000000000000000000000000000c0';
const TOKEN: Hex = '0x0000000000000000000000000000000000000070';
const TX_HASH: Hex = `0x${'ab'.repeat(32)}`;

function tx(index: number, transfers?: TokenTransferEvent[]): ChainTx {
  return {
    hash: `0x${index.toString(16).padStart(64, '0')}`,
    index,
    from: ALICE,
    to: TOKEN,
    value: '0x0',
    nonce: index,
    status: 1,
    gas: '0x5208',
    input: '0x',
    ...(transfers === undefined ? {} : { transfers }),
  };
}

function block(transactions: ChainTx[]): ChainBlock {
  return {
    chainId: 1,
    number: 1,
    hash: `0x${'11'.repeat(32)}`,
    parentHash: `0x${'00'.repeat(32)}`,
    timestamp: 1,
    miner: ALICE,
    gasUsed: '0x0',
    gasLimit: '0x0',
    transactions,
  };
}

const erc20: TokenTransferEvent = {
  kind: 'erc20',
  id: `${TX_HASH}:0`,
  txHash: TX_HASH,
  logIndex: 0,
  token: TOKEN,
  from: ALICE,
  to: BOB,
  value: '0x1',
};
const erc1155: TokenTransferEvent = {
  kind: 'erc1155',
  id: `${TX_HASH}:1:0`,
  txHash: TX_HASH,
  logIndex: 1,
  token: TOKEN,
  operator: OPERATOR,
  from: BOB,
  to: BOB,
  tokenId: '0x1',
  value: '0x2',
};

describe('blockActivity', () => {
  it('yields each transaction, then its token transfers in log order', () => {
    const entries = blockActivity(block([tx(0, [erc20, erc1155]), tx(1)]));
    expect(entries.map((e) => `${e.event.kind}:${e.event.id}`)).toEqual([
      `tx:${tx(0).hash}`,
      `erc20:${erc20.id}`,
      `erc1155:${erc1155.id}`,
      `tx:${tx(1).hash}`,
    ]);
  });

  it('matches token transfers on from and to, never on the operator or the token', () => {
    const entries = blockActivity(block([tx(0, [erc20, erc1155])]));
    expect(entries.map((e) => e.addresses)).toEqual([[ALICE, TOKEN], [ALICE, BOB], [BOB]]);
    expect(transferAddresses(erc1155)).not.toContain(OPERATOR);
  });

  it('matches a transaction on from, to and the contract it created', () => {
    expect(txAddresses({ from: ALICE, to: null, contractAddress: TOKEN })).toEqual([ALICE, TOKEN]);
    expect(txAddresses({ from: ALICE, to: ALICE })).toEqual([ALICE]);
  });
});

describe('toTxEvent', () => {
  it('carries the fee paid: gasUsed × effectiveGasPrice, and the blob fee of a blob transaction', () => {
    const paid = toTxEvent({ ...tx(0), gasUsed: '0x5208', effectiveGasPrice: '0x3b9aca07' });
    expect(paid).toMatchObject({ gasUsed: '0x5208', effectiveGasPrice: '0x3b9aca07' });
    expect(BigInt(paid.fee as string)).toBe(21_000n * 1_000_000_007n);
    expect(paid.blobFee).toBeUndefined();
    const blob = toTxEvent({
      ...tx(1),
      gasUsed: '0x5208',
      effectiveGasPrice: '0x1',
      blobGasUsed: '0x20000',
      blobGasPrice: '0x3',
    });
    expect(BigInt(blob.blobFee as string)).toBe(131_072n * 3n);
    // Large values stay exact (no float).
    const big = toTxEvent({ ...tx(2), gasUsed: '0x1c9c380', effectiveGasPrice: '0xe8d4a51000' });
    expect(big.fee).toBe(`0x${(30_000_000n * 1_000_000_000_000n).toString(16)}`);
  });

  it('leaves the fee out where the receipt gave none', () => {
    const event = toTxEvent(tx(0));
    expect('fee' in event || 'gasUsed' in event || 'effectiveGasPrice' in event).toBe(false);
  });
});
