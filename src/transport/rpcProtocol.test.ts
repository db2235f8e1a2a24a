import { describe, expect, it } from 'vitest';
import {
  answerText,
  notificationText,
  type RpcCall,
  RpcErrorCode,
  type RpcFrame,
  readRpcFrame,
  rpcError,
  toQuantity,
} from './rpcProtocol.ts';

const MAX_BATCH = 10;

function single(text: string): RpcCall {
  const frame = readRpcFrame(text, MAX_BATCH);
  if (frame.kind !== 'single') throw new Error(`not a single call: ${JSON.stringify(frame)}`);
  return frame.call;
}

function frameError(frame: RpcFrame): { code: number; message: string } {
  if (frame.kind !== 'error') throw new Error(`not an error frame: ${JSON.stringify(frame)}`);
  return frame.error;
}

describe('readRpcFrame', () => {
  it('reads a call with its id, method and params', () => {
    expect(single('{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}')).toEqual({
      ok: true,
      id: 1,
      notification: false,
      method: 'eth_chainId',
      params: [],
    });
    expect(single('{"jsonrpc":"2.0","id":"a","method":"eth_subscribe","params":["newHeads"]}')).toMatchObject({
      ok: true,
      id: 'a',
      params: ['newHeads'],
    });
  });

  it('reads absent or null params as no params', () => {
    expect(single('{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}')).toMatchObject({ ok: true, params: [] });
    expect(single('{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":null}')).toMatchObject({
      ok: true,
      params: [],
    });
  });

  it('reads a call without an id as a notification, and an id of null as a call answered with null', () => {
    expect(single('{"jsonrpc":"2.0","method":"eth_chainId"}')).toMatchObject({
      ok: true,
      id: null,
      notification: true,
    });
    expect(single('{"jsonrpc":"2.0","id":null,"method":"eth_chainId"}')).toMatchObject({
      ok: true,
      id: null,
      notification: false,
    });
  });

  it.each([['not json'], ['{"jsonrpc":"2.0",'], [''], ['{"a":1}}']])('answers %j with a parse error', (text) => {
    const error = frameError(readRpcFrame(text, MAX_BATCH));
    expect(error.code).toBe(RpcErrorCode.parseError);
    expect(error.code).toBe(-32_700);
  });

  it.each([['1'], ['"eth_chainId"'], ['null'], ['true']])('refuses %s, which is not an object', (text) => {
    expect(single(text)).toEqual({
      ok: false,
      id: null,
      error: { code: -32_600, message: expect.any(String) },
    });
  });

  it.each([
    ['missing', '{"id":3,"method":"eth_chainId"}'],
    ['1.0', '{"jsonrpc":"1.0","id":3,"method":"eth_chainId"}'],
    ['a number', '{"jsonrpc":2,"id":3,"method":"eth_chainId"}'],
  ])('refuses jsonrpc %s, keeping the id', (_what, text) => {
    expect(single(text)).toEqual({ ok: false, id: 3, error: { code: -32_600, message: 'jsonrpc must be "2.0"' } });
  });

  it.each([
    ['missing', '{"jsonrpc":"2.0","id":4}'],
    ['a number', '{"jsonrpc":"2.0","id":4,"method":7}'],
    ['empty', '{"jsonrpc":"2.0","id":4,"method":""}'],
    ['starting with a digit', '{"jsonrpc":"2.0","id":4,"method":"1eth"}'],
    ['with a dot', '{"jsonrpc":"2.0","id":4,"method":"eth.call"}'],
    ['of 65 characters', `{"jsonrpc":"2.0","id":4,"method":"${'a'.repeat(65)}"}`],
  ])('refuses a method %s', (_what, text) => {
    expect(single(text)).toMatchObject({ ok: false, id: 4, error: { code: -32_600 } });
  });

  it('accepts a method of 64 characters', () => {
    expect(single(`{"jsonrpc":"2.0","id":4,"method":"${'a'.repeat(64)}"}`)).toMatchObject({ ok: true });
  });

  it.each([
    ['an object', '{"a":1}'],
    ['a string', '"x"'],
    ['a number', '1'],
    ['true', 'true'],
  ])('answers params that are %s with -32602', (_what, params) => {
    expect(single(`{"jsonrpc":"2.0","id":5,"method":"eth_chainId","params":${params}}`)).toEqual({
      ok: false,
      id: 5,
      error: { code: -32_602, message: 'params must be an array' },
    });
  });

  it.each([
    ['an object', '{}'],
    ['a list', '[1]'],
    ['true', 'true'],
    ['a string of 129 characters', JSON.stringify('x'.repeat(129))],
  ])('refuses an id that is %s, answering with id null', (_what, id) => {
    const call = single(`{"jsonrpc":"2.0","id":${id},"method":"eth_chainId"}`);
    expect(call).toMatchObject({ ok: false, id: null, error: { code: -32_600 } });
  });

  it('accepts a string id of 128 characters and a fractional or negative number', () => {
    const long = 'x'.repeat(128);
    expect(single(`{"jsonrpc":"2.0","id":"${long}","method":"eth_chainId"}`)).toMatchObject({ ok: true, id: long });
    expect(single('{"jsonrpc":"2.0","id":-1.5,"method":"eth_chainId"}')).toMatchObject({ ok: true, id: -1.5 });
  });

  it('refuses an empty batch with -32600', () => {
    expect(frameError(readRpcFrame('[]', MAX_BATCH))).toMatchObject({ code: -32_600, message: 'empty batch' });
  });

  it('refuses a batch over the limit with one -32005 that names its size', () => {
    const batch = Array.from({ length: MAX_BATCH + 1 }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'eth_chainId' }));
    const error = frameError(readRpcFrame(JSON.stringify(batch), MAX_BATCH));
    expect(error.code).toBe(-32_005);
    expect(error.message).toContain(`${MAX_BATCH + 1} requests`);
    expect(error.message).toContain(`at most ${MAX_BATCH}`);
  });

  it('reads a batch of exactly the limit', () => {
    const batch = Array.from({ length: MAX_BATCH }, (_, i) => ({ jsonrpc: '2.0', id: i, method: 'eth_chainId' }));
    const frame = readRpcFrame(JSON.stringify(batch), MAX_BATCH);
    expect(frame.kind === 'batch' && frame.calls.length).toBe(MAX_BATCH);
  });

  it('reads each call of a batch on its own: valid ones, invalid ones and notifications, in order', () => {
    const frame = readRpcFrame(
      JSON.stringify([
        { jsonrpc: '2.0', id: 'a', method: 'eth_chainId' },
        7,
        { jsonrpc: '2.0', method: 'net_version' },
        { jsonrpc: '2.0', id: 'b', method: 'eth_call', params: { to: '0x' } },
        { jsonrpc: '1.0', id: 'c', method: 'eth_chainId' },
        [],
      ]),
      MAX_BATCH,
    );
    expect(frame.kind).toBe('batch');
    if (frame.kind !== 'batch') return;
    expect(frame.calls).toEqual([
      { ok: true, id: 'a', notification: false, method: 'eth_chainId', params: [] },
      { ok: false, id: null, error: { code: -32_600, message: expect.any(String) } },
      { ok: true, id: null, notification: true, method: 'net_version', params: [] },
      { ok: false, id: 'b', error: { code: -32_602, message: 'params must be an array' } },
      { ok: false, id: 'c', error: { code: -32_600, message: 'jsonrpc must be "2.0"' } },
      { ok: false, id: null, error: { code: -32_600, message: expect.any(String) } },
    ]);
  });
});

describe('answerText', () => {
  it('writes a result with its id', () => {
    expect(JSON.parse(answerText(1, { result: '0x1' }))).toEqual({ jsonrpc: '2.0', id: 1, result: '0x1' });
    expect(JSON.parse(answerText('x', { result: { a: [1] } }))).toEqual({
      jsonrpc: '2.0',
      id: 'x',
      result: { a: [1] },
    });
  });

  it('writes an absent result as null, and keeps false', () => {
    expect(JSON.parse(answerText(1, { result: undefined }))).toEqual({ jsonrpc: '2.0', id: 1, result: null });
    expect(JSON.parse(answerText(1, { result: false }))).toEqual({ jsonrpc: '2.0', id: 1, result: false });
  });

  it('writes an error with its code, message and data, and id null when there is none', () => {
    expect(JSON.parse(answerText(null, { error: rpcError(-32_700, 'not JSON') }))).toEqual({
      jsonrpc: '2.0',
      id: null,
      error: { code: -32_700, message: 'not JSON' },
    });
    expect(JSON.parse(answerText(2, { error: rpcError(3, 'execution reverted', '0x08c379a0') }))).toEqual({
      jsonrpc: '2.0',
      id: 2,
      error: { code: 3, message: 'execution reverted', data: '0x08c379a0' },
    });
  });
});

describe('rpcError', () => {
  it('bounds the message at 500 characters and leaves data out when there is none', () => {
    const error = rpcError(-32_602, 'x'.repeat(600));
    expect(error.message).toHaveLength(500);
    expect('data' in error).toBe(false);
  });
});

describe('notificationText', () => {
  it('writes an eth_subscription notification around a result that is already JSON', () => {
    const text = notificationText('0xabc', JSON.stringify({ number: '0x1', removed: false }));
    expect(JSON.parse(text)).toEqual({
      jsonrpc: '2.0',
      method: 'eth_subscription',
      params: { subscription: '0xabc', result: { number: '0x1', removed: false } },
    });
    expect(JSON.parse(notificationText('0xabc', '"0x12"'))).toMatchObject({ params: { result: '0x12' } });
  });
});

describe('toQuantity', () => {
  it('writes hex without leading zeros', () => {
    expect(toQuantity(0)).toBe('0x0');
    expect(toQuantity(255)).toBe('0xff');
    expect(toQuantity(31_337)).toBe('0x7a69');
    expect(toQuantity(2n ** 64n)).toBe('0x10000000000000000');
  });
});
