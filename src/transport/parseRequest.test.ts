import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { createFrameGenerator } from '../../test/helpers/fuzzFrames.ts';
import type { GatewayError } from '../domain/errors.ts';
import { pack } from '../fanout/encode.ts';
import { type ParseResult, parseRequest, type Request, type RequestId } from './parseRequest.ts';

const A = '0x00000000000000000000000000000000000000aa';
const B = '0x00000000000000000000000000000000000000bb';
const CHECKSUMMED = '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed';

/** The exact bytes of a view as an ArrayBuffer, as uWS hands a frame over. */
function arrayBufferOf(view: Uint8Array): ArrayBuffer {
  return view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength) as ArrayBuffer;
}

function fromText(text: string): ParseResult {
  return parseRequest(arrayBufferOf(Buffer.from(text, 'utf8')), false);
}

function fromJson(message: unknown): ParseResult {
  return fromText(JSON.stringify(message));
}

function fromMsgpack(message: unknown): ParseResult {
  return parseRequest(arrayBufferOf(pack(message)), true);
}

function accepted(result: ParseResult): Request {
  if (!result.ok) throw new Error(`expected a request, got ${result.error.code}: ${result.error.message}`);
  return result.request;
}

function rejected(result: ParseResult): { readonly id?: RequestId; readonly error: GatewayError } {
  if (result.ok) throw new Error(`expected an error, got ${JSON.stringify(result.request)}`);
  return result;
}

describe('parseRequest: valid requests', () => {
  it('reads a JSON text frame and a MessagePack binary frame to the same request', () => {
    const message = { op: 'subscribe', id: 1, channel: 'blocks', chainId: 31_337, full: true };
    expect(accepted(fromMsgpack(message))).toEqual(accepted(fromJson(message)));
  });

  it('reads an ArrayBuffer sliced out of a larger buffer without its neighbours', () => {
    const padded = Buffer.from(`xxxx${JSON.stringify({ op: 'ping', id: 7 })}yyyy`, 'utf8');
    const view = padded.subarray(4, padded.length - 4);
    expect(accepted(parseRequest(arrayBufferOf(view), false))).toEqual({ op: 'ping', id: 7 });
  });

  it('defaults a blocks subscription to full:false, fullInput:false, confirmations:0', () => {
    expect(accepted(fromJson({ op: 'subscribe', channel: 'blocks' }))).toStrictEqual({
      op: 'subscribe',
      channel: 'blocks',
      full: false,
      fullInput: false,
      confirmations: 0,
    });
  });

  it('keeps full, fullInput, chainId, confirmations and from of a blocks subscription', () => {
    const request = accepted(
      fromMsgpack({
        op: 'subscribe',
        id: 3,
        channel: 'blocks',
        chainId: 1,
        full: true,
        fullInput: true,
        confirmations: 12,
        from: '1:5:0xabc',
      }),
    );
    expect(request).toStrictEqual({
      op: 'subscribe',
      id: 3,
      channel: 'blocks',
      chainId: 1,
      full: true,
      fullInput: true,
      confirmations: 12,
      from: '1:5:0xabc',
    });
  });

  it('lowercases and deduplicates the addresses of an activity subscription', () => {
    const request = accepted(
      fromJson({ op: 'subscribe', channel: 'activity', addresses: [A, A.toUpperCase().replace('0X', '0x'), B] }),
    );
    expect(request).toStrictEqual({
      op: 'subscribe',
      channel: 'activity',
      confirmations: 0,
      addresses: [A, B],
      pending: false,
    });
  });

  it('accepts a checksummed address and gives it lowercase', () => {
    const request = accepted(fromMsgpack({ op: 'subscribe', channel: 'activity', addresses: [CHECKSUMMED] }));
    expect(request).toMatchObject({ addresses: [CHECKSUMMED.toLowerCase()] });
  });

  it('accepts an activity subscription with an empty address list', () => {
    expect(accepted(fromJson({ op: 'subscribe', channel: 'activity', addresses: [] }))).toMatchObject({
      addresses: [],
    });
  });

  it('leaves kinds undefined when none are named, and gives a set when they are', () => {
    const all = accepted(fromJson({ op: 'subscribe', channel: 'activity', addresses: [A] }));
    expect(all).not.toHaveProperty('kinds');
    const some = accepted(
      fromJson({ op: 'subscribe', channel: 'activity', addresses: [A], kinds: ['erc20', 'tx', 'erc20'] }),
    );
    expect(some).toMatchObject({ kinds: new Set(['erc20', 'tx']) });
  });

  it('keeps pending and confirmations of an activity subscription', () => {
    expect(
      accepted(fromJson({ op: 'subscribe', channel: 'activity', addresses: [A], pending: true, confirmations: 2 })),
    ).toMatchObject({ pending: true, confirmations: 2 });
  });

  it('keeps finality of either channel', () => {
    expect(accepted(fromJson({ op: 'subscribe', channel: 'blocks', finality: 'safe' }))).toMatchObject({
      finality: 'safe',
      confirmations: 0,
    });
    expect(
      accepted(fromJson({ op: 'subscribe', channel: 'activity', addresses: [A], finality: 'finalized' })),
    ).toMatchObject({ finality: 'finalized' });
    expect(accepted(fromJson({ op: 'subscribe', channel: 'blocks' }))).not.toHaveProperty('finality');
  });

  it('reads an update with add only, remove only, and both', () => {
    expect(accepted(fromJson({ op: 'update', id: 'u', sub: 's1', add: [CHECKSUMMED] }))).toStrictEqual({
      op: 'update',
      id: 'u',
      sub: 's1',
      add: [CHECKSUMMED.toLowerCase()],
      remove: [],
    });
    expect(accepted(fromJson({ op: 'update', sub: 's1', remove: [A] }))).toStrictEqual({
      op: 'update',
      sub: 's1',
      add: [],
      remove: [A],
    });
    expect(accepted(fromMsgpack({ op: 'update', sub: 's1', add: [A], remove: [B] }))).toMatchObject({
      add: [A],
      remove: [B],
    });
  });

  it('reads an unsubscribe', () => {
    expect(accepted(fromJson({ op: 'unsubscribe', id: 9, sub: 's2' }))).toStrictEqual({
      op: 'unsubscribe',
      id: 9,
      sub: 's2',
    });
  });

  it('reads a ping without an id and gives no id', () => {
    expect(accepted(fromJson({ op: 'ping' }))).toStrictEqual({ op: 'ping' });
  });

  it.each([
    ['a number', 42],
    ['a fraction', 1.5],
    ['a string', 'req-1'],
    ['an empty string', ''],
  ])('echoes an id that is %s', (_, id) => {
    expect(accepted(fromJson({ op: 'ping', id }))).toStrictEqual({ op: 'ping', id });
    expect(accepted(fromMsgpack({ op: 'ping', id }))).toStrictEqual({ op: 'ping', id });
  });
});

describe('parseRequest: auth', () => {
  const TOKEN = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl';

  it('reads an auth request with its id and token, in both encodings', () => {
    const message = { op: 'auth', id: 3, token: TOKEN };
    expect(accepted(fromJson(message))).toStrictEqual(message);
    expect(accepted(fromMsgpack(message))).toStrictEqual(message);
  });

  it('reads an auth request without an id and gives no id', () => {
    expect(accepted(fromJson({ op: 'auth', token: TOKEN }))).toStrictEqual({ op: 'auth', token: TOKEN });
  });

  it('accepts a token of exactly 8192 characters', () => {
    const token = 't'.repeat(8192);
    expect(accepted(fromJson({ op: 'auth', token }))).toStrictEqual({ op: 'auth', token });
  });

  it.each([
    ['missing', {}],
    ['a number', { token: 42 }],
    ['a list', { token: [TOKEN] }],
    ['null', { token: null }],
    ['empty', { token: '' }],
    ['longer than 8192 characters', { token: 't'.repeat(8193) }],
  ])('rejects a token that is %s with BAD_REQUEST, echoing the id', (_, fields) => {
    const result = rejected(fromJson({ op: 'auth', id: 'a1', ...fields }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe('token must be a JWT of at most 8192 characters');
    expect(result.id).toBe('a1');
  });

  it('never quotes a rejected token', () => {
    const token = `secret-${'t'.repeat(8200)}`;
    expect(rejected(fromJson({ op: 'auth', token })).error.message).not.toContain('secret-');
  });

  it('rejects an unknown field of an auth request with BAD_REQUEST naming it', () => {
    const result = rejected(fromJson({ op: 'auth', id: 4, token: TOKEN, key: 'k' }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe('unknown field "key" for op auth');
    expect(result.id).toBe(4);
  });

  it('rejects a token field on another op', () => {
    expect(rejected(fromJson({ op: 'ping', token: TOKEN })).error.message).toBe('unknown field "token" for op ping');
  });
});

describe('parseRequest: undecodable frames', () => {
  it('rejects text that is not JSON with BAD_REQUEST and no id', () => {
    const result = rejected(fromText('{"op":"ping", "id": 1'));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe('text frame is not JSON');
    expect(result).not.toHaveProperty('id');
  });

  it('rejects binary bytes that end inside a MessagePack value with BAD_REQUEST, naming where', () => {
    const result = rejected(parseRequest(Uint8Array.of(0x81, 0xa2, 0x6f).buffer, true));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe('binary frame is not MessagePack: it ends inside the value at byte 1');
  });

  it('rejects an empty binary frame with BAD_REQUEST', () => {
    expect(rejected(parseRequest(new ArrayBuffer(0), true)).error.code).toBe('BAD_REQUEST');
  });

  it('rejects a lone 0xc1 byte (never used in MessagePack) with BAD_REQUEST', () => {
    const result = rejected(parseRequest(Uint8Array.of(0xc1).buffer, true));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result).not.toHaveProperty('id');
  });

  it('names a lone 0xc1 byte as not MessagePack', () => {
    expect(rejected(parseRequest(Uint8Array.of(0xc1).buffer, true)).error.message).toBe(
      'binary frame is not MessagePack: type 0xc1 at byte 0',
    );
  });

  it('rejects a text frame sent as binary (JSON is not a MessagePack map)', () => {
    const json = Buffer.from(JSON.stringify({ op: 'ping' }), 'utf8');
    expect(rejected(parseRequest(arrayBufferOf(json), true)).error.code).toBe('BAD_REQUEST');
  });
});

describe('parseRequest: messages that are not a map with an op', () => {
  it.each([
    ['an array', [{ op: 'ping' }]],
    ['a string', 'ping'],
    ['null', null],
    ['a number', 1],
    ['a boolean', true],
  ])('rejects JSON that is %s with BAD_REQUEST', (_, message) => {
    const result = rejected(fromJson(message));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe('message must be a map with an op');
  });

  it('rejects MessagePack binary data (bin) before looking at the message', () => {
    expect(rejected(fromMsgpack(Uint8Array.of(1, 2, 3))).error.message).toBe(
      'MessagePack bin (0xc4) at byte 0 is not accepted: send strings',
    );
  });

  it('rejects a MessagePack array as not a map', () => {
    expect(rejected(fromMsgpack(['ping'])).error.code).toBe('BAD_REQUEST');
  });

  it('rejects a message without op, and echoes its id', () => {
    const result = rejected(fromJson({ id: 5, channel: 'blocks' }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toMatch(/^op must be a string/);
    expect(result.id).toBe(5);
  });

  it('rejects an op that is not a string', () => {
    expect(rejected(fromJson({ op: 1 })).error.code).toBe('BAD_REQUEST');
  });

  it('rejects an unknown op and names it', () => {
    const result = rejected(fromJson({ op: 'subscribeAll', id: 'x' }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe('unknown op "subscribeAll"');
    expect(result.id).toBe('x');
  });

  it.each(['toString', 'constructor', '__proto__', 'hasOwnProperty'])(
    'rejects op %j, a name of Object.prototype, with BAD_REQUEST',
    (op) => {
      expect(rejected(fromJson({ op })).error.code).toBe('BAD_REQUEST');
    },
  );

  it('names op "toString" as an unknown op rather than leaking a TypeError', () => {
    expect(rejected(fromJson({ op: 'toString' })).error.message).toBe('unknown op "toString"');
  });
});

describe('parseRequest: ids', () => {
  it('rejects an id that is an object with BAD_REQUEST and gives no id back', () => {
    const result = rejected(fromJson({ op: 'ping', id: { n: 1 } }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toMatch(/^id must be/);
    expect(result).not.toHaveProperty('id');
  });

  it.each([
    ['null', null],
    ['an array', [1]],
    ['a boolean', true],
    ['a string of 129 characters', 'x'.repeat(129)],
  ])('rejects an id that is %s', (_, id) => {
    const result = rejected(fromJson({ op: 'ping', id }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result).not.toHaveProperty('id');
  });

  it('accepts a string id of exactly 128 characters', () => {
    const id = 'x'.repeat(128);
    expect(accepted(fromJson({ op: 'ping', id }))).toStrictEqual({ op: 'ping', id });
  });

  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
  ])('rejects a MessagePack float id of %s', (_, id) => {
    expect(rejected(fromMsgpack({ op: 'ping', id })).error.code).toBe('BAD_REQUEST');
  });
});

describe('parseRequest: malformed fields', () => {
  it.each([
    ['full:"yes"', { op: 'subscribe', channel: 'blocks', full: 'yes' }, 'full must be a boolean'],
    ['fullInput:1', { op: 'subscribe', channel: 'blocks', fullInput: 1 }, 'fullInput must be a boolean'],
    ['chainId:-1', { op: 'subscribe', channel: 'blocks', chainId: -1 }, 'chainId must be a non-negative integer'],
    ['chainId:1.5', { op: 'subscribe', channel: 'blocks', chainId: 1.5 }, 'chainId must be a non-negative integer'],
    ['chainId:"1"', { op: 'subscribe', channel: 'blocks', chainId: '1' }, 'chainId must be a non-negative integer'],
    [
      'confirmations:-2',
      { op: 'subscribe', channel: 'blocks', confirmations: -2 },
      'confirmations must be a non-negative integer',
    ],
    [
      'finality:"latest"',
      { op: 'subscribe', channel: 'blocks', finality: 'latest' },
      'finality must be "safe" or "finalized"',
    ],
    ['finality:true', { op: 'subscribe', channel: 'blocks', finality: true }, 'finality must be "safe" or "finalized"'],
    [
      'finality with confirmations',
      { op: 'subscribe', channel: 'blocks', finality: 'safe', confirmations: 2 },
      'finality and confirmations do not go together: ask for one of them',
    ],
    [
      'pending:"true"',
      { op: 'subscribe', channel: 'activity', addresses: [], pending: 'true' },
      'pending must be a boolean',
    ],
    [
      'addresses as a string',
      { op: 'subscribe', channel: 'activity', addresses: A },
      'addresses must be an array of addresses',
    ],
    ['addresses missing', { op: 'subscribe', channel: 'activity' }, 'addresses must be an array of addresses'],
    ['add as an object', { op: 'update', sub: 's1', add: { 0: A } }, 'add must be an array of addresses'],
    ['channel:1', { op: 'subscribe', channel: 1 }, 'channel must be "blocks" or "activity"'],
    ['channel missing', { op: 'subscribe' }, 'channel must be "blocks" or "activity"'],
  ])('rejects %s with BAD_REQUEST naming the field', (_, message, text) => {
    const result = rejected(fromJson({ id: 11, ...message }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe(text);
    expect(result.id).toBe(11);
  });

  it('rejects an unknown field and names it', () => {
    const result = rejected(fromJson({ op: 'subscribe', channel: 'blocks', fulll: true }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe('unknown field "fulll" for op subscribe');
  });

  it('rejects a field of another op (sub on ping)', () => {
    expect(rejected(fromJson({ op: 'ping', sub: 's1' })).error.message).toBe('unknown field "sub" for op ping');
  });

  it('rejects full on an activity subscription', () => {
    const result = rejected(fromJson({ op: 'subscribe', channel: 'activity', addresses: [A], full: true }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe('full does not apply to channel activity');
  });

  it('rejects addresses on a blocks subscription', () => {
    const result = rejected(fromMsgpack({ op: 'subscribe', channel: 'blocks', addresses: [A] }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe('addresses does not apply to channel blocks');
  });

  it('answers an unknown channel name with UNSUPPORTED and the id', () => {
    const result = rejected(fromJson({ op: 'subscribe', id: 2, channel: 'logs' }));
    expect(result.error.code).toBe('UNSUPPORTED');
    expect(result.error.message).toMatch(/^channel "logs" is not served/);
    expect(result.id).toBe(2);
  });

  it('rejects an unknown kind with BAD_REQUEST naming it', () => {
    const result = rejected(fromJson({ op: 'subscribe', channel: 'activity', addresses: [A], kinds: ['tx', 'nft'] }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toMatch(/^unknown kind "nft"/);
  });

  it('rejects an empty kinds list with BAD_REQUEST', () => {
    expect(rejected(fromJson({ op: 'subscribe', channel: 'activity', addresses: [A], kinds: [] })).error.code).toBe(
      'BAD_REQUEST',
    );
  });

  it('rejects an update with neither add nor remove', () => {
    const result = rejected(fromJson({ op: 'update', id: 4, sub: 's1' }));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toBe('update needs add or remove');
    expect(result.id).toBe(4);
  });

  it.each([
    ['missing', {}],
    ['empty', { sub: '' }],
    ['a number', { sub: 1 }],
    ['longer than 128 characters', { sub: 's'.repeat(129) }],
  ])('rejects an unsubscribe whose sub is %s', (_, fields) => {
    expect(rejected(fromJson({ op: 'unsubscribe', ...fields })).error.code).toBe('BAD_REQUEST');
  });
});

describe('parseRequest: bad addresses', () => {
  it.each([
    ['39 hex digits', `0x${'a'.repeat(39)}`],
    ['a non-hex digit', `0x${'a'.repeat(39)}g`],
    ['no 0x prefix', 'a'.repeat(40)],
    ['a 0X prefix', `0X${'a'.repeat(40)}`],
  ])('rejects an address with %s as BAD_ADDRESS naming its index and quoting it', (_, bad) => {
    const result = rejected(fromJson({ op: 'subscribe', id: 8, channel: 'activity', addresses: [A, bad] }));
    expect(result.error.code).toBe('BAD_ADDRESS');
    expect(result.error.message).toBe(`addresses[1] is not an address: ${JSON.stringify(bad)}`);
    expect(result.id).toBe(8);
  });

  it.each([
    ['41 hex digits', `0x${'a'.repeat(41)}`],
    ['a transaction hash', `0x${'a'.repeat(64)}`],
  ])('rejects an address with %s as BAD_ADDRESS quoting its first 42 characters', (_, bad) => {
    const result = rejected(fromJson({ op: 'subscribe', id: 8, channel: 'activity', addresses: [A, bad] }));
    expect(result.error.code).toBe('BAD_ADDRESS');
    expect(result.error.message).toBe(`addresses[1] is not an address: ${JSON.stringify(bad.slice(0, 42))}…`);
  });

  it('rejects an address given as a number, naming its type', () => {
    const result = rejected(fromMsgpack({ op: 'subscribe', channel: 'activity', addresses: [0xaa] }));
    expect(result.error.code).toBe('BAD_ADDRESS');
    expect(result.error.message).toBe('addresses[0] is not an address: number');
  });

  it('reports the first bad address when there are several', () => {
    const result = rejected(fromJson({ op: 'subscribe', channel: 'activity', addresses: [A, 'x', 'y'] }));
    expect(result.error.message).toMatch(/^addresses\[1\]/);
  });

  it('names the list of an update in a BAD_ADDRESS', () => {
    const add = rejected(fromJson({ op: 'update', sub: 's1', add: ['0x12'] }));
    expect(add.error.code).toBe('BAD_ADDRESS');
    expect(add.error.message).toMatch(/^add\[0\] is not an address/);
    const remove = rejected(fromJson({ op: 'update', sub: 's1', add: [A], remove: [A, null] }));
    expect(remove.error.code).toBe('BAD_ADDRESS');
    expect(remove.error.message).toBe('remove[1] is not an address: null');
  });

  it('cuts a long bad address to 42 characters in the message', () => {
    const bad = `0x${'z'.repeat(500)}`;
    const result = rejected(fromJson({ op: 'subscribe', channel: 'activity', addresses: [bad] }));
    expect(result.error.message).toBe(`addresses[0] is not an address: ${JSON.stringify(bad.slice(0, 42))}…`);
  });

  it('names a bad address that is a list or a map by its type, never stringifying it', () => {
    const nested = { a: ['x'.repeat(1_000)] };
    const map = rejected(fromMsgpack({ op: 'subscribe', channel: 'activity', addresses: [nested] }));
    expect(map.error.message).toBe('addresses[0] is not an address: object');
    const list = rejected(fromJson({ op: 'update', sub: 's1', add: [['x'.repeat(1_000)]] }));
    expect(list.error.message).toBe('add[0] is not an address: array');
  });
});

describe('parseRequest: hostile frames', () => {
  const standard = new Packr({ useRecords: false, variableMapSize: true });

  it('answers a chain of array 32 headers each claiming millions with BAD_REQUEST at once', () => {
    const chain: number[] = [];
    for (let i = 0; i < 20; i++) chain.push(0xdd, 0x00, 0x4c, 0x4b, 0x40);
    const prefix = standard.pack({ op: 'subscribe', channel: 'activity' });
    const frame = Uint8Array.from([0x83, ...prefix.subarray(1), ...standard.pack('addresses'), ...chain]);
    const result = rejected(parseRequest(arrayBufferOf(frame), true));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toMatch(/^MessagePack array at byte \d+ claims 5000000 entries/);
  });

  it('answers msgpackr structured-clone references (a graph 2^40 wide as a tree) with BAD_REQUEST', () => {
    let wide: unknown = [A];
    for (let i = 0; i < 40; i++) wide = [wide, wide];
    const frame = new Packr({ structuredClone: true }).pack({ op: 'subscribe', channel: 'activity', addresses: wide });
    const result = rejected(parseRequest(arrayBufferOf(frame), true));
    expect(result.error.code).toBe('BAD_REQUEST');
    expect(result.error.message).toMatch(/^MessagePack extension type/);
  });

  it('rejects __proto__ keys in both encodings, and takes constructor as an unknown field', () => {
    expect(rejected(fromText('{"op":"ping","__proto__":{"id":1}}')).error.message).toBe(
      'JSON map key "__proto__" is not accepted',
    );
    const proto = Uint8Array.from([0x82, ...standard.pack('op'), ...standard.pack('ping'), 0xa9]);
    const frame = Uint8Array.from([...proto, ...new TextEncoder().encode('__proto__'), 0x80]);
    expect(rejected(parseRequest(arrayBufferOf(frame), true)).error.message).toMatch(/"__proto__" at byte 9/);
    expect(rejected(fromText('{"op":"ping","constructor":1}')).error.message).toBe(
      'unknown field "constructor" for op ping',
    );
  });

  it('names an unknown kind that is a structure by its type, and cuts one that is a long string', () => {
    const structure = rejected(
      fromJson({ op: 'subscribe', channel: 'activity', addresses: [A], kinds: [{ a: 'x'.repeat(1_000) }] }),
    );
    expect(structure.error.message).toBe('unknown kind object; kinds are tx, erc20, erc721, erc1155, internal');
    const long = rejected(fromJson({ op: 'subscribe', channel: 'activity', addresses: [A], kinds: ['k'.repeat(500)] }));
    expect(long.error.message).toBe(
      `unknown kind "${'k'.repeat(42)}"…; kinds are tx, erc20, erc721, erc1155, internal`,
    );
  });

  it('never throws and keeps every message short, over 20,000 generated frames', () => {
    const next = createFrameGenerator(7, { maxMessageBytes: 1_048_576 });
    const codes = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const frame = next();
      const view = typeof frame.data === 'string' ? Buffer.from(frame.data, 'utf8') : frame.data;
      const result = parseRequest(arrayBufferOf(view), frame.binary);
      if (result.ok) {
        expect(frame.outcome, frame.kind).not.toBe('malformed');
        continue;
      }
      codes.add(result.error.code);
      expect(result.error.message.length, frame.kind).toBeLessThanOrEqual(200);
      if (frame.outcome === 'valid')
        throw new Error(`a valid ${frame.kind} frame was refused: ${result.error.message}`);
    }
    expect([...codes].sort()).toEqual(['BAD_ADDRESS', 'BAD_REQUEST', 'UNSUPPORTED']);
  });
});
