import { afterEach, describe, expect, it } from 'vitest';
import { FakeChain, FakeNode } from '../../test/helpers/fakeNode.ts';
import { TEST_WATCH_OPTIONS } from '../../test/helpers/watchOptions.ts';
import { errorMessage, RpcFaultError } from '../domain/errors.ts';
import type { ChainBlock, ChainTx, Erc20TransferEvent, Hex } from '../domain/types.ts';
import { createBlockEnricher } from './enrichBlock.ts';
import type { TokenLookupOutcome } from './TokenMetadata.ts';
import { watchChain } from './watchChain.ts';

// The enricher's decisions against a scripted node: which requests it sends for which block, and
// what it makes of the answers. Real traces and real tokens are tested on anvil
// (test/internalTransfers.test.ts, test/tokenNames.test.ts).

const hash = (n: number): Hex => `0x${n.toString(16).padStart(64, '0')}` as Hex;
const address = (n: number): Hex => `0x${n.toString(16).padStart(40, '0')}` as Hex;
const TOKEN = address(0x70c);
const CONTRACT = address(0xc0);

function tx(index: number, gasUsed: Hex, transfers?: Erc20TransferEvent[]): ChainTx {
  return {
    hash: hash(index + 1),
    index,
    from: address(1),
    to: CONTRACT,
    value: '0x0',
    nonce: index,
    status: 1,
    gasUsed,
    gas: '0x30000',
    input: '0x',
    ...(transfers === undefined ? {} : { transfers }),
  };
}

function block(transactions: ChainTx[]): ChainBlock {
  return {
    chainId: 1,
    number: 9,
    hash: hash(900),
    parentHash: hash(899),
    timestamp: 1,
    miner: address(0),
    gasUsed: '0x0',
    gasLimit: '0x1',
    transactions,
  };
}

const transfer: Erc20TransferEvent = {
  kind: 'erc20',
  id: `${hash(1)}:0`,
  txHash: hash(1),
  logIndex: 0,
  token: TOKEN,
  from: address(1),
  to: address(2),
  value: '0x5',
};

/** A call frame of the callTracer paying `value` from the contract to `to`. */
const callTrace = (to: Hex, value: Hex) => [
  {
    txHash: hash(1),
    result: {
      type: 'CALL',
      from: address(1),
      to: CONTRACT,
      value: '0x0',
      calls: [{ type: 'CALL', from: CONTRACT, to, value }],
    },
  },
];

/** A node answering each method as `answers` says; records what was asked. */
function node(answers: Record<string, (params: readonly unknown[]) => unknown>) {
  const asked: string[] = [];
  const send = async (method: string, params: readonly unknown[]): Promise<unknown> => {
    asked.push(method);
    const answer = answers[method];
    if (answer === undefined) {
      throw new RpcFaultError('node_error', `${method}: the method does not exist`, {
        method,
        rpcCode: -32601,
        rpcMessage: 'the method does not exist/is not available',
      });
    }
    return answer(params);
  };
  return { send, asked };
}

describe('createBlockEnricher', () => {
  it("adds a block's internal transfers, and marks it traced", async () => {
    const { send, asked } = node({ debug_traceBlockByNumber: () => callTrace(address(7), '0x64') });
    const enricher = createBlockEnricher({ send, tokenMetadata: false });
    const out = await enricher.enrich(block([tx(0, '0x9000')]));
    expect(out.traced).toBe(true);
    expect(out.transactions[0]?.internal).toEqual([
      expect.objectContaining({ kind: 'internal', from: CONTRACT, to: address(7), value: '0x64', callType: 'call' }),
    ]);
    // The probe tries both methods (trace_block is not served here), then the block is traced.
    expect(asked).toEqual(['debug_traceBlockByNumber', 'trace_block', 'debug_traceBlockByNumber']);
    expect(enricher.tracing()).toBe(true);
  });

  it('does not trace a block of plain transfers, yet marks it traced where the node traces', async () => {
    const { send, asked } = node({ debug_traceBlockByNumber: () => callTrace(address(7), '0x64') });
    const enricher = createBlockEnricher({ send, tokenMetadata: false });
    await enricher.enrich(block([tx(0, '0x9000')]));
    const outcomes: string[] = [];
    const quiet = createBlockEnricher({ send, tokenMetadata: false, onTraced: (o) => outcomes.push(o) });
    const out = await quiet.enrich(block([tx(0, '0x5208')]));
    expect(out.traced).toBe(true);
    expect(out.transactions[0]?.internal).toBeUndefined();
    // The second enricher found the method out once (on this block), and traced nothing else.
    expect(asked.slice(3)).toEqual(['debug_traceBlockByNumber', 'trace_block']);
    expect(outcomes).toEqual(['skipped']);
  });

  it('falls back to trace_block, and goes without traces where the node has neither', async () => {
    const parity = node({
      trace_block: () => [
        {
          type: 'call',
          traceAddress: [],
          transactionHash: hash(1),
          action: { callType: 'call', from: address(1), to: CONTRACT, value: '0x0' },
        },
        {
          type: 'call',
          traceAddress: [0],
          transactionHash: hash(1),
          action: { callType: 'call', from: CONTRACT, to: address(8), value: '0x2' },
        },
      ],
    });
    const out = await createBlockEnricher({ send: parity.send, tokenMetadata: false }).enrich(block([tx(0, '0x9000')]));
    expect(out.transactions[0]?.internal).toEqual([expect.objectContaining({ to: address(8), value: '0x2' })]);
    const none = node({});
    const enricher = createBlockEnricher({ send: none.send, tokenMetadata: false });
    const plain = await enricher.enrich(block([tx(0, '0x9000')]));
    expect(plain.traced).toBeUndefined();
    expect(enricher.tracing()).toBe(false);
    await enricher.enrich(block([tx(0, '0x9000')]));
    expect(none.asked).toEqual(['debug_traceBlockByNumber', 'trace_block']);
  });

  it('sends a block on without internal transfers when the node refuses to trace it, and fails the round on a broken link', async () => {
    let answer: () => unknown = () => callTrace(address(7), '0x64');
    const { send } = node({ debug_traceBlockByNumber: () => answer() });
    const refused: number[] = [];
    const enricher = createBlockEnricher({ send, tokenMetadata: false, onTraceRefused: (n) => refused.push(n) });
    await enricher.enrich(block([tx(0, '0x9000')]));
    answer = () => {
      throw new RpcFaultError('node_error', 'debug_traceBlockByNumber: execution timeout', { rpcCode: -32000 });
    };
    const out = await enricher.enrich(block([tx(0, '0x9000')]));
    expect(out.traced).toBeUndefined();
    expect(out.transactions[0]?.internal).toBeUndefined();
    expect(refused).toEqual([9]);
    answer = () => {
      throw new RpcFaultError('timeout', 'debug_traceBlockByNumber: no answer in 10000 ms');
    };
    await expect(enricher.enrich(block([tx(0, '0x9000')]))).rejects.toMatchObject({ fault: 'timeout' });
  });

  it('adds token metadata once known, never waiting for it', async () => {
    const words: Record<string, Hex> = {
      '0x95d89b41': `0x${'20'.padStart(64, '0')}${'3'.padStart(64, '0')}${Buffer.from('TST').toString('hex').padEnd(64, '0')}`,
      '0x313ce567': `0x${'12'.padStart(64, '0')}`,
      '0x06fdde03': '0x',
    };
    const { send } = node({ eth_call: (params) => words[(params[0] as { data: string }).data] });
    const enricher = createBlockEnricher({ send, traces: false });
    const first = await enricher.enrich(block([tx(0, '0x9000', [transfer])]));
    expect(first.transactions[0]?.transfers).toEqual([transfer]);
    await enricher.idle();
    const later = await enricher.enrich(block([tx(0, '0x9000', [transfer])]));
    expect(later.transactions[0]?.transfers).toEqual([{ ...transfer, symbol: 'TST', decimals: 18 }]);
    expect(later.traced).toBeUndefined();
  });
});

/** Resolves with what `register` hands its callback first, within `timeoutMs`. */
function first<T>(what: string, register: (callback: (value: T) => void) => void, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

const TRANSFER_TOPIC = '0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef';
const topicOf = (account: string): string => `0x${account.slice(2).padStart(64, '0')}`;

// The enricher as the watcher wires it: its requests go through a real pool to a node over http.
describe('createBlockEnricher in a watcher', () => {
  const closers: Array<() => Promise<void>> = [];

  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  async function node(chain: FakeChain): Promise<FakeNode> {
    const started = await FakeNode.start(chain);
    closers.push(() => started.close());
    // Every transaction ran code (traced) and moved TOKEN.
    started.inject({
      method: 'eth_getBlockReceipts',
      times: Number.POSITIVE_INFINITY,
      fault: {
        kind: 'mutate',
        mutate: (receipts) =>
          (receipts as Array<Record<string, unknown>>).map((receipt) => ({
            ...receipt,
            gasUsed: '0x9000',
            logs: [
              {
                address: TOKEN,
                topics: [TRANSFER_TOPIC, topicOf(String(receipt['from'])), topicOf(String(receipt['to']))],
                data: `0x${'5'.padStart(64, '0')}`,
                logIndex: receipt['transactionIndex'],
                transactionHash: receipt['transactionHash'],
                blockHash: receipt['blockHash'],
                blockNumber: receipt['blockNumber'],
                transactionIndex: receipt['transactionIndex'],
                removed: false,
              },
            ],
          })),
      },
    });
    return started;
  }

  it('takes a reverting token call and a refused trace as the node’s answers: no fault, no failover', async () => {
    const chain = new FakeChain();
    const a = await node(chain);
    const b = await node(chain);
    // The token has no metadata: each of its calls reverts.
    a.inject({
      method: 'eth_call',
      times: Number.POSITIVE_INFINITY,
      fault: { kind: 'error', code: 3, message: 'execution reverted' },
    });
    // The node serves the callTracer (the probe finds it), then refuses to trace the block.
    a.inject({ method: 'debug_traceBlockByNumber', fault: { kind: 'mutate', mutate: () => [] } });
    a.inject({
      method: 'debug_traceBlockByNumber',
      times: Number.POSITIVE_INFINITY,
      fault: { kind: 'error', code: -32000, message: 'execution timeout' },
    });

    const faults: string[] = [];
    const errors: string[] = [];
    const blocks: ChainBlock[] = [];
    let onLookup: (outcome: TokenLookupOutcome) => void = () => undefined;
    let onRefused: (block: number) => void = () => undefined;
    let onFirstBlock: (block: ChainBlock) => void = () => undefined;
    const handed = first<ChainBlock>('a block', (callback) => {
      onFirstBlock = callback;
    });
    const looked = first<TokenLookupOutcome>('a token lookup', (callback) => {
      onLookup = callback;
    });
    const refused = first<number>('a refused trace', (callback) => {
      onRefused = callback;
    });
    const watcher = await watchChain({
      urls: [a.url, b.url],
      ...TEST_WATCH_OPTIONS,
      enrich: ({ send, probe }) =>
        createBlockEnricher({
          send,
          probe,
          onTokenLookup: (_, outcome) => onLookup(outcome),
          onTraceRefused: (number) => onRefused(number),
        }),
      onBlock: (block) => {
        blocks.push(block);
        onFirstBlock(block);
      },
      onRetract: () => undefined,
      onFault: (fault, url) => faults.push(`${url}: ${fault.message}`),
      onError: (error) => errors.push(errorMessage(error)),
    });
    closers.push(() => watcher.close());

    expect(await refused).toBe(chain.head.number);
    await handed;
    expect(await looked).toBe('none');
    expect(blocks.map((block) => block.number)).toEqual([chain.head.number]);
    expect(blocks[0]?.traced).toBeUndefined();
    expect(blocks[0]?.transactions[0]?.transfers).toEqual([expect.objectContaining({ token: TOKEN, value: '0x5' })]);
    expect(faults).toEqual([]);
    expect(errors).toEqual([]);
    expect(watcher.currentUrl()).toBe(a.url);
    expect(b.requests).toEqual([]);
    expect(a.calls('eth_call')).toBe(3);
  });
});
