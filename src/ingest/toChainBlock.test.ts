import { describe, expect, it } from 'vitest';
import { GatewayError } from '../domain/errors.ts';
import { type RpcBlock, type RpcReceipt, type RpcTx, toChainBlock, toChainHead } from './toChainBlock.ts';

const CHAIN = 31_337;
const FROM = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
const TO = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';
const CREATED = '0x5FbDB2315678afecb367f032d93F642f64180aa3';
const HASH_0 = '0x0b0b1b1e8a6f1e0c9c1e7c0e5d0a9b2e9f1d4c3b2a190817263544536271809a';
const HASH_1 = '0x1c1c2c2f9b7f2f1dad2f8d1f6e1bac3fa02e5d4c3b2a19081726354453627180';
const HASH_2 = '0x2d2d3d3fac8f3f2ebe3f9e2f7f2cbd4fb13f6e5d4c3b2a1908172635445362ab';

/** An EIP-1559 transfer as `eth_getBlockByNumber(n, true)` gives it (anvil/geth shape). */
const TRANSFER: RpcTx = {
  hash: HASH_0,
  transactionIndex: '0x0',
  from: FROM,
  to: TO,
  value: '0xde0b6b3a7640000',
  nonce: '0x0',
  gas: '0x5208',
  gasPrice: '0x3b9aca07',
  maxFeePerGas: '0x77359407',
  maxPriorityFeePerGas: '0x3b9aca00',
  input: '0x',
};

/** A legacy contract creation. */
const CREATION: RpcTx = {
  hash: HASH_1,
  transactionIndex: '0x1',
  from: FROM,
  to: null,
  value: '0x0',
  nonce: '0x1',
  gas: '0x1e8480',
  gasPrice: '0x3b9aca07',
  input: '0x6080604052348015600F57600080FD5B50',
};

/** A transaction whose receipt the node did not give. */
const NO_RECEIPT: RpcTx = {
  hash: HASH_2,
  transactionIndex: '0x2',
  from: TO,
  to: FROM,
  value: '0x1',
  nonce: '0x0',
  gas: '0x5208',
  maxFeePerGas: '0x77359407',
  maxPriorityFeePerGas: '0x0',
  input: '0xa9059cbb',
};

const BLOCK: RpcBlock = {
  number: '0x2a',
  hash: '0xAA00000000000000000000000000000000000000000000000000000000000042',
  parentHash: '0xaa00000000000000000000000000000000000000000000000000000000000041',
  timestamp: '0x6553f100',
  miner: '0x0000000000000000000000000000000000000000',
  gasUsed: '0x1dc4a8',
  gasLimit: '0x1c9c380',
  baseFeePerGas: '0x7',
  transactions: [TRANSFER, CREATION, NO_RECEIPT],
};

const RECEIPTS: RpcReceipt[] = [
  { transactionHash: HASH_0, status: '0x1', contractAddress: null },
  { transactionHash: HASH_1.toUpperCase().replace('0X', '0x'), status: '0x0', contractAddress: CREATED },
];

/** The error `toChainBlock` throws for a block; fails the test when it throws none. */
function conversionError(block: RpcBlock, receipts: readonly RpcReceipt[] = []): GatewayError {
  try {
    toChainBlock(CHAIN, block, receipts);
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error('toChainBlock accepted a bad block');
}

describe('toChainBlock', () => {
  it('reads a receipt status with a leading zero', () => {
    const block = toChainBlock(CHAIN, { ...BLOCK, transactions: [TRANSFER] }, [
      { transactionHash: HASH_0, status: '0x01' },
    ]);
    expect(block.transactions[0]?.status).toBe(1);
  });

  it.each([
    ['a short from address', { ...TRANSFER, from: '0x1234' }],
    ['a long to address', { ...TRANSFER, to: `${TO}00` }],
    ['a short tx hash', { ...TRANSFER, hash: '0xabcd' }],
  ])('rejects %s with RPC_FAILED', (_, tx) => {
    expect(() => toChainBlock(CHAIN, { ...BLOCK, transactions: [tx] }, [])).toThrow(GatewayError);
  });

  it('keeps every log of the receipts as the node gave it (without removed), skipping malformed ones', () => {
    const TOPIC = `0x${'ab'.repeat(32)}`;
    const good = {
      address: FROM,
      topics: [TOPIC],
      data: '0x01',
      logIndex: '0x0',
      transactionHash: HASH_0,
      removed: false,
    };
    const receipts: RpcReceipt[] = [
      {
        transactionHash: HASH_0,
        status: '0x1',
        logs: [good, { address: 'nope', topics: [] }, { address: TO, topics: ['0x12'] }],
      },
    ];
    const block = toChainBlock(CHAIN, { ...BLOCK, transactions: [BLOCK.transactions[0] as RpcTx] }, receipts);
    const { removed: _removed, ...raw } = good;
    expect(block.logs).toStrictEqual([{ address: FROM.toLowerCase(), topics: [TOPIC], raw }]);
  });

  it('converts a block and its receipts as JSON-RPC returns them', () => {
    expect(toChainBlock(CHAIN, BLOCK, RECEIPTS)).toStrictEqual({
      chainId: CHAIN,
      number: 42,
      hash: '0xaa00000000000000000000000000000000000000000000000000000000000042',
      parentHash: '0xaa00000000000000000000000000000000000000000000000000000000000041',
      timestamp: 1_700_000_000,
      miner: '0x0000000000000000000000000000000000000000',
      gasUsed: '0x1dc4a8',
      gasLimit: '0x1c9c380',
      baseFeePerGas: '0x7',
      transactions: [
        {
          hash: HASH_0,
          index: 0,
          from: FROM.toLowerCase(),
          to: TO.toLowerCase(),
          value: '0xde0b6b3a7640000',
          nonce: 0,
          status: 1,
          gas: '0x5208',
          maxFeePerGas: '0x77359407',
          maxPriorityFeePerGas: '0x3b9aca00',
          input: '0x',
        },
        {
          hash: HASH_1,
          index: 1,
          from: FROM.toLowerCase(),
          to: null,
          value: '0x0',
          nonce: 1,
          status: 0,
          contractAddress: CREATED.toLowerCase(),
          gas: '0x1e8480',
          gasPrice: '0x3b9aca07',
          input: '0x6080604052348015600f57600080fd5b50',
        },
        {
          hash: HASH_2,
          index: 2,
          from: TO.toLowerCase(),
          to: FROM.toLowerCase(),
          value: '0x1',
          nonce: 0,
          gas: '0x5208',
          maxFeePerGas: '0x77359407',
          maxPriorityFeePerGas: '0x0',
          input: '0xa9059cbb',
        },
      ],
      // The node's block, with its transactions as hashes; the receipts here have no logs.
      header: { ...BLOCK, transactions: [HASH_0, HASH_1, HASH_2] },
      logs: [],
    });
  });

  it('takes status 1 from receipt 0x1 and 0 from receipt 0x0', () => {
    const [transfer, creation] = toChainBlock(CHAIN, BLOCK, RECEIPTS).transactions;
    expect(transfer?.status).toBe(1);
    expect(creation?.status).toBe(0);
  });

  it('leaves no status on a transaction without a receipt', () => {
    const tx = toChainBlock(CHAIN, BLOCK, RECEIPTS).transactions[2];
    expect(tx).not.toHaveProperty('status');
    expect(tx).not.toHaveProperty('contractAddress');
  });

  it('leaves no status when the receipt has none (pre-Byzantium)', () => {
    const tx = toChainBlock(CHAIN, BLOCK, [{ transactionHash: HASH_0, status: null }]).transactions[0];
    expect(tx).not.toHaveProperty('status');
  });

  it('leaves no status on any transaction without receipts', () => {
    for (const tx of toChainBlock(CHAIN, BLOCK, []).transactions) expect(tx).not.toHaveProperty('status');
  });

  it('takes the contract address of a creation from its receipt, in lowercase', () => {
    expect(toChainBlock(CHAIN, BLOCK, RECEIPTS).transactions[1]?.contractAddress).toBe(CREATED.toLowerCase());
  });

  it('leaves out gasPrice when maxFeePerGas is present, and keeps it on a legacy tx', () => {
    const [eip1559, legacy] = toChainBlock(CHAIN, BLOCK, RECEIPTS).transactions;
    expect(eip1559).not.toHaveProperty('gasPrice');
    expect(eip1559?.maxFeePerGas).toBe('0x77359407');
    expect(legacy?.gasPrice).toBe('0x3b9aca07');
    expect(legacy).not.toHaveProperty('maxFeePerGas');
    expect(legacy).not.toHaveProperty('maxPriorityFeePerGas');
  });

  it('treats null fee fields as absent', () => {
    const tx = { ...CREATION, maxFeePerGas: null, maxPriorityFeePerGas: null };
    const block = { ...BLOCK, baseFeePerGas: null, transactions: [tx] };
    const converted = toChainBlock(CHAIN, block, []);
    expect(converted).not.toHaveProperty('baseFeePerGas');
    expect(converted.transactions[0]).not.toHaveProperty('maxFeePerGas');
    expect(converted.transactions[0]?.gasPrice).toBe('0x3b9aca07');
  });

  it('leaves out baseFeePerGas of a pre-London block', () => {
    const { baseFeePerGas: _, ...legacy } = BLOCK;
    expect(toChainBlock(CHAIN, legacy, [])).not.toHaveProperty('baseFeePerGas');
  });

  it.each([
    ['0x00ff', '0xff'],
    ['0x0', '0x0'],
    ['0x00', '0x0'],
    ['0x000', '0x0'],
    ['0xFF', '0xff'],
    ['0x0DE0B6B3A7640000', '0xde0b6b3a7640000'],
  ])('normalizes quantity %s to %s', (raw, quantity) => {
    const block = { ...BLOCK, gasUsed: raw, transactions: [{ ...TRANSFER, value: raw }] };
    const converted = toChainBlock(CHAIN, block, []);
    expect(converted.gasUsed).toBe(quantity);
    expect(converted.transactions[0]?.value).toBe(quantity);
  });

  it('reads integers with leading zeros', () => {
    const converted = toChainBlock(CHAIN, { ...BLOCK, number: '0x002a', transactions: [] }, []);
    expect(converted.number).toBe(42);
  });

  it('keeps a quantity above 2^53 exact', () => {
    const big = '0x1bc16d674ec80000000';
    expect(
      toChainBlock(CHAIN, { ...BLOCK, transactions: [{ ...TRANSFER, value: big }] }, []).transactions[0]?.value,
    ).toBe(big);
  });

  it('matches receipts to transactions by hash in any case', () => {
    const receipts = [{ transactionHash: HASH_0.toUpperCase().replace('0X', '0x'), status: '0x1' }];
    const block = { ...BLOCK, transactions: [{ ...TRANSFER, hash: HASH_0.toUpperCase().replace('0X', '0x') }] };
    expect(toChainBlock(CHAIN, block, receipts).transactions[0]?.status).toBe(1);
  });

  it.each([
    ['a quantity of 0x alone', { gasUsed: '0x' }, 'block.gasUsed'],
    ['a quantity without 0x', { gasLimit: '1c9c380' }, 'block.gasLimit'],
    ['a quantity with a non-hex digit', { gasUsed: '0x1g' }, 'block.gasUsed'],
    ['a decimal number', { number: 42 as unknown as string }, 'block.number'],
    ['a bad base fee', { baseFeePerGas: '7' }, 'block.baseFeePerGas'],
    ['a bad timestamp', { timestamp: '' }, 'block.timestamp'],
    ['a block number above 2^53', { number: '0x20000000000001' }, 'block.number'],
    ['a hash that is not hex', { hash: '0xzz' }, 'block.hash'],
  ])('throws RPC_FAILED for %s, naming the field', (_, fields, field) => {
    const error = conversionError({ ...BLOCK, ...fields });
    expect(error.code).toBe('RPC_FAILED');
    expect(error.message).toContain(field);
  });

  it.each([
    ['value', { value: '0xq' }, 'tx.value'],
    ['nonce', { nonce: 'one' }, 'tx.nonce'],
    ['gas', { gas: '' }, 'tx.gas'],
    ['gasPrice', { gasPrice: '1' }, 'tx.gasPrice'],
    ['maxFeePerGas', { maxFeePerGas: '0x' }, 'tx.maxFeePerGas'],
    ['transactionIndex', { transactionIndex: '-0x1' }, 'tx.transactionIndex'],
    ['input', { input: 'a9059cbb' }, 'tx.input'],
  ])('throws RPC_FAILED for a bad tx %s', (_, fields, field) => {
    const error = conversionError({ ...BLOCK, transactions: [{ ...TRANSFER, ...fields }] });
    expect(error.code).toBe('RPC_FAILED');
    expect(error.message).toContain(field);
  });

  it('throws RPC_FAILED for a receipt with a bad contract address', () => {
    const error = conversionError(BLOCK, [{ transactionHash: HASH_1, status: '0x1', contractAddress: 'nope' }]);
    expect(error.code).toBe('RPC_FAILED');
    expect(error.message).toContain('receipt.contractAddress');
  });
});

describe('toChainBlock: token transfers', () => {
  const TRANSFER_TOPIC = '0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef';
  const pad = (address: string): string => `0x${'0'.repeat(24)}${address.slice(2)}`;

  it('decodes each receipt’s logs into its transaction’s transfers, skipping malformed ones', () => {
    const logs = [
      { address: CREATED, topics: [TRANSFER_TOPIC, pad(FROM), pad(TO)], data: `0x${'0'.repeat(63)}7`, logIndex: '0x3' },
      { address: CREATED, topics: [TRANSFER_TOPIC, pad(FROM)], data: '0x', logIndex: '0x4' },
      'not a log',
    ];
    const block = toChainBlock(CHAIN, BLOCK, [
      { transactionHash: HASH_0, status: '0x1', logs },
      { transactionHash: HASH_1, status: '0x1', contractAddress: CREATED, logs: [] },
    ]);
    expect(block.transactions[0]?.transfers).toEqual([
      {
        kind: 'erc20',
        id: `${HASH_0}:3`,
        txHash: HASH_0,
        logIndex: 3,
        token: CREATED.toLowerCase(),
        from: FROM.toLowerCase(),
        to: TO.toLowerCase(),
        value: '0x7',
      },
    ]);
    expect(block.transactions[1]).not.toHaveProperty('transfers');
    expect(block.transactions[2]).not.toHaveProperty('transfers');
  });
});

describe('toChainHead', () => {
  const { transactions, ...header } = BLOCK;
  const EMPTY_ROOT = '0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421';

  it('announces a block from a header that lists its transactions, with their count and no bodies', () => {
    const head = toChainHead(7, { ...header, transactions: transactions.map((tx) => tx.hash) });
    expect(head).toMatchObject({ chainId: 7, number: 0x2a, headerOnly: true, txCount: transactions.length });
    expect(head?.transactions).toEqual([]);
    // The header's fields are the whole block's, converted the same way.
    const { transactions: _bodies, header: _raw, logs: _logs, ...whole } = toChainBlock(7, BLOCK, []);
    expect(head).toEqual({ ...whole, transactions: [], txCount: transactions.length, headerOnly: true });
  });

  it('counts no transactions from an empty transaction root, and announces nothing where the header does not tell', () => {
    expect(toChainHead(7, { ...header, transactionsRoot: EMPTY_ROOT })?.txCount).toBe(0);
    expect(toChainHead(7, { ...header, transactionsRoot: `0x${'ab'.repeat(32)}` })).toBeUndefined();
    expect(toChainHead(7, { ...header })).toBeUndefined();
  });

  it('refuses a header field that is not what it must be', () => {
    expect(() => toChainHead(7, { ...header, miner: 'nobody', transactions: [] })).toThrow(/block\.miner/);
  });
});
