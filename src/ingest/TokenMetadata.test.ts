import { describe, expect, it } from 'vitest';
import { RpcFaultError } from '../domain/errors.ts';
import type { Hex } from '../domain/types.ts';
import {
  decodeTokenDecimals,
  decodeTokenText,
  MAX_ANSWER_BYTES,
  MAX_NAME_BYTES,
  MAX_SYMBOL_BYTES,
  TokenMetadata,
  type TokenMetadataOptions,
} from './TokenMetadata.ts';

// Decoding and bookkeeping with a `send` of the test's own; test/tokenMetadata.test.ts runs the
// same class against a real anvil and real token contracts.

function word(n: bigint | number): string {
  return BigInt(n).toString(16).padStart(64, '0');
}

function hexOf(bytes: Uint8Array | string): string {
  return Buffer.from(bytes).toString('hex');
}

/** An ABI-encoded `string` return value: offset 0x20, length, bytes padded to a word. */
function abiString(text: Uint8Array | string): string {
  const payload = hexOf(text);
  const padded = payload.padEnd(Math.ceil(payload.length / 64) * 64, '0');
  return `0x${word(32)}${word(payload.length / 2)}${padded}`;
}

/** A `bytes32` return value: the bytes, then zeros. */
function bytes32(text: Uint8Array | string): string {
  return `0x${hexOf(text).padEnd(64, '0')}`;
}

describe('decodeTokenText', () => {
  it.each([
    ['an ABI string', abiString('TST'), 'TST'],
    ['an ABI string of exactly one word', abiString('A'.repeat(32)), 'A'.repeat(32)],
    ['an ABI string of several words', abiString('Wrapped Ether on a long name'), 'Wrapped Ether on a long name'],
    ['a bytes32 (MKR)', bytes32('MKR'), 'MKR'],
    ['a bytes32 with no zero byte', bytes32('B'.repeat(32)), 'B'.repeat(32)],
    ['multibyte UTF-8', abiString('Ξther ✓'), 'Ξther ✓'],
    ['an emoji with a zero-width joiner', abiString('👩‍💻'), '👩‍💻'],
    ['whitespace around the text, trimmed', abiString('  USD Coin \t\n'), 'USD Coin'],
    ['upper-case hex digits', abiString('TST').toUpperCase().replace('0X', '0x'), 'TST'],
  ])('reads %s', (_, answer, text) => {
    expect(decodeTokenText(answer, MAX_NAME_BYTES)).toBe(text);
  });

  it('reads an ABI string at an offset past the first word', () => {
    const answer = `0x${word(64)}${word(0)}${word(3)}${hexOf('TST').padEnd(64, '0')}`;
    expect(decodeTokenText(answer, MAX_SYMBOL_BYTES)).toBe('TST');
  });

  it.each([
    ['a length past the end of the answer', `0x${word(32)}${word(33)}${hexOf('TST').padEnd(64, '0')}`],
    ['a length of 2^255', `0x${word(32)}${word(2n ** 255n)}${hexOf('TST').padEnd(64, '0')}`],
    ['a length of 2^32 + 3 (no wrap to 3)', `0x${word(32)}${word(2n ** 32n + 3n)}${hexOf('TST').padEnd(64, '0')}`],
    ['an offset past the end of the answer', `0x${word(96)}${word(3)}${hexOf('TST').padEnd(64, '0')}`],
    ['an offset of 2^256 - 1', `0x${'f'.repeat(64)}${word(3)}${hexOf('TST').padEnd(64, '0')}`],
    ['an offset into the offset word itself', `0x${word(0)}${word(3)}${hexOf('TST').padEnd(64, '0')}`],
    ['an offset that is not word-aligned', `0x${word(33)}${word(3)}${hexOf('TST').padEnd(64, '0')}`],
    ['invalid UTF-8 (a lone 0xff)', abiString(Uint8Array.of(0x54, 0xff, 0x54))],
    ['invalid UTF-8 (a cut sequence)', abiString(Uint8Array.of(0x54, 0xc3))],
    ['invalid UTF-8 (an overlong slash)', abiString(Uint8Array.of(0xc0, 0xaf))],
    ['invalid UTF-8 (a surrogate)', abiString(Uint8Array.of(0xed, 0xa0, 0x80))],
    ['invalid UTF-8 in a bytes32', bytes32(Uint8Array.of(0x4d, 0xfe))],
    ['a NUL inside', abiString('MK\0R')],
    ['a NUL inside a bytes32', bytes32('MK\0R')],
    ['an escape (terminal control)', abiString('\x1b[31mUSDT')],
    ['a newline inside', abiString('US\nDT')],
    ['DEL', abiString('USD\x7f')],
    ['a C1 control (U+0085)', abiString('USD\u0085T')],
    ['a right-to-left override (U+202E)', abiString('USD\u202eT')],
    ['a left-to-right embedding (U+202A)', abiString('\u202aUSDT')],
    ['a first-strong isolate (U+2068)', abiString('USD\u2068T')],
    ['a pop directional isolate (U+2069)', abiString('USDT\u2069')],
    ['a right-to-left mark (U+200F)', abiString('USD\u200fT')],
    ['only whitespace', abiString('   ')],
    ['an empty string', abiString('')],
    ['an all-zero bytes32', bytes32('')],
    ['an empty answer', '0x'],
    ['odd-length hex', '0x123'],
    ['non-hex digits', `0x${'zz'.repeat(32)}`],
    ['no 0x prefix', word(3)],
    ['a number', 3],
    ['null', null],
    ['an object', { result: abiString('TST') }],
    ['an answer of one and a half words', `0x${'41'.repeat(48)}`],
    ['an answer of less than a word', `0x${'41'.repeat(31)}`],
    ['an answer past MAX_ANSWER_BYTES', `0x${word(32)}${word(3)}${hexOf('TST').padEnd(2 * MAX_ANSWER_BYTES, '0')}`],
  ])('refuses %s', (_, answer) => {
    expect(decodeTokenText(answer, MAX_NAME_BYTES)).toBeUndefined();
  });

  it('refuses a text longer than the cap rather than cutting it', () => {
    expect(decodeTokenText(abiString('S'.repeat(MAX_SYMBOL_BYTES)), MAX_SYMBOL_BYTES)).toBe('S'.repeat(64));
    expect(decodeTokenText(abiString('S'.repeat(MAX_SYMBOL_BYTES + 1)), MAX_SYMBOL_BYTES)).toBeUndefined();
    expect(decodeTokenText(abiString('N'.repeat(MAX_NAME_BYTES + 1)), MAX_NAME_BYTES)).toBeUndefined();
  });

  it('takes time linear in the answer, however large its claims', () => {
    const answer = `0x${word(32)}${word(2n ** 256n - 1n)}${'41'.repeat(MAX_ANSWER_BYTES - 64)}`;
    const started = performance.now();
    for (let i = 0; i < 1000; i++) expect(decodeTokenText(answer, MAX_NAME_BYTES)).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('decodeTokenDecimals', () => {
  it.each([
    [0, 0],
    [6, 6],
    [18, 18],
    [255, 255],
  ])('reads %i', (value, decimals) => {
    expect(decodeTokenDecimals(`0x${word(value)}`)).toBe(decimals);
  });

  it.each([
    ['256', `0x${word(256)}`],
    ['2^32', `0x${word(2n ** 32n)}`],
    ['2^32 + 18 (no wrap to 18)', `0x${word(2n ** 32n + 18n)}`],
    ['2^256 - 1', `0x${'f'.repeat(64)}`],
    ['an empty answer', '0x'],
    ['less than a word', `0x${word(18).slice(2)}`],
    ['two words', `0x${word(18)}${word(0)}`],
    ['odd-length hex', `0x${word(18)}0`],
    ['a number', 18],
    ['an answer past MAX_ANSWER_BYTES', `0x${'0'.repeat(2 * MAX_ANSWER_BYTES + 2)}`],
  ])('refuses %s', (_, answer) => {
    expect(decodeTokenDecimals(answer)).toBeUndefined();
  });
});

const SYMBOL = '0x95d89b41';
const DECIMALS = '0x313ce567';
const NAME = '0x06fdde03';

function token(n: number): Hex {
  return `0x${n.toString(16).padStart(40, '0')}`;
}

const revert = (): RpcFaultError =>
  new RpcFaultError('node_error', 'eth_call: execution reverted', {
    method: 'eth_call',
    rpcCode: 3,
    rpcMessage: 'execution reverted',
  });

/** The answers of a test chain: per token, per selector, a result or an error to reject with; anything not listed reverts. */
function answersOf(table: Record<string, Partial<Record<string, unknown>>>) {
  const calls: Array<{ to: string; data: string }> = [];
  const send: TokenMetadataOptions['send'] = async (method, params) => {
    expect(method).toBe('eth_call');
    const [call, tag] = params as [{ to: string; data: string }, string];
    expect(tag).toBe('latest');
    calls.push(call);
    const answer = table[call.to]?.[call.data];
    if (answer === undefined) throw revert();
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return { send, calls };
}

const TST = { [SYMBOL]: abiString('TST'), [DECIMALS]: `0x${word(18)}`, [NAME]: abiString('Test Token') };

/** A `send` whose answers the test releases one by one, to hold lookups in flight. */
function heldSend() {
  const pending: Array<{ to: string; release: () => void }> = [];
  const send: TokenMetadataOptions['send'] = (_method, params) => {
    const to = (params[0] as { to: string }).to;
    return new Promise((resolve) => pending.push({ to, release: () => resolve('0x') }));
  };
  const inFlight = (): string[] => [...new Set(pending.map((p) => p.to))];
  const release = (to: string): void => {
    for (const p of pending.filter((p) => p.to === to)) p.release();
    pending.splice(0, pending.length, ...pending.filter((p) => p.to !== to));
  };
  return { send, inFlight, release };
}

describe('TokenMetadata', () => {
  it('answers undefined at first, then the info read with three eth_calls, and asks no more', async () => {
    const { send, calls } = answersOf({ [token(1)]: TST });
    const outcomes: string[] = [];
    const metadata = new TokenMetadata({ send, onLookup: (_, outcome) => outcomes.push(outcome) });
    expect(metadata.get(token(1))).toBeUndefined();
    expect(metadata.get(token(1))).toBeUndefined(); // in flight: not asked twice
    await metadata.idle();
    expect(metadata.get(token(1))).toEqual({ symbol: 'TST', decimals: 18, name: 'Test Token' });
    expect(metadata.get(token(1))).toEqual({ symbol: 'TST', decimals: 18, name: 'Test Token' });
    expect(calls.map((c) => c.data).sort()).toEqual([NAME, DECIMALS, SYMBOL].sort());
    expect(calls.every((c) => c.to === token(1))).toBe(true);
    expect(outcomes).toEqual(['ok']);
  });

  it('keeps the fields that answered when others revert or answer 0x', async () => {
    const { send } = answersOf({
      [token(1)]: { [DECIMALS]: `0x${word(6)}` },
      [token(2)]: { [SYMBOL]: '0x', [DECIMALS]: '0x', [NAME]: abiString('Only A Name') },
    });
    const metadata = new TokenMetadata({ send });
    metadata.get(token(1));
    metadata.get(token(2));
    await metadata.idle();
    expect(metadata.get(token(1))).toEqual({ decimals: 6 });
    expect(metadata.get(token(2))).toEqual({ name: 'Only A Name' });
  });

  it('keeps the other fields when one answer is refused', async () => {
    const { send } = answersOf({
      [token(1)]: { [SYMBOL]: abiString('US\u202eDT'), [DECIMALS]: `0x${word(256)}`, [NAME]: abiString('Fine') },
    });
    const metadata = new TokenMetadata({ send });
    metadata.get(token(1));
    await metadata.idle();
    expect(metadata.get(token(1))).toEqual({ name: 'Fine' });
  });

  it('caches a contract without metadata as {} and does not look it up again', async () => {
    const { send, calls } = answersOf({});
    const outcomes: string[] = [];
    const metadata = new TokenMetadata({ send, onLookup: (_, outcome) => outcomes.push(outcome) });
    metadata.get(token(1));
    await metadata.idle();
    expect(metadata.get(token(1))).toEqual({});
    expect(metadata.get(token(1))).toEqual({});
    await metadata.idle();
    expect(calls).toHaveLength(3);
    expect(outcomes).toEqual(['none']);
  });

  it.each([
    ['a timeout', new RpcFaultError('timeout', 'eth_call: no whole answer within 10000 ms')],
    ['a broken link', new RpcFaultError('transport', 'eth_call: connection refused')],
    ['an HTTP error', new RpcFaultError('http_status', 'eth_call: HTTP 503')],
    ['an oversized answer', new RpcFaultError('too_large', 'eth_call: answer past 134217728 bytes')],
    ['an unreadable answer', new RpcFaultError('invalid_json', 'eth_call: not JSON')],
    [
      'a rate limit of the node',
      new RpcFaultError('node_error', 'eth_call: limit exceeded', { rpcCode: -32005, rpcMessage: 'limit exceeded' }),
    ],
    ['an error that is no RpcFaultError', new Error('socket hang up')],
  ])('after %s on one field, caches nothing and looks the token up again after retryMs', async (_, fault) => {
    let now = 1_000;
    const table: Record<string, Record<string, unknown>> = { [token(1)]: { ...TST, [NAME]: fault } };
    const { send, calls } = answersOf(table);
    const outcomes: string[] = [];
    const metadata = new TokenMetadata({
      send,
      retryMs: 60_000,
      now: () => now,
      onLookup: (_, outcome) => outcomes.push(outcome),
    });
    expect(metadata.get(token(1))).toBeUndefined();
    await metadata.idle();
    expect(outcomes).toEqual(['failed']);
    now += 59_999;
    expect(metadata.get(token(1))).toBeUndefined();
    await metadata.idle();
    expect(calls).toHaveLength(3); // no lookup before retryMs
    table[token(1)] = TST;
    now += 1;
    expect(metadata.get(token(1))).toBeUndefined();
    await metadata.idle();
    expect(calls).toHaveLength(6);
    expect(metadata.get(token(1))).toEqual({ symbol: 'TST', decimals: 18, name: 'Test Token' });
    expect(outcomes).toEqual(['failed', 'ok']);
  });

  it('treats a send that throws at once as a failed lookup, never throwing from get', async () => {
    const outcomes: string[] = [];
    const metadata = new TokenMetadata({
      send: () => {
        throw new RpcFaultError('transport', 'eth_call: the client was closed');
      },
      onLookup: (_, outcome) => outcomes.push(outcome),
    });
    expect(metadata.get(token(1))).toBeUndefined();
    await metadata.idle();
    expect(metadata.get(token(1))).toBeUndefined();
    expect(outcomes).toEqual(['failed']);
  });

  it('survives an onLookup that throws', async () => {
    const { send } = answersOf({ [token(1)]: TST });
    const metadata = new TokenMetadata({
      send,
      onLookup: () => {
        throw new Error('metric broke');
      },
    });
    metadata.get(token(1));
    await metadata.idle();
    expect(metadata.get(token(1))).toEqual({ symbol: 'TST', decimals: 18, name: 'Test Token' });
  });

  it('reports how long a lookup took, in seconds', async () => {
    let now = 0;
    const { send } = answersOf({ [token(1)]: TST });
    const seconds: number[] = [];
    const metadata = new TokenMetadata({
      send: async (method, params) => {
        now += 250;
        return send(method, params);
      },
      now: () => now,
      onLookup: (s) => seconds.push(s),
    });
    metadata.get(token(1));
    await metadata.idle();
    expect(seconds).toEqual([0.75]);
  });

  it('never looks up what is not a lowercase address', async () => {
    const { send, calls } = answersOf({});
    const metadata = new TokenMetadata({ send });
    for (const bad of ['0xABCDEF0000000000000000000000000000000001', '0x01', 'nonsense', `0x${'0'.repeat(41)}`]) {
      expect(metadata.get(bad as Hex)).toBeUndefined();
    }
    await metadata.idle();
    expect(calls).toHaveLength(0);
  });

  it('keeps at most maxTokens tokens, forgetting the least recently used', async () => {
    const { send, calls } = answersOf({ [token(1)]: TST, [token(2)]: TST, [token(3)]: TST });
    const metadata = new TokenMetadata({ send, maxTokens: 2 });
    metadata.get(token(1));
    metadata.get(token(2));
    await metadata.idle();
    expect(metadata.get(token(1))).toBeDefined(); // token 2 is now the least recently used
    metadata.get(token(3));
    await metadata.idle();
    expect(calls).toHaveLength(9);
    expect(metadata.get(token(1))).toBeDefined();
    expect(metadata.get(token(3))).toBeDefined();
    expect(metadata.get(token(2))).toBeUndefined(); // forgotten: looked up again
    await metadata.idle();
    expect(calls).toHaveLength(12);
    expect(metadata.get(token(2))).toBeDefined();
  });

  it('remembers at most maxTokens failures, forgetting the oldest', async () => {
    const { send, calls } = answersOf({
      [token(1)]: { [SYMBOL]: new RpcFaultError('timeout', 'eth_call: timeout') },
      [token(2)]: { [SYMBOL]: new RpcFaultError('timeout', 'eth_call: timeout') },
      [token(3)]: { [SYMBOL]: new RpcFaultError('timeout', 'eth_call: timeout') },
    });
    const metadata = new TokenMetadata({ send, maxTokens: 2, now: () => 0 });
    for (const n of [1, 2, 3]) metadata.get(token(n));
    await metadata.idle();
    expect(calls).toHaveLength(9);
    for (const n of [2, 3]) metadata.get(token(n)); // remembered: not asked before retryMs
    await metadata.idle();
    expect(calls).toHaveLength(9);
    metadata.get(token(1)); // forgotten: asked again
    await metadata.idle();
    expect(calls).toHaveLength(12);
  });

  it('runs at most `concurrency` lookups at once, the next ones in order as slots free', async () => {
    const held = heldSend();
    const metadata = new TokenMetadata({ send: held.send, concurrency: 2 });
    for (const n of [1, 2, 3, 4]) metadata.get(token(n));
    expect(held.inFlight()).toEqual([token(1), token(2)]);
    let idle = false;
    const idled = metadata.idle().then(() => {
      idle = true;
    });
    held.release(token(2));
    await Promise.resolve();
    await expect.poll(() => held.inFlight(), { timeout: 1000 }).toEqual([token(1), token(3)]);
    held.release(token(1));
    await expect.poll(() => held.inFlight(), { timeout: 1000 }).toEqual([token(3), token(4)]);
    expect(idle).toBe(false);
    held.release(token(3));
    held.release(token(4));
    await idled;
    expect(metadata.get(token(4))).toEqual({});
  });

  it('drops lookups past maxQueued, and looks those tokens up when they are seen again', async () => {
    const held = heldSend();
    const metadata = new TokenMetadata({ send: held.send, concurrency: 1, maxQueued: 2 });
    for (const n of [1, 2, 3, 4]) expect(metadata.get(token(n))).toBeUndefined();
    expect(held.inFlight()).toEqual([token(1)]);
    for (const n of [1, 2, 3]) {
      held.release(token(n));
      await expect.poll(() => held.inFlight(), { timeout: 1000 }).not.toContain(token(n));
    }
    await metadata.idle();
    expect(metadata.get(token(3))).toEqual({});
    expect(metadata.get(token(4))).toBeUndefined(); // dropped from the full queue: asked now
    expect(held.inFlight()).toEqual([token(4)]);
    held.release(token(4));
    await metadata.idle();
    expect(metadata.get(token(4))).toEqual({});
  });

  it('after close, answers undefined, starts nothing and keeps no late answer', async () => {
    const held = heldSend();
    const metadata = new TokenMetadata({ send: held.send, concurrency: 1 });
    metadata.get(token(1));
    metadata.get(token(2));
    metadata.close();
    expect(metadata.get(token(3))).toBeUndefined();
    held.release(token(1));
    await metadata.idle();
    expect(held.inFlight()).toEqual([]);
    expect(metadata.get(token(1))).toBeUndefined();
  });

  it('idle() resolves at once when nothing is in flight', async () => {
    const metadata = new TokenMetadata({ send: answersOf({}).send });
    await metadata.idle();
  });

  it.each([
    [{ maxTokens: 0 }, /maxTokens must be a positive integer, got 0/],
    [{ concurrency: 1.5 }, /concurrency must be a positive integer, got 1\.5/],
    [{ maxQueued: -1 }, /maxQueued must be a positive integer, got -1/],
    [{ retryMs: -1 }, /retryMs must be a finite number of ms ≥ 0, got -1/],
    [{ retryMs: Number.NaN }, /retryMs must be a finite number of ms ≥ 0, got NaN/],
  ])('refuses %o at construction, naming the option', (options, message) => {
    expect(() => new TokenMetadata({ send: answersOf({}).send, ...options })).toThrow(TypeError);
    expect(() => new TokenMetadata({ send: answersOf({}).send, ...options })).toThrow(message);
  });
});
