import { describe, expect, it, vi } from 'vitest';
import { RpcFaultError } from '../domain/errors.ts';
import type { ChainBlock, ChainTx, Hex, InternalTransferEvent } from '../domain/types.ts';
import {
  fetchInternalTransfers,
  internalFromCallTracer,
  internalFromParityTraces,
  MAX_TRACE_DEPTH,
  MAX_TRACE_FRAMES_PER_BLOCK,
  mayHaveInternalTransfers,
  probeTraceMethod,
} from './traceInternal.ts';

const TX1 = `0x${'1'.repeat(64)}` as Hex;
const TX2 = `0x${'2'.repeat(64)}` as Hex;
const EOA = `0x${'e0'.repeat(20)}` as Hex;
const SPLITTER = `0x${'5a'.repeat(20)}` as Hex;
const INNER = `0x${'5b'.repeat(20)}` as Hex;
const ALICE = `0x${'a1'.repeat(20)}` as Hex;
const BOB = `0x${'b0'.repeat(20)}` as Hex;
const CHILD = `0x${'c1'.repeat(20)}` as Hex;
const MAX_UINT256 = `0x${'f'.repeat(64)}`;

type Frame = Record<string, unknown>;

function frame(type: string, from: string, to: string, value: string | undefined, extra: Frame = {}): Frame {
  return { type, from, to, ...(value === undefined ? {} : { value }), ...extra };
}

function event(
  txHash: Hex,
  path: string,
  from: Hex,
  to: Hex,
  value: string,
  callType: InternalTransferEvent['callType'] = 'call',
): InternalTransferEvent {
  return { kind: 'internal', id: `${txHash}:call:${path}`, txHash, from, to, value: value as Hex, callType };
}

/** A Parity-style trace of `txHash` at `traceAddress`. */
function trace(txHash: string | null, traceAddress: number[], type: string, action: Frame, extra: Frame = {}): Frame {
  return {
    action,
    blockHash: `0x${'bb'.repeat(32)}`,
    blockNumber: 7,
    result: {},
    subtraces: 0,
    traceAddress,
    transactionHash: txHash,
    transactionPosition: 0,
    type,
    ...extra,
  };
}

function callAction(callType: string, from: string, to: string, value: string): Frame {
  return { callType, from, to, value, gas: '0x0', input: '0x' };
}

/** The same two transactions in both formats: a split with a failed leg, and a nested, delegated payout. */
function callTracerFixture(): unknown[] {
  return [
    {
      txHash: TX1,
      result: frame('CALL', EOA, SPLITTER, '0x0', {
        calls: [
          frame('CALL', SPLITTER, ALICE, '0x1'),
          frame('CALL', SPLITTER, BOB, '0x0'), // zero value: no event
          frame('CALL', SPLITTER, INNER, '0x5', {
            error: 'execution reverted',
            calls: [frame('CALL', INNER, ALICE, '0x5')], // under a failed frame: reverted
          }),
          frame('STATICCALL', SPLITTER, INNER, undefined),
          frame('CREATE2', SPLITTER, CHILD, '0x6'),
        ],
      }),
    },
    {
      txHash: TX2,
      result: frame('CALL', EOA, SPLITTER, '0x10', {
        calls: [
          frame('DELEGATECALL', SPLITTER, INNER, '0x10', { calls: [frame('CALL', SPLITTER, BOB, '0x7')] }),
          frame('CALL', SPLITTER, INNER, '0x3', {
            calls: [frame('CALLCODE', INNER, INNER, '0x1'), frame('SELFDESTRUCT', INNER, ALICE, '0x3')],
          }),
        ],
      }),
    },
  ];
}

function parityFixture(): unknown[] {
  return [
    trace(null, [], 'reward', { author: EOA, rewardType: 'block', value: '0x1bc16d674ec80000' }, { result: null }),
    trace(TX1, [], 'call', callAction('call', EOA, SPLITTER, '0x0')),
    trace(TX1, [0], 'call', callAction('call', SPLITTER, ALICE, '0x1')),
    trace(TX1, [1], 'call', callAction('call', SPLITTER, BOB, '0x0')),
    trace(TX1, [2], 'call', callAction('call', SPLITTER, INNER, '0x5'), { error: 'Reverted' }),
    trace(TX1, [2, 0], 'call', callAction('call', INNER, ALICE, '0x5')),
    trace(TX1, [3], 'call', callAction('staticcall', SPLITTER, INNER, '0x0')),
    trace(
      TX1,
      [4],
      'create',
      { from: SPLITTER, value: '0x6', gas: '0x0', init: '0x', creationMethod: 'create2' },
      { result: { address: CHILD, code: '0x', gasUsed: '0x0' } },
    ),
    trace(TX2, [], 'call', callAction('call', EOA, SPLITTER, '0x10')),
    trace(TX2, [0], 'call', callAction('delegatecall', SPLITTER, INNER, '0x10')),
    trace(TX2, [0, 0], 'call', callAction('call', SPLITTER, BOB, '0x7')),
    trace(TX2, [1], 'call', callAction('call', SPLITTER, INNER, '0x3')),
    trace(TX2, [1, 0], 'call', callAction('callcode', INNER, INNER, '0x1')),
    trace(TX2, [1, 1], 'suicide', { address: INNER, refundAddress: ALICE, balance: '0x3' }, { result: null }),
  ];
}

const EXPECTED = new Map<Hex, InternalTransferEvent[]>([
  [TX1, [event(TX1, '0', SPLITTER, ALICE, '0x1'), event(TX1, '4', SPLITTER, CHILD, '0x6', 'create2')]],
  [
    TX2,
    [
      event(TX2, '0.0', SPLITTER, BOB, '0x7'),
      event(TX2, '1', SPLITTER, INNER, '0x3'),
      event(TX2, '1.1', INNER, ALICE, '0x3', 'selfdestruct'),
    ],
  ],
]);

/** The RpcFaultError that `run` throws (fails the test when it throws none or another error). */
function faultOf(run: () => unknown): RpcFaultError {
  try {
    run();
  } catch (error) {
    if (error instanceof RpcFaultError) return error;
    throw error;
  }
  throw new Error('expected an RpcFaultError, got none');
}

/** A callTracer answer of one transaction whose top-level frame is `root`. */
function oneTx(root: unknown): unknown[] {
  return [{ txHash: TX1, result: root }];
}

/** A chain of `depth` CALL frames below the top-level one, the deepest paying ALICE. */
function nestedFrames(depth: number): Frame {
  let inner: Frame = frame('CALL', SPLITTER, ALICE, '0x1');
  for (let i = 1; i < depth; i++) inner = frame('CALL', SPLITTER, SPLITTER, '0x0', { calls: [inner] });
  return frame('CALL', EOA, SPLITTER, '0x0', { calls: [inner] });
}

describe('internalFromCallTracer', () => {
  it('lists the value-moving frames below the top level in pre-order, with their trace paths', () => {
    expect(internalFromCallTracer(callTracerFixture(), [TX1, TX2])).toEqual(EXPECTED);
  });

  it('gives the same events as the Parity format of the same traces', () => {
    expect(internalFromCallTracer(callTracerFixture(), [TX1, TX2])).toEqual(
      internalFromParityTraces(parityFixture(), [TX1, TX2]),
    );
  });

  it('skips a failed frame and everything under it, and a failed transaction entirely', () => {
    const failedTx = frame('CALL', EOA, SPLITTER, '0x0', {
      error: 'execution reverted',
      calls: [frame('CALL', SPLITTER, ALICE, '0x1')],
    });
    expect(internalFromCallTracer(oneTx(failedTx), [TX1])).toEqual(new Map([[TX1, []]]));
  });

  it('takes the transaction from its position when older geth leaves txHash out', () => {
    const answer = callTracerFixture().map((item) => ({ result: (item as Frame)['result'] }));
    expect(internalFromCallTracer(answer, [TX1, TX2])).toEqual(EXPECTED);
  });

  it('lowercases addresses and strips leading zeros from values', () => {
    const root = frame('CALL', EOA, SPLITTER, '0x0', {
      calls: [frame('call', SPLITTER.toUpperCase().replace('0X', '0x'), `0x${'AB'.repeat(20)}`, '0x000A')],
    });
    expect(internalFromCallTracer(oneTx(root), [TX1]).get(TX1)).toEqual([
      event(TX1, '0', SPLITTER, `0x${'ab'.repeat(20)}`, '0xa'),
    ]);
  });

  it('accepts 2^256 - 1 wei and refuses 2^256', () => {
    const pay = (value: string): unknown[] =>
      oneTx(frame('CALL', EOA, SPLITTER, '0x0', { calls: [frame('CALL', SPLITTER, ALICE, value)] }));
    expect(internalFromCallTracer(pay(`0x000${'f'.repeat(64)}`), [TX1]).get(TX1)?.[0]?.value).toBe(MAX_UINT256);
    expect(faultOf(() => internalFromCallTracer(pay(`0x1${'0'.repeat(64)}`), [TX1])).fault).toBe('malformed');
  });

  it('refuses answers whose count or hashes do not match the block', () => {
    expect(faultOf(() => internalFromCallTracer(callTracerFixture(), [TX1])).message).toMatch(
      /2 transaction traces for a block of 1 transactions/,
    );
    expect(faultOf(() => internalFromCallTracer(callTracerFixture(), [TX2, TX1])).fault).toBe('inconsistent');
  });

  it('reports a transaction the node could not trace as its error', () => {
    const fault = faultOf(() => internalFromCallTracer([{ txHash: TX1, error: 'execution timeout' }], [TX1]));
    expect(fault.fault).toBe('node_error');
    expect(fault.message).toMatch(/could not trace it: execution timeout/);
  });

  const below = (child: unknown): unknown[] => oneTx(frame('CALL', EOA, SPLITTER, '0x0', { calls: [child] }));
  it.each([
    ['a result that is not an array', { calls: [] }, /not an array of transaction traces/],
    ['an item that is not an object', ['nope'], /transaction 0: not an object: nope/],
    ['a result that is not a frame', oneTx('0x'), /result is not a call frame/],
    ['calls that are not an array', oneTx(frame('CALL', EOA, SPLITTER, '0x0', { calls: {} })), /calls is not an array/],
    ['a child that is not a frame', below(null), /frame 0: not a call frame: null/],
    ['a frame without type', below({ from: SPLITTER, to: ALICE }), /type is not a string/],
    ['a 19-byte address', below(frame('CALL', SPLITTER, `0x${'ab'.repeat(19)}`, '0x1')), /to is not a 20-byte/],
    [
      'a missing to',
      below({ type: 'CALL', from: SPLITTER, value: '0x1' }),
      /to is not a 20-byte hex address: undefined/,
    ],
    ['a decimal value', below(frame('CALL', SPLITTER, ALICE, '100')), /value is not a hex quantity: 100/],
    ['a numeric value', below(frame('CALL', SPLITTER, ALICE, 1 as never)), /value is not a hex quantity: 1/],
    ['an empty hex value', below(frame('CALL', SPLITTER, ALICE, '0x')), /value is not a hex quantity/],
    [
      'an error that is not a string',
      oneTx(frame('CALL', EOA, SPLITTER, '0x0', { error: {} })),
      /error is not a string/,
    ],
    ['a txHash that is not a hash', [{ txHash: '0x1234', result: {} }], /txHash is not a 32-byte hex hash: 0x1234/],
  ])('refuses %s as malformed', (_name, answer, message) => {
    const fault = faultOf(() => internalFromCallTracer(answer, Array.isArray(answer) ? [TX1] : []));
    expect(fault.fault).toBe('malformed');
    expect(fault.message).toMatch(message);
  });

  it('walks frames as deep as the EVM allows without recursion', () => {
    const events = internalFromCallTracer(oneTx(nestedFrames(MAX_TRACE_DEPTH)), [TX1]).get(TX1) ?? [];
    expect(events).toHaveLength(1);
    expect(events[0]?.id.split(':call:')[1]).toBe(Array(MAX_TRACE_DEPTH).fill('0').join('.'));
  });

  it('refuses a nesting deeper than the EVM allows, however deep it claims to be', () => {
    expect(faultOf(() => internalFromCallTracer(oneTx(nestedFrames(MAX_TRACE_DEPTH + 1)), [TX1])).message).toMatch(
      /deeper than 1024/,
    );
    expect(faultOf(() => internalFromCallTracer(oneTx(nestedFrames(200_000)), [TX1])).fault).toBe('malformed');
  });

  it('refuses more frames per block than the bound', () => {
    const calls = Array(MAX_TRACE_FRAMES_PER_BLOCK).fill(frame('CALL', SPLITTER, ALICE, '0x1'));
    const fault = faultOf(() => internalFromCallTracer(oneTx(frame('CALL', EOA, SPLITTER, '0x0', { calls })), [TX1]));
    expect(fault.fault).toBe('too_large');
    expect(fault.message).toMatch(/more than 100000 trace frames/);
  });

  it('refuses paths that would cost far more than the answer: many frames at the bottom of a deep chain', () => {
    const leaves = Array(50_000).fill(frame('CALL', SPLITTER, ALICE, '0x1'));
    let inner: Frame = frame('CALL', SPLITTER, SPLITTER, '0x0', { calls: leaves });
    for (let i = 1; i < 1_000; i++) inner = frame('CALL', SPLITTER, SPLITTER, '0x0', { calls: [inner] });
    const root = frame('CALL', EOA, SPLITTER, '0x0', { calls: [inner] });
    expect(faultOf(() => internalFromCallTracer(oneTx(root), [TX1])).fault).toBe('too_large');
  });
});

describe('internalFromParityTraces', () => {
  it('lists the value-moving traces below the top level, passing over rewards', () => {
    expect(internalFromParityTraces(parityFixture(), [TX1, TX2])).toEqual(EXPECTED);
  });

  it('skips every trace under a failed one, and a failed transaction entirely', () => {
    const answer = [
      trace(TX1, [], 'call', callAction('call', EOA, SPLITTER, '0x0'), { error: 'Reverted' }),
      trace(TX1, [0], 'call', callAction('call', SPLITTER, INNER, '0x0')),
      trace(TX1, [0, 0], 'call', callAction('call', INNER, ALICE, '0x5')),
    ];
    expect(internalFromParityTraces(answer, [TX1])).toEqual(new Map([[TX1, []]]));
  });

  it('calls a create without creationMethod a create', () => {
    const answer = [
      trace(TX1, [], 'call', callAction('call', EOA, SPLITTER, '0x0')),
      trace(TX1, [0], 'create', { from: SPLITTER, value: '0x2', init: '0x' }, { result: { address: CHILD } }),
    ];
    expect(internalFromParityTraces(answer, [TX1]).get(TX1)).toEqual([
      event(TX1, '0', SPLITTER, CHILD, '0x2', 'create'),
    ]);
  });

  it('gives every transaction of the block a list, empty when nothing moved', () => {
    const answer = [trace(TX1, [], 'call', callAction('call', EOA, ALICE, '0x9'))];
    expect(internalFromParityTraces(answer, [TX1])).toEqual(new Map([[TX1, []]]));
    expect(internalFromParityTraces([], [])).toEqual(new Map());
  });

  it('refuses traces of a transaction that is not in the block', () => {
    expect(faultOf(() => internalFromParityTraces(parityFixture(), [TX1])).fault).toBe('inconsistent');
  });

  it('says the node is behind when it has no traces for a block with transactions', () => {
    expect(faultOf(() => internalFromParityTraces([], [TX1])).fault).toBe('behind');
    expect(faultOf(() => internalFromParityTraces(null, [TX1])).fault).toBe('behind');
  });

  const root = trace(TX1, [], 'call', callAction('call', EOA, SPLITTER, '0x0'));
  const pay = (traceAddress: number[], value = '0x1'): Frame =>
    trace(TX1, traceAddress, 'call', callAction('call', SPLITTER, ALICE, value));
  it.each([
    ['a result that is not an array', { traces: [] }, /not an array of traces/],
    ['a trace that is not an object', [root, 7], /trace 1: not an object: 7/],
    ['a trace without type', [root, { ...pay([0]), type: undefined }], /type is not a string/],
    ['a call trace without transactionHash', [root, { ...pay([0]), transactionHash: null }], /without transactionHash/],
    [
      'a transactionHash that is not a hash',
      [root, { ...pay([0]), transactionHash: '0xabc' }],
      /not a 32-byte hex hash/,
    ],
    ['a traceAddress that is not an array', [root, { ...pay([0]), traceAddress: '0' }], /traceAddress is not an array/],
    ['a negative trace index', [root, pay([-1])], /traceAddress holds -1/],
    ['a fractional trace index', [root, pay([0.5])], /traceAddress holds 0.5/],
    ['a trace before its parent', [root, pay([0, 0]), pay([0])], /0\.0 comes before its parent/],
    ['a trace before the top-level one', [pay([0]), root], /before its transaction’s top-level trace/],
    ['two traces at one address', [root, pay([0]), pay([0])], /two traces at traceAddress 0/],
    ['two top-level traces', [root, root], /a second top-level trace/],
    ['an action that is not an object', [root, { ...pay([0]), action: '0x' }], /action is not an object/],
    ['a call without callType', [root, trace(TX1, [0], 'call', { from: SPLITTER, to: ALICE })], /callType is not/],
    ['a bad address', [root, trace(TX1, [0], 'call', callAction('call', SPLITTER, 'alice', '0x1'))], /action.to is/],
    ['a value of 2^256', [root, pay([0], `0x1${'0'.repeat(64)}`)], /2\^256 wei or more/],
    [
      'a create without result',
      [root, trace(TX1, [0], 'create', { from: SPLITTER, value: '0x1' }, { result: null })],
      /result of a successful create is not an object/,
    ],
    [
      'a suicide with a numeric balance',
      [root, trace(TX1, [0], 'suicide', { address: SPLITTER, refundAddress: ALICE, balance: 5 })],
      /action.balance is not a hex quantity/,
    ],
    ['a traceAddress deeper than the EVM allows', [root, pay(Array(MAX_TRACE_DEPTH + 1).fill(0))], /deeper than 1024/],
  ])('refuses %s as malformed', (_name, answer, message) => {
    const fault = faultOf(() => internalFromParityTraces(answer, [TX1]));
    expect(fault.fault).toBe('malformed');
    expect(fault.message).toMatch(message);
  });

  it('refuses an answer that leaves out a transaction of the block', () => {
    const fault = faultOf(() => internalFromParityTraces([root], [TX1, TX2]));
    expect(fault.fault).toBe('malformed');
    expect(fault.message).toMatch(`no trace of transaction ${TX2}`);
  });

  it('refuses more traces per block than the bound', () => {
    const answer = Array(MAX_TRACE_FRAMES_PER_BLOCK + 1).fill(trace(null, [], 'reward', { author: EOA, value: '0x1' }));
    expect(faultOf(() => internalFromParityTraces(answer, [])).fault).toBe('too_large');
  });

  it('places a deep chain of traces in time linear in its size', () => {
    const answer: Frame[] = [root];
    for (let depth = 1; depth <= MAX_TRACE_DEPTH; depth++) answer.push(pay(Array(depth).fill(0), '0x0'));
    const started = performance.now();
    expect(internalFromParityTraces(answer, [TX1])).toEqual(new Map([[TX1, []]]));
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

function tx(overrides: Partial<ChainTx>): ChainTx {
  return {
    hash: TX1,
    index: 0,
    from: EOA,
    to: ALICE,
    value: '0x1',
    nonce: 0,
    status: 1,
    gasUsed: '0x5208',
    gas: '0x5208',
    input: '0x',
    ...overrides,
  };
}

function block(transactions: ChainTx[]): ChainBlock {
  return {
    chainId: 1,
    number: 7,
    hash: `0x${'bb'.repeat(32)}`,
    parentHash: `0x${'aa'.repeat(32)}`,
    timestamp: 0,
    miner: EOA,
    gasUsed: '0x0',
    gasLimit: '0x0',
    transactions,
  };
}

describe('mayHaveInternalTransfers', () => {
  it('is false for an empty block and a block of plain 21,000-gas transfers', () => {
    expect(mayHaveInternalTransfers(block([]))).toBe(false);
    expect(mayHaveInternalTransfers(block([tx({}), tx({ hash: TX2, index: 1 })]))).toBe(false);
  });

  const { gasUsed: _, ...withoutGasUsed } = tx({});
  it.each([
    ['ran code', tx({ gasUsed: '0x5209' })],
    ['was refunded below 21,000 (before London)', tx({ gasUsed: '0x4000' })],
    ['created a contract', tx({ to: null, gasUsed: '0x10000' })],
    ['has no known gasUsed', withoutGasUsed],
    ['has a gasUsed that is not hex', tx({ gasUsed: 'lots' as Hex })],
    [
      'has no known status (before Byzantium)',
      (({ status: _s, ...t }) => ({ ...t, gasUsed: '0x10000' as Hex }))(tx({})),
    ],
  ])('is true when a transaction %s', (_name, changed) => {
    expect(mayHaveInternalTransfers(block([tx({}), changed]))).toBe(true);
  });

  it('is false when the only transaction that ran code reverted', () => {
    expect(mayHaveInternalTransfers(block([tx({ status: 0, gasUsed: '0x10000' })]))).toBe(false);
  });
});

describe('fetchInternalTransfers', () => {
  it('asks each method for the block by hex number and parses its answer', async () => {
    const asked: unknown[] = [];
    const send = async (method: string, params: readonly unknown[]): Promise<unknown> => {
      asked.push([method, params]);
      return method === 'trace_block' ? parityFixture() : callTracerFixture();
    };
    expect(await fetchInternalTransfers(send, 'debug_traceBlockByNumber', 26, [TX1, TX2])).toEqual(EXPECTED);
    expect(await fetchInternalTransfers(send, 'trace_block', 26, [TX1, TX2])).toEqual(EXPECTED);
    expect(asked).toEqual([
      ['debug_traceBlockByNumber', ['0x1a', { tracer: 'callTracer' }]],
      ['trace_block', ['0x1a']],
    ]);
  });

  it('takes a hash of txHashes that is not one for the caller’s mistake, not the node’s', async () => {
    const send = async (): Promise<unknown> => [];
    await expect(fetchInternalTransfers(send, 'trace_block', 9, ['0x12'])).rejects.toThrow(TypeError);
    await expect(fetchInternalTransfers(send, 'trace_block', -1, [])).rejects.toThrow(TypeError);
  });

  it('names the method and block in what it refuses', async () => {
    const send = async (): Promise<unknown> => 'oops';
    await expect(fetchInternalTransfers(send, 'trace_block', 9, [TX1])).rejects.toThrow(
      /trace_block of block 9: not an array of traces: oops/,
    );
  });
});

describe('probeTraceMethod', () => {
  const unsupported = (method: string): RpcFaultError =>
    new RpcFaultError('node_error', `${method}: method not found`, { rpcCode: -32601, rpcMessage: 'Method not found' });

  it('falls back to trace_block when the node does not serve debug_traceBlockByNumber', async () => {
    const send = async (method: string): Promise<unknown> => {
      if (method === 'debug_traceBlockByNumber') throw unsupported(method);
      return parityFixture();
    };
    expect(await probeTraceMethod(send, 7)).toBe('trace_block');
  });

  it('takes whichever method the node answered faster, where it serves both', async () => {
    let clock = 0;
    const now = vi.spyOn(performance, 'now').mockImplementation(() => clock);
    try {
      for (const [slow, fast] of [
        ['debug_traceBlockByNumber', 'trace_block'],
        ['trace_block', 'debug_traceBlockByNumber'],
      ] as const) {
        const send = async (method: string): Promise<unknown> => {
          clock += method === slow ? 140 : 2;
          return method === 'trace_block' ? parityFixture() : callTracerFixture();
        };
        expect(await probeTraceMethod(send, 7)).toBe(fast);
      }
    } finally {
      now.mockRestore();
    }
  });

  it('is undefined when the node serves neither', async () => {
    const send = async (method: string): Promise<unknown> => {
      throw unsupported(method);
    };
    expect(await probeTraceMethod(send, 7)).toBeUndefined();
  });

  it('rejects rather than concludes when a method failed for another reason', async () => {
    const send = async (method: string): Promise<unknown> => {
      if (method === 'trace_block') throw unsupported(method);
      throw new RpcFaultError('timeout', 'no answer in 10000 ms');
    };
    await expect(probeTraceMethod(send, 7)).rejects.toThrow(/no answer/);
  });

  it('does not take a malformed answer for a served method', async () => {
    const send = async (method: string): Promise<unknown> => {
      if (method === 'trace_block') throw unsupported(method);
      return [{ txHash: TX1, result: 'not a frame' }];
    };
    await expect(probeTraceMethod(send, 7)).rejects.toThrow(/not a call frame/);
  });
});
