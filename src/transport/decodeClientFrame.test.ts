import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../domain/errors.ts';
import {
  type ClientValue,
  type DecodeCounter,
  decodeClientFrame,
  decodeJson,
  decodeMsgpack,
  MAX_CLIENT_CONTAINERS,
  MAX_CLIENT_DEPTH,
  MAX_CLIENT_MAP_KEYS,
} from './decodeClientFrame.ts';

const standard = new Packr({ useRecords: false, variableMapSize: true });
const A = '0x70997970c51812dc3a010c7d01b50e0d17dc79c8';
const CURSOR = `31337:12:0x${'ab'.repeat(32)}`;

/** Every message shape of PROTOCOL.md (Client to server), with every optional field set and unset. */
const CLIENT_MESSAGES: ReadonlyArray<Record<string, unknown>> = [
  { op: 'subscribe', channel: 'blocks' },
  {
    op: 'subscribe',
    id: 1,
    channel: 'blocks',
    chainId: 31_337,
    full: true,
    fullInput: false,
    confirmations: 3,
    from: CURSOR,
  },
  { op: 'subscribe', id: 'a', channel: 'activity', addresses: [A] },
  {
    op: 'subscribe',
    id: 2.5,
    channel: 'activity',
    chainId: 1,
    addresses: [A, A.toUpperCase().replace('0X', '0x')],
    kinds: ['tx', 'erc20', 'erc721', 'erc1155'],
    pending: true,
    confirmations: 0,
    from: CURSOR,
  },
  { op: 'subscribe', channel: 'activity', addresses: [] },
  { op: 'update', id: 3, sub: 's1', add: [A] },
  { op: 'update', sub: 's1', remove: [A] },
  { op: 'update', id: 'x'.repeat(128), sub: 's1', add: [A], remove: [A] },
  { op: 'unsubscribe', id: 4, sub: 's1' },
  { op: 'ping' },
  { op: 'ping', id: 9_007_199_254_740_991 },
  { op: 'ping', id: -1 },
  { op: 'ping', id: '' },
];

function bytes(...parts: ReadonlyArray<number | readonly number[] | Uint8Array>): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === 'number') out.push(part);
    else for (const byte of part) out.push(byte);
  }
  return Uint8Array.from(out);
}

function str(text: string): number[] {
  return [...standard.pack(text)];
}

/** The error a decode throws, checked to be a BAD_REQUEST of bounded length. */
function refusal(decode: () => unknown): GatewayError {
  let thrown: unknown;
  try {
    decode();
  } catch (error) {
    thrown = error;
  }
  if (!(thrown instanceof GatewayError)) throw new Error(`expected a GatewayError, got ${String(thrown)}`);
  expect(thrown.code).toBe('BAD_REQUEST');
  expect(thrown.message.length).toBeLessThanOrEqual(200);
  return thrown;
}

/** Plain objects and arrays all the way down (maps compared without their prototype). */
function plain(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

function nestedArrays(depth: number): Uint8Array {
  return bytes(new Array<number>(depth).fill(0x91), 0x01);
}

function nestedMaps(depth: number): Uint8Array {
  const parts: number[] = [];
  for (let i = 0; i < depth; i++) parts.push(0x81, ...str('a'));
  return bytes(parts, 0x01);
}

describe('decodeMsgpack: accepted forms', () => {
  it.each<[string, Uint8Array, ClientValue]>([
    ['positive fixint 0', bytes(0x00), 0],
    ['positive fixint 127', bytes(0x7f), 127],
    ['negative fixint -1', bytes(0xff), -1],
    ['negative fixint -32', bytes(0xe0), -32],
    ['nil', bytes(0xc0), null],
    ['false', bytes(0xc2), false],
    ['true', bytes(0xc3), true],
    ['uint 8', bytes(0xcc, 0xff), 255],
    ['uint 16', bytes(0xcd, 0xff, 0xfe), 65_534],
    ['uint 32', bytes(0xce, 0xff, 0xff, 0xff, 0xff), 4_294_967_295],
    ['uint 64 (2^53 - 1)', bytes(0xcf, 0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 2 ** 53 - 1],
    ['uint 64 (small)', bytes(0xcf, 0, 0, 0, 0, 0, 0, 0, 7), 7],
    ['int 8', bytes(0xd0, 0x80), -128],
    ['int 16', bytes(0xd1, 0x80, 0x00), -32_768],
    ['int 32', bytes(0xd2, 0x80, 0x00, 0x00, 0x00), -2_147_483_648],
    ['int 64 (-(2^53 - 1))', bytes(0xd3, 0xff, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01), -(2 ** 53 - 1)],
    ['int 64 (-1)', bytes(0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), -1],
    ['float 32', bytes(0xca, 0x3f, 0xc0, 0x00, 0x00), 1.5],
    ['float 64', bytes(0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0), 1.5],
    ['float 64 NaN', bytes(0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0), Number.NaN],
    ['fixstr', bytes(0xa2, 0x6f, 0x70), 'op'],
    ['empty fixstr', bytes(0xa0), ''],
    ['str 8', bytes(0xd9, 0x02, 0x6f, 0x70), 'op'],
    ['str 16', bytes(0xda, 0x00, 0x02, 0x6f, 0x70), 'op'],
    ['str 32', bytes(0xdb, 0x00, 0x00, 0x00, 0x02, 0x6f, 0x70), 'op'],
    ['fixarray', bytes(0x92, 0x01, 0x02), [1, 2]],
    ['empty fixarray', bytes(0x90), []],
    ['array 16', bytes(0xdc, 0x00, 0x02, 0x01, 0x02), [1, 2]],
    ['array 32', bytes(0xdd, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02), [1, 2]],
    ['fixmap', bytes(0x81, 0xa1, 0x61, 0x01), { a: 1 }],
    ['empty fixmap', bytes(0x80), {}],
    ['map 16', bytes(0xde, 0x00, 0x01, 0xa1, 0x61, 0x01), { a: 1 }],
    ['map 32', bytes(0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 0x61, 0x01), { a: 1 }],
    ['a key as str 8', bytes(0x81, 0xd9, 0x01, 0x61, 0x01), { a: 1 }],
    ['a key as str 16', bytes(0x81, 0xda, 0x00, 0x01, 0x61, 0x01), { a: 1 }],
    ['a key as str 32', bytes(0x81, 0xdb, 0x00, 0x00, 0x00, 0x01, 0x61, 0x01), { a: 1 }],
  ])('reads %s', (_, frame, expected) => {
    const value = decodeMsgpack(frame);
    if (typeof expected === 'object' && expected !== null) expect(plain(value)).toEqual(expected);
    else expect(value).toStrictEqual(expected);
  });

  it('reads strings of every length form with multi-byte UTF-8, a BOM kept as a character', () => {
    for (const text of ['é', '€', '😀', '\uFEFFop', 'a'.repeat(31), 'ü'.repeat(200), '∑'.repeat(30_000)]) {
      expect(decodeMsgpack(standard.pack(text))).toBe(text);
    }
  });

  it('gives maps a null prototype, so that no key reaches Object.prototype', () => {
    const value = decodeMsgpack(standard.pack({ op: 'ping', nested: { constructor: 1, toString: 'x' } }));
    expect(Object.getPrototypeOf(value)).toBeNull();
    const nested = (value as Record<string, unknown>)['nested'] as Record<string, unknown>;
    expect(Object.getPrototypeOf(nested)).toBeNull();
    expect(nested['constructor']).toBe(1);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('reads a value that uses exactly every byte of the frame', () => {
    const frame = bytes(0xdc, 0x00, 0x05, 1, 2, 3, 4, 5);
    expect(decodeMsgpack(frame)).toEqual([1, 2, 3, 4, 5]);
  });

  it('reads nesting down to the depth limit', () => {
    let arrays = decodeMsgpack(nestedArrays(MAX_CLIENT_DEPTH));
    for (let i = 0; i < MAX_CLIENT_DEPTH; i++) arrays = (arrays as ClientValue[])[0] as ClientValue;
    expect(arrays).toBe(1);
    expect(decodeMsgpack(nestedMaps(MAX_CLIENT_DEPTH))).toBeTypeOf('object');
    expect(decodeMsgpack(bytes(new Array<number>(MAX_CLIENT_DEPTH - 1).fill(0x91), 0x90))).toBeTypeOf('object');
  });

  it('reads up to the limits of containers and of keys per map', () => {
    const containers = Array.from({ length: MAX_CLIENT_CONTAINERS - 1 }, () => []);
    expect(decodeMsgpack(standard.pack(containers))).toHaveLength(MAX_CLIENT_CONTAINERS - 1);
    const keys = Object.fromEntries(Array.from({ length: MAX_CLIENT_MAP_KEYS }, (_, i) => [`k${i}`, i]));
    expect(plain(decodeMsgpack(standard.pack(keys)))).toEqual(keys);
  });

  it('reads a long array of scalars (addresses) without a limit of its own', () => {
    const addresses = Array.from({ length: 10_000 }, () => A);
    expect(decodeMsgpack(standard.pack({ addresses }))).toEqual({ addresses });
  });

  it('reads the same bytes again after a refusal (no state leaks between frames)', () => {
    const good = standard.pack({ op: 'ping', id: 1 });
    refusal(() => decodeMsgpack(bytes(0x92, 0x91, 0x91)));
    refusal(() => decodeMsgpack(bytes(0x82, ...str('op'), 0x01, ...str('op'), 0x02)));
    expect(plain(decodeMsgpack(good))).toEqual({ op: 'ping', id: 1 });
  });

  it('reads each key right when the caller overwrites one buffer for every frame', () => {
    // As uWebSockets.js reuses its receive buffer: a cached key must not be a view into a frame.
    const frame = Buffer.from([0x81, 0xa3, 0x61, 0x61, 0x61, 0x01]);
    const letters = 'abcdefghijklmnopqrstuvwxyz';
    for (let i = 0; i < 26 ** 3; i += 7) {
      const key = `${letters[i % 26]}${letters[Math.floor(i / 26) % 26]}${letters[Math.floor(i / 676) % 26]}`;
      frame.write(key, 2, 'latin1');
      expect(Object.keys(decodeMsgpack(frame) as object)).toEqual([key]);
    }
  });

  it('reads a subarray of a larger buffer without its neighbours', () => {
    const inner = standard.pack({ op: 'ping' });
    const padded = bytes(0xc1, 0xc1, inner, 0xc1);
    expect(plain(decodeMsgpack(padded.subarray(2, 2 + inner.length)))).toEqual({ op: 'ping' });
  });
});

describe('decodeMsgpack: refused forms', () => {
  it('refuses an empty frame', () => {
    expect(refusal(() => decodeMsgpack(new Uint8Array(0))).message).toBe('binary frame is empty');
  });

  it('refuses 0xc1, which MessagePack never uses, naming it', () => {
    expect(refusal(() => decodeMsgpack(bytes(0xc1))).message).toBe(
      'binary frame is not MessagePack: type 0xc1 at byte 0',
    );
    expect(refusal(() => decodeMsgpack(bytes(0x91, 0xc1))).message).toMatch(/0xc1 at byte 1/);
  });

  it.each([
    ['bin 8', bytes(0xc4, 0x01, 0x00)],
    ['bin 16', bytes(0xc5, 0x00, 0x01, 0x00)],
    ['bin 32', bytes(0xc6, 0x00, 0x00, 0x00, 0x01, 0x00)],
  ])('refuses %s', (_, frame) => {
    expect(refusal(() => decodeMsgpack(frame)).message).toMatch(/^MessagePack bin \(0xc[456]\) at byte 0/);
    expect(refusal(() => decodeMsgpack(bytes(0x81, ...str('a'), frame))).message).toMatch(/at byte 3/);
  });

  /** Every extension form with type code `code` and a payload of its size. */
  const extensions = (code: number): Array<[string, number[]]> => {
    const type = code & 0xff;
    return [
      ['fixext 1', [0xd4, type, 0]],
      ['fixext 2', [0xd5, type, 0, 0]],
      ['fixext 4', [0xd6, type, 0, 0, 0, 0]],
      ['fixext 8', [0xd7, type, ...new Array<number>(8).fill(0)]],
      ['fixext 16', [0xd8, type, ...new Array<number>(16).fill(0)]],
      ['ext 8', [0xc7, 1, type, 0]],
      ['ext 16', [0xc8, 0, 1, type, 0]],
      ['ext 32', [0xc9, 0, 0, 0, 1, type, 0]],
    ];
  };

  it('refuses every extension type code (-128…127) in every extension form, alone and inside a message', () => {
    let checked = 0;
    for (let code = -128; code <= 127; code++) {
      for (const [form, ext] of extensions(code)) {
        const alone = refusal(() => decodeMsgpack(Uint8Array.from(ext)));
        expect(alone.message, form).toBe(
          `MessagePack extension type ${code} (0x${(ext[0] as number).toString(16)}) at byte 0 is not accepted`,
        );
        const inside = bytes(0x82, ...str('op'), ...str('ping'), ...str('id'), ext);
        expect(refusal(() => decodeMsgpack(inside)).message).toMatch(
          /^MessagePack extension type -?\d+ .* at byte 12 /,
        );
        checked++;
      }
    }
    expect(checked).toBe(256 * 8);
  });

  it('refuses an extension header cut before its type code', () => {
    expect(refusal(() => decodeMsgpack(bytes(0xc9, 0, 0))).message).toBe(
      'MessagePack extension type (0xc9) at byte 0 is not accepted',
    );
  });

  it('refuses what msgpackr makes with structuredClone: shared references and cycles', () => {
    const shared: unknown[] = ['x'];
    const graph = { op: 'subscribe', channel: 'activity', addresses: [shared, shared, shared] };
    const cycle: unknown[] = [A];
    cycle.push(cycle);
    let wide: unknown = [A];
    for (let i = 0; i < 40; i++) wide = [wide, wide];
    for (const packr of [
      new Packr({ structuredClone: true }),
      new Packr({ structuredClone: true, useRecords: false }),
    ]) {
      for (const value of [graph, { op: 'ping', id: cycle }, { addresses: wide }]) {
        expect(refusal(() => decodeMsgpack(packr.pack(value))).message).toMatch(/^MessagePack extension type/);
      }
    }
  });

  it('refuses what msgpackr makes with records, first use and later uses alike', () => {
    const packr = new Packr({ useRecords: true });
    for (const message of CLIENT_MESSAGES) {
      const frame = packr.pack(message);
      expect(refusal(() => decodeMsgpack(frame)).code).toBe('BAD_REQUEST');
    }
    const many = packr.pack([{ op: 'ping' }, { op: 'ping' }, { op: 'ping' }]);
    expect(refusal(() => decodeMsgpack(many)).message).toMatch(/^MessagePack extension type 114/);
  });

  it('refuses what msgpackr makes of dates, sets, errors, regexps, typed arrays and big integers', () => {
    const packr = new Packr({ useRecords: false, moreTypes: true });
    for (const value of [
      new Date(0),
      new Set([1]),
      new Error('x'),
      /x/,
      new Uint16Array(2),
      2n ** 63n - 1n,
      Buffer.of(1),
    ]) {
      expect(refusal(() => decodeMsgpack(packr.pack({ op: 'ping', id: value }))).code).toBe('BAD_REQUEST');
    }
  });

  it('refuses truncation at every byte of every client message', () => {
    let checked = 0;
    for (const message of CLIENT_MESSAGES) {
      const frame = standard.pack(message);
      for (let cut = 0; cut < frame.length; cut++) {
        refusal(() => decodeMsgpack(frame.subarray(0, cut)));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(1_000);
  });

  it('refuses bytes after the value', () => {
    const frame = bytes(standard.pack({ op: 'ping' }), 0x00, 0x01);
    expect(refusal(() => decodeMsgpack(frame)).message).toBe('binary frame has 2 bytes after its value, from byte 9');
    expect(refusal(() => decodeMsgpack(bytes(0x01, 0x01))).code).toBe('BAD_REQUEST');
  });

  it.each([
    [
      'array 32 claiming 2^32 - 1',
      [0xdd, 0xff, 0xff, 0xff, 0xff],
      /^MessagePack array at byte 0 claims 4294967295 entries/,
    ],
    ['map 32 claiming 2^32 - 1', [0xdf, 0xff, 0xff, 0xff, 0xff], /^MessagePack map at byte 0 claims 4294967295 keys/],
    ['str 32 claiming 2^32 - 1', [0xdb, 0xff, 0xff, 0xff, 0xff], /ends inside the value at byte 0/],
    ['array 16 claiming 65535', [0xdc, 0xff, 0xff, 1, 2, 3], /claims 65535 entries/],
    ['map 16 claiming 16 with 31 bytes', [0xde, 0x00, 0x10, ...new Array<number>(31).fill(1)], /claims 16 entries/],
    ['str 16 claiming 65535', [0xda, 0xff, 0xff, 0x61], /ends inside the value/],
    ['str 8 claiming 255', [0xd9, 0xff, 0x61], /ends inside the value/],
    ['fixarray claiming 15 with 14 bytes', [0x9f, ...new Array<number>(14).fill(1)], /claims 15 entries/],
  ])('refuses %s before building anything', (_, frame, message) => {
    expect(refusal(() => decodeMsgpack(Uint8Array.from(frame))).message).toMatch(message);
  });

  it('refuses claims that each fit the bytes left but together do not', () => {
    // [[1, 2, 3], ?]: the outer array still waits for one more element after the inner three.
    const frame = bytes(0x92, 0x93, 0x01, 0x02, 0x03);
    expect(refusal(() => decodeMsgpack(frame)).message).toBe(
      'MessagePack array at byte 1 claims 3 entries: past the end of the frame (3 bytes left for 4 pending entries)',
    );
  });

  it('refuses a chain of nested array 32 headers each claiming millions, at its first header', () => {
    const chain: number[] = [];
    for (let i = 0; i < 20; i++) chain.push(0xdd, 0x00, 0x4c, 0x4b, 0x40);
    const counter: DecodeCounter = { steps: 0 };
    const frame = bytes(
      0x83,
      ...str('op'),
      ...str('subscribe'),
      ...str('channel'),
      ...str('activity'),
      ...str('addresses'),
      chain,
    );
    expect(refusal(() => decodeMsgpack(frame, counter)).message).toMatch(
      /^MessagePack array at byte 41 claims 5000000 entries/,
    );
  });

  it('refuses nesting one past the depth limit, in arrays and in maps', () => {
    expect(refusal(() => decodeMsgpack(nestedArrays(MAX_CLIENT_DEPTH + 1))).message).toBe(
      `MessagePack nesting deeper than ${MAX_CLIENT_DEPTH} at byte ${MAX_CLIENT_DEPTH}`,
    );
    expect(refusal(() => decodeMsgpack(nestedMaps(MAX_CLIENT_DEPTH + 1))).message).toMatch(
      /^MessagePack nesting deeper/,
    );
    expect(refusal(() => decodeMsgpack(bytes(new Array<number>(MAX_CLIENT_DEPTH).fill(0x91), 0x90))).message).toBe(
      `MessagePack nesting deeper than ${MAX_CLIENT_DEPTH} at byte ${MAX_CLIENT_DEPTH}`,
    );
    expect(refusal(() => decodeMsgpack(nestedArrays(100_000))).message).toMatch(/^MessagePack nesting deeper/);
  });

  it('refuses more maps and arrays than the limit, and a map with more keys than the limit', () => {
    const containers = Array.from({ length: MAX_CLIENT_CONTAINERS }, () => ({}));
    expect(refusal(() => decodeMsgpack(standard.pack(containers))).message).toMatch(
      new RegExp(`is past ${MAX_CLIENT_CONTAINERS} maps and arrays in one frame$`),
    );
    const keys = Object.fromEntries(Array.from({ length: MAX_CLIENT_MAP_KEYS + 1 }, (_, i) => [`k${i}`, i]));
    expect(refusal(() => decodeMsgpack(standard.pack(keys))).message).toBe(
      `MessagePack map at byte 0 claims ${MAX_CLIENT_MAP_KEYS + 1} keys, more than ${MAX_CLIENT_MAP_KEYS}`,
    );
  });

  it.each([
    ['nil', 0xc0],
    ['an integer', 0x01],
    ['true', 0xc3],
    ['an array', 0x90],
    ['a map', 0x80],
    ['a float', 0xca],
    ['bin', 0xc4],
  ])('refuses a map key that is %s', (_, type) => {
    expect(refusal(() => decodeMsgpack(bytes(0x81, type, 0, 0, 0, 0))).message).toBe(
      'MessagePack map key at byte 1 is not a string',
    );
  });

  it('refuses the key __proto__, in any string form and at any depth', () => {
    const proto = [...new TextEncoder().encode('__proto__')];
    for (const key of [
      [0xa9, ...proto],
      [0xd9, 9, ...proto],
      [0xda, 0, 9, ...proto],
    ]) {
      expect(refusal(() => decodeMsgpack(bytes(0x81, key, 0x80))).message).toBe(
        'MessagePack map key "__proto__" at byte 1 is not accepted',
      );
    }
    const nested = bytes(0x82, ...str('op'), ...str('ping'), ...str('x'), 0x91, 0x81, 0xa9, ...proto, 0xc3);
    expect(refusal(() => decodeMsgpack(nested)).message).toMatch(/"__proto__" at byte 13/);
  });

  it('refuses a duplicate key, quoting at most 40 characters of it', () => {
    const frame = bytes(0x82, ...str('op'), ...str('ping'), ...str('op'), ...str('subscribe'));
    expect(refusal(() => decodeMsgpack(frame)).message).toBe('MessagePack map key "op" at byte 9 is a duplicate');
    const long = 'k'.repeat(5_000);
    const twice = bytes(0x82, standard.pack(long), 0x01, standard.pack(long), 0x02);
    const message = refusal(() => decodeMsgpack(twice)).message;
    expect(message).toBe(`MessagePack map key "${'k'.repeat(40)}"… at byte 5005 is a duplicate`);
  });

  it.each([
    ['an overlong encoding', [0xc0, 0x80]],
    ['a lone continuation byte', [0x80]],
    ['a surrogate half', [0xed, 0xa0, 0x80]],
    ['a cut multi-byte sequence', [0xe2, 0x82]],
    ['a code point past U+10FFFF', [0xf5, 0x80, 0x80, 0x80]],
    ['0xff', [0xff]],
  ])('refuses %s in a string, short or long, key or value', (_, bad) => {
    for (const text of [bad, [...new Array<number>(50).fill(0x61), ...bad]]) {
      const asValue = bytes(0x81, ...str('op'), 0xd9, text.length, text);
      expect(refusal(() => decodeMsgpack(asValue)).message).toBe('MessagePack string at byte 4 is not UTF-8');
      const asKey = bytes(0x81, 0xd9, text.length, text, 0x01);
      expect(refusal(() => decodeMsgpack(asKey)).message).toBe('MessagePack string at byte 1 is not UTF-8');
    }
  });

  it.each([
    ['uint 64 of 2^53', [0xcf, 0x00, 0x20, 0, 0, 0, 0, 0, 0]],
    ['uint 64 of 2^64 - 1', [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
    ['int 64 of -2^53', [0xd3, 0xff, 0xe0, 0, 0, 0, 0, 0, 0]],
    ['int 64 of -2^63', [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]],
  ])('refuses %s rather than rounding it', (_, frame) => {
    expect(refusal(() => decodeMsgpack(Uint8Array.from(frame))).message).toBe(
      'MessagePack integer at byte 0 is beyond ±(2^53 - 1)',
    );
  });

  it('never quotes more than 40 characters of client data, whatever the frame', () => {
    const huge = 'z'.repeat(100_000);
    const frames = [
      bytes(0x82, standard.pack(huge), 0x01, standard.pack(huge), 0x02),
      bytes(0x81, standard.pack(huge), 0xc1),
      bytes(0x91, standard.pack(huge), 0x00),
    ];
    for (const frame of frames) expect(refusal(() => decodeMsgpack(frame)).message.length).toBeLessThan(120);
  });
});

describe('decodeMsgpack and decodeJson: cost', () => {
  /** Frames of about `size` bytes built to be as costly per byte as possible. */
  const hostile = (size: number): Array<[string, Uint8Array]> => {
    const flat = (item: readonly number[], header: (n: number) => number[]): Uint8Array => {
      const n = Math.floor((size - 5) / item.length);
      const items: number[] = [];
      for (let i = 0; i < n; i++) items.push(...item);
      return bytes(header(n), items);
    };
    const array32 = (n: number): number[] => [0xdd, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
    return [
      ['fixints', flat([0x01], array32)],
      ['nils', flat([0xc0], array32)],
      ['one-character strings', flat([0xa1, 0x61], array32)],
      ['two-character strings', flat([0xa2, 0x61, 0x62], array32)],
      ['float 64s', flat([0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0], array32)],
      ['empty maps (refused at the limit)', flat([0x80], array32)],
      ['empty arrays (refused at the limit)', flat([0x90], array32)],
      ['nested arrays (refused at the limit)', nestedArrays(size)],
      ['array 32 headers claiming the frame', flat([0xdd, 0x00, 0x00, 0x00, 0x01], array32)],
      ['string 32 headers', flat([0xdb, 0xff, 0xff, 0xff, 0xff], array32)],
    ];
  };

  it('touches at most 2 values or keys per byte of a MessagePack frame, whatever it holds', () => {
    for (const size of [1_000, 10_000, 100_000, 1_000_000]) {
      for (const [name, frame] of hostile(size)) {
        const counter: DecodeCounter = { steps: 0 };
        try {
          decodeMsgpack(frame, counter);
        } catch (error) {
          expect(error, name).toBeInstanceOf(GatewayError);
        }
        expect(counter.steps, `${name} of ${frame.length} bytes`).toBeLessThanOrEqual(2 * frame.length);
      }
    }
  });

  it('counts steps linearly in the size of valid frames', () => {
    const steps = (n: number): number => {
      const counter: DecodeCounter = { steps: 0 };
      decodeMsgpack(standard.pack({ op: 'subscribe', channel: 'activity', addresses: new Array(n).fill(A) }), counter);
      return counter.steps;
    };
    expect(steps(2_000) - steps(1_000)).toBe(1_000);
    expect(steps(20_000) - steps(10_000)).toBe(10_000);
  });

  it('touches at most 3 values, keys or characters per character of a JSON frame', () => {
    const size = 1_000_000;
    const texts = [
      `[${new Array(size / 2).fill('1').join(',')}]`,
      `[${new Array(size / 4).fill('""').join(',')}]`,
      `[${new Array(size / 4).fill('{}').join(',')}]`,
      `{"a":[${new Array(size / 5).fill('null').join(',')}]}`,
      '['.repeat(size),
      `"${'\\"'.repeat(size / 2)}"`,
    ];
    for (const text of texts) {
      const counter: DecodeCounter = { steps: 0 };
      try {
        decodeJson(text, counter);
      } catch (error) {
        expect(error).toBeInstanceOf(GatewayError);
      }
      expect(counter.steps).toBeLessThanOrEqual(3 * text.length);
    }
  });
});

describe('decodeJson', () => {
  it('reads every client message as JSON.parse does', () => {
    for (const message of CLIENT_MESSAGES) {
      const text = JSON.stringify(message);
      expect(decodeJson(text)).toEqual(JSON.parse(text));
    }
  });

  it('reads nesting down to the depth limit, brackets inside strings and escapes not counted', () => {
    const deep = `${'['.repeat(MAX_CLIENT_DEPTH)}1${']'.repeat(MAX_CLIENT_DEPTH)}`;
    expect(decodeJson(deep)).toBeTypeOf('object');
    expect(decodeJson('{"a":"[[[[[[[[[[[[{{{{{{{{{{"}')).toEqual({ a: '[[[[[[[[[[[[{{{{{{{{{{' });
    expect(decodeJson('{"a":"\\"[[[[[[[[[[\\\\","b":1}')).toEqual({ a: '"[[[[[[[[[[\\', b: 1 });
  });

  it('refuses nesting one past the limit before parsing, objects and arrays alike', () => {
    const arrays = `${'['.repeat(MAX_CLIENT_DEPTH + 1)}${']'.repeat(MAX_CLIENT_DEPTH + 1)}`;
    expect(refusal(() => decodeJson(arrays)).message).toBe(
      `JSON nesting deeper than ${MAX_CLIENT_DEPTH} at character ${MAX_CLIENT_DEPTH}`,
    );
    const objects = `${'{"a":'.repeat(MAX_CLIENT_DEPTH + 1)}1${'}'.repeat(MAX_CLIENT_DEPTH + 1)}`;
    expect(refusal(() => decodeJson(objects)).message).toMatch(/^JSON nesting deeper than/);
    // Deep enough to overflow JSON.parse's own recursion if it ever got there.
    expect(refusal(() => decodeJson('['.repeat(1_000_000))).message).toMatch(/^JSON nesting deeper than/);
  });

  it('refuses more objects and arrays than the limit, and an object with more keys than the limit', () => {
    const containers = JSON.stringify(Array.from({ length: MAX_CLIENT_CONTAINERS }, () => []));
    expect(refusal(() => decodeJson(containers)).message).toMatch(/^JSON has more than 32 objects and arrays/);
    const keys = JSON.stringify(Object.fromEntries(Array.from({ length: MAX_CLIENT_MAP_KEYS + 1 }, (_, i) => [i, i])));
    expect(refusal(() => decodeJson(keys)).message).toMatch(/^JSON object has more than 32 keys/);
    const fits = JSON.stringify(Object.fromEntries(Array.from({ length: MAX_CLIENT_MAP_KEYS }, (_, i) => [i, ':'])));
    expect(Object.keys(decodeJson(fits) as object)).toHaveLength(MAX_CLIENT_MAP_KEYS);
  });

  it.each([
    ['at the top', '{"__proto__":{"polluted":true},"op":"ping"}'],
    ['escaped', '{"\\u005f_proto__":1,"op":"ping"}'],
    ['nested in a map', '{"op":"ping","x":{"__proto__":1}}'],
    ['nested in an array', '{"op":"ping","x":[1,{"__proto__":null}]}'],
  ])('refuses the key __proto__ %s', (_, text) => {
    expect(refusal(() => decodeJson(text)).message).toBe('JSON map key "__proto__" is not accepted');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('keeps constructor and prototype as plain keys, and the last of duplicate keys', () => {
    expect(decodeJson('{"constructor":1,"prototype":2}')).toEqual({ constructor: 1, prototype: 2 });
    expect(decodeJson('{"op":"ping","op":"subscribe"}')).toEqual({ op: 'subscribe' });
  });

  it('refuses text that is not JSON', () => {
    for (const text of ['', '{', '{"op":"ping"', ']]]]]]]]]]]]]]]][', 'undefined', "{'op':'ping'}", '\u0082\u00a2op']) {
      expect(refusal(() => decodeJson(text)).message).toBe('text frame is not JSON');
    }
  });
});

describe('decodeClientFrame', () => {
  it('decodes every client message from both encodings to the same value', () => {
    for (const message of CLIENT_MESSAGES) {
      const packed = standard.pack(message);
      const binary = packed.buffer.slice(packed.byteOffset, packed.byteOffset + packed.byteLength) as ArrayBuffer;
      const text = new TextEncoder().encode(JSON.stringify(message)).buffer as ArrayBuffer;
      expect(plain(decodeClientFrame(binary, true))).toEqual(message);
      expect(decodeClientFrame(text, false)).toEqual(message);
    }
  });
});
