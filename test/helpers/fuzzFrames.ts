/**
 * Generators of client frames for fuzzing the gateway: malformed, hostile and valid, in both
 * encodings, from a seeded PRNG so that a failing run can be replayed with its seed.
 */
import { Packr } from 'msgpackr';

/** A seeded pseudo-random source (mulberry32). */
export interface Random {
  /** A float in [0, 1). */
  readonly next: () => number;
  /** An integer in [0, n). */
  readonly int: (n: number) => number;
  /** One element of a non-empty list. */
  readonly pick: <T>(items: readonly T[]) => T;
  /** True with probability `p`. */
  readonly chance: (p: number) => boolean;
}

/** A seeded PRNG: the same seed gives the same sequence. */
export function createRandom(seed: number): Random {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    pick: <T>(items: readonly T[]): T => items[int(items.length)] as T,
    chance: (p) => next() < p,
  };
}

/** What the server is expected to do with a frame. */
export type FrameOutcome =
  /** Parses: some reply (a result or an error other than a parse error) and the count of malformed frames resets. */
  | 'valid'
  /** Gets one `error` reply; counts as malformed (BAD_REQUEST, BAD_ADDRESS, UNSUPPORTED). */
  | 'malformed'
  /** Either of the above (a mutated frame may still parse). */
  | 'any'
  /** Past `maxMessageBytes`: the server closes with 1009. */
  | 'close1009'
  /** A text frame that is not UTF-8: uWebSockets.js drops the connection (1006). */
  | 'dropUtf8';

/** One generated frame. */
export interface FuzzFrame {
  /** The generator that made it (a key of {@link FRAME_KINDS}). */
  readonly kind: FrameKind;
  readonly data: Uint8Array | string;
  /** A binary (MessagePack) frame, or a text (JSON) frame. */
  readonly binary: boolean;
  readonly outcome: FrameOutcome;
}

const standard = new Packr({ useRecords: false, variableMapSize: true });
const withRecords = new Packr({ useRecords: true });
const structuredClone = new Packr({ structuredClone: true });
const structuredCloneNoRecords = new Packr({ structuredClone: true, useRecords: false });

const HEX = '0123456789abcdefABCDEF';
const KINDS = ['tx', 'erc20', 'erc721', 'erc1155'];
const PROTO_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf'];

/** A random address, in random case, sometimes checksummed-looking. */
export function randomAddress(random: Random): string {
  let out = '0x';
  for (let i = 0; i < 40; i++) out += HEX[random.int(random.chance(0.8) ? 16 : 22)];
  return out;
}

function randomId(random: Random): number | string | undefined {
  const r = random.int(4);
  if (r === 0) return undefined;
  if (r === 1) return random.int(1_000_000);
  if (r === 2) return `id-${random.int(1000)}`;
  return random.next() * 1000;
}

function withId(message: Record<string, unknown>, random: Random): Record<string, unknown> {
  const id = randomId(random);
  return id === undefined ? message : { ...message, id };
}

/** A message that parses, of any op, with random fields (PROTOCOL.md, Client to server). */
export function randomValidMessage(random: Random): Record<string, unknown> {
  const op = random.pick(['subscribe', 'subscribe', 'update', 'unsubscribe', 'ping', 'ping']);
  const addresses = (n: number): string[] => Array.from({ length: n }, () => randomAddress(random));
  switch (op) {
    case 'subscribe': {
      const message: Record<string, unknown> = { op };
      if (random.chance(0.2)) message['chainId'] = random.chance(0.5) ? 31_337 : random.int(100_000);
      if (random.chance(0.3)) message['confirmations'] = random.int(4);
      if (random.chance(0.1)) message['from'] = `31337:${random.int(1000)}:0x${'ab'.repeat(32)}`;
      if (random.chance(0.5)) {
        message['channel'] = 'blocks';
        if (random.chance(0.3)) message['full'] = random.chance(0.5);
        if (random.chance(0.2)) message['fullInput'] = random.chance(0.5);
      } else {
        message['channel'] = 'activity';
        message['addresses'] = addresses(random.int(4));
        if (random.chance(0.4)) message['kinds'] = KINDS.filter(() => random.chance(0.5)).concat('tx');
        if (random.chance(0.3)) message['pending'] = random.chance(0.5);
      }
      return withId(message, random);
    }
    case 'update': {
      const message: Record<string, unknown> = { op, sub: `s${1 + random.int(6)}` };
      if (random.chance(0.7)) message['add'] = addresses(random.int(3));
      if (message['add'] === undefined || random.chance(0.3)) message['remove'] = addresses(random.int(3));
      return withId(message, random);
    }
    case 'unsubscribe':
      return withId({ op, sub: `s${1 + random.int(6)}` }, random);
    default:
      return withId({ op: 'ping' }, random);
  }
}

/** A value of a random type: what a field should not be. */
function randomWrongValue(random: Random): unknown {
  switch (random.int(10)) {
    case 0:
      return null;
    case 1:
      return random.chance(0.5);
    case 2:
      return random.int(2 ** 31) - 2 ** 30;
    case 3:
      return random.next() * 1e300 * (random.chance(0.5) ? 1 : -1);
    case 4:
      return 'x'.repeat(random.int(200));
    case 5:
      return [randomAddress(random), random.int(10), null];
    case 6:
      return { a: 1, b: [1, 2], c: { d: 'e' } };
    case 7:
      return [];
    case 8:
      return {};
    default:
      return random.pick(['blocks', 'activity', 'subscribe', 'ping', '', '0x', randomAddress(random).slice(0, 20)]);
  }
}

function encode(message: unknown, binary: boolean): Uint8Array | string {
  return binary ? standard.pack(message) : JSON.stringify(message);
}

function bytesOf(data: Uint8Array | string): Uint8Array {
  return typeof data === 'string' ? new TextEncoder().encode(data) : data;
}

/** Big-endian bytes of `value` in `size` bytes. */
function be(value: number, size: number): number[] {
  const out: number[] = [];
  for (let i = size - 1; i >= 0; i--) out.push(Math.floor(value / 2 ** (8 * i)) % 256);
  return out;
}

/** MessagePack header bytes for `kind` claiming `count` entries or bytes. */
function header(kind: 'array' | 'map' | 'str' | 'bin', count: number): number[] {
  if (kind === 'array')
    return count < 16 ? [0x90 | count] : count < 65_536 ? [0xdc, ...be(count, 2)] : [0xdd, ...be(count, 4)];
  if (kind === 'map')
    return count < 16 ? [0x80 | count] : count < 65_536 ? [0xde, ...be(count, 2)] : [0xdf, ...be(count, 4)];
  if (kind === 'str') {
    if (count < 32) return [0xa0 | count];
    return count < 256 ? [0xd9, count] : count < 65_536 ? [0xda, ...be(count, 2)] : [0xdb, ...be(count, 4)];
  }
  return count < 256 ? [0xc4, count] : count < 65_536 ? [0xc5, ...be(count, 2)] : [0xc6, ...be(count, 4)];
}

/** `{op:"subscribe", channel:"activity", addresses: <value>}` as MessagePack, with `value` raw. */
function subscribeWith(value: readonly number[]): Uint8Array {
  const prefix = standard.pack({ op: 'subscribe', channel: 'activity' });
  // The prefix is a fixmap of 2: make it 3 and append the key `addresses` and the raw value.
  const out = [0x83, ...prefix.subarray(1), ...standard.pack('addresses'), ...value];
  return Uint8Array.from(out);
}

/** One extension value of a random form (fixext 1/2/4/8/16, ext 8/16/32) with type code `code`. */
export function extension(form: number, code: number, random?: Random): number[] {
  const fill = (n: number): number[] => Array.from({ length: n }, () => random?.int(256) ?? 0);
  const type = code & 0xff;
  switch (form) {
    case 0:
      return [0xd4, type, ...fill(1)];
    case 1:
      return [0xd5, type, ...fill(2)];
    case 2:
      return [0xd6, type, ...fill(4)];
    case 3:
      return [0xd7, type, ...fill(8)];
    case 4:
      return [0xd8, type, ...fill(16)];
    case 5:
      return [0xc7, 3, type, ...fill(3)];
    case 6:
      return [0xc8, 0, 3, type, ...fill(3)];
    default:
      return [0xc9, 0, 0, 0, 3, type, ...fill(3)];
  }
}

/** The extension forms of {@link extension}. */
export const EXTENSION_FORMS = 8;

/** A value whose tree is 2^depth wide but whose graph has `depth` arrays (shared references). */
export function sharedGraph(depth: number): unknown {
  let value: unknown = ['0x70997970c51812dc3a010c7d01b50e0d17dc79c8'];
  for (let i = 0; i < depth; i++) value = [value, value];
  return value;
}

type Generator = (random: Random, options: FrameOptions) => Omit<FuzzFrame, 'kind'>;

/** Options of the generators. */
export interface FrameOptions {
  /** The gateway's `maxMessageBytes`; frames past it are made by the `oversized` generator. */
  readonly maxMessageBytes: number;
}

/** The generators, each with its weight in {@link createFrameGenerator}. */
export const FRAME_KINDS = {
  valid: {
    weight: 14,
    make: (random) => {
      const binary = random.chance(0.5);
      return { data: encode(randomValidMessage(random), binary), binary, outcome: 'valid' };
    },
  },
  randomBytes: {
    weight: 8,
    make: (random) => {
      const length = random.chance(0.9) ? random.int(64) : random.int(2048);
      const data = new Uint8Array(length);
      for (let i = 0; i < length; i++) data[i] = random.int(256);
      return { data, binary: true, outcome: 'malformed' };
    },
  },
  randomText: {
    weight: 4,
    make: (random) => {
      const alphabet = '{}[]":,0123456789.eE-+ \\tnrufalsenull"op"ping"id"subscribe"';
      let text = '';
      const length = random.int(random.chance(0.9) ? 64 : 2048);
      for (let i = 0; i < length; i++) text += alphabet[random.int(alphabet.length)];
      return { data: text, binary: false, outcome: 'any' };
    },
  },
  truncated: {
    weight: 8,
    make: (random) => {
      const binary = random.chance(0.5);
      const full = encode(randomValidMessage(random), binary);
      const cut = 1 + random.int(Math.max(1, full.length - 1));
      // A cut JSON text is still ASCII here (only addresses and names), so still UTF-8.
      return { data: full.slice(0, cut), binary, outcome: 'malformed' };
    },
  },
  bitFlip: {
    weight: 8,
    make: (random) => {
      const binary = random.chance(0.5);
      const bytes = Uint8Array.from(bytesOf(encode(randomValidMessage(random), binary)));
      const flips = 1 + random.int(3);
      for (let i = 0; i < flips; i++) {
        // Text stays ASCII (flips of the low 7 bits), so it stays UTF-8.
        const at = random.int(bytes.length);
        bytes[at] = (bytes[at] as number) ^ (1 << random.int(binary ? 8 : 7));
      }
      return { data: binary ? bytes : new TextDecoder().decode(bytes), binary, outcome: 'any' };
    },
  },
  lengthClaim: {
    weight: 6,
    make: (random) => {
      const kind = random.pick(['array', 'map', 'str', 'bin'] as const);
      const claim = random.pick([0xffff_ffff, 0x7fff_ffff, 1_000_000 + random.int(9_000_000), 65_535, 255, 100]);
      const chain: number[] = [];
      const links = 1 + random.int(24);
      for (let i = 0; i < links; i++) chain.push(...header(kind, claim));
      const data = random.chance(0.5) ? subscribeWith(chain) : Uint8Array.from(chain);
      return { data, binary: true, outcome: 'malformed' };
    },
  },
  deepNesting: {
    weight: 5,
    make: (random) => {
      const depth = 7 + random.int(random.chance(0.8) ? 20 : 2000);
      if (random.chance(0.5)) {
        const useMap = random.chance(0.5);
        const bytes: number[] = [];
        for (let i = 0; i < depth; i++) bytes.push(...(useMap ? [0x81, 0xa1, 0x61] : [0x91]));
        bytes.push(0x01);
        return { data: subscribeWith(bytes), binary: true, outcome: 'malformed' };
      }
      const open = random.chance(0.5) ? '[' : '{"a":';
      const close = open === '[' ? ']' : '}';
      const text = `{"op":"subscribe","channel":"activity","addresses":${open.repeat(depth)}1${close.repeat(depth)}}`;
      return { data: text, binary: false, outcome: 'malformed' };
    },
  },
  extension: {
    weight: 6,
    make: (random) => {
      const ext = extension(random.int(EXTENSION_FORMS), random.int(256) - 128, random);
      if (random.chance(0.3)) return { data: Uint8Array.from(ext), binary: true, outcome: 'malformed' };
      return { data: subscribeWith([0x91, ...ext]), binary: true, outcome: 'malformed' };
    },
  },
  msgpackrStructuredClone: {
    weight: 3,
    make: (random) => {
      const packr = random.chance(0.5) ? structuredClone : structuredCloneNoRecords;
      let addresses: unknown;
      if (random.chance(0.5)) {
        addresses = sharedGraph(4 + random.int(30));
      } else {
        const cycle: unknown[] = [randomAddress(random)];
        cycle.push(cycle);
        addresses = cycle;
      }
      const data = packr.pack({ op: 'subscribe', channel: 'activity', addresses });
      return { data, binary: true, outcome: 'malformed' };
    },
  },
  msgpackrRecords: {
    weight: 3,
    make: (random) => ({ data: withRecords.pack(randomValidMessage(random)), binary: true, outcome: 'malformed' }),
  },
  prototypeKeys: {
    weight: 5,
    make: (random) => {
      const key = random.pick(PROTO_KEYS);
      const binary = random.chance(0.3);
      const base = randomValidMessage(random);
      if (binary) {
        // A map with the key appended (msgpackr would make `__proto__` a prototype, not a key).
        const packed = standard.pack(base);
        const count = Object.keys(base).length + 1;
        const rest = packed.subarray(1);
        return {
          data: Uint8Array.from([0x80 | count, ...standard.pack(key), ...standard.pack({ polluted: 1 }), ...rest]),
          binary,
          outcome: 'malformed',
        };
      }
      const inner = random.chance(0.5) ? '{"polluted":true}' : '1';
      const body = JSON.stringify(base).slice(1, -1);
      const escaped = key === '__proto__' && random.chance(0.3) ? '\\u005f_proto__' : key;
      const text = random.chance(0.5)
        ? `{"${escaped}":${inner},${body}}`
        : `{${body},"x":{"y":[{"${escaped}":${inner}}]}}`;
      return { data: text, binary, outcome: 'malformed' };
    },
  },
  hugeNumbers: {
    weight: 4,
    make: (random) => {
      const field = random.pick(['id', 'chainId', 'confirmations']);
      if (random.chance(0.5)) {
        const number = random.pick([
          '1e400',
          '-1e400',
          '123456789012345678901234567890',
          '9007199254740993',
          '-0',
          '1.5e-400',
          `${'9'.repeat(300 + random.int(700))}`,
        ]);
        return {
          data: `{"op":"subscribe","channel":"blocks","${field}":${number}}`,
          binary: false,
          outcome: 'any',
        };
      }
      const raw = random.pick([
        [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
        [0xcf, 0x00, 0x20, 0, 0, 0, 0, 0, 0],
        [0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
        [0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0],
        [0xca, 0xff, 0x80, 0, 0],
      ]);
      const prefix = standard.pack({ op: 'subscribe', channel: 'blocks' });
      return {
        data: Uint8Array.from([0x83, ...prefix.subarray(1), ...standard.pack(field), ...raw]),
        binary: true,
        outcome: 'any',
      };
    },
  },
  wrongType: {
    weight: 10,
    make: (random) => {
      const message = randomValidMessage(random);
      const fields = ['op', 'id', 'channel', 'chainId', 'full', 'fullInput', 'addresses', 'kinds', 'pending'];
      const more = ['confirmations', 'from', 'sub', 'add', 'remove', 'unknown', ''];
      message[random.pick([...fields, ...more])] = randomWrongValue(random);
      const binary = random.chance(0.5);
      return { data: encode(message, binary), binary, outcome: 'any' };
    },
  },
  tooManyKeysOrContainers: {
    weight: 2,
    make: (random) => {
      const binary = random.chance(0.5);
      const message: Record<string, unknown> = { op: 'ping' };
      if (random.chance(0.5)) {
        for (let i = 0; i < 33 + random.int(2000); i++) message[`k${i}`] = i;
      } else {
        message['x'] = Array.from({ length: 33 + random.int(2000) }, () => (random.chance(0.5) ? {} : []));
      }
      return { data: encode(message, binary), binary, outcome: 'malformed' };
    },
  },
  duplicateKeys: {
    weight: 2,
    make: () => ({
      data: Uint8Array.from([0x82, ...standard.pack('op'), ...standard.pack('ping'), ...standard.pack('op'), 0x01]),
      binary: true,
      outcome: 'malformed',
    }),
  },
  invalidUtf8InMsgpack: {
    weight: 2,
    make: (random) => {
      const bad = random.pick([
        [0xc0, 0x80],
        [0x80],
        [0xed, 0xa0, 0x80],
        [0xe2, 0x82],
        [0xf5, 0x80, 0x80, 0x80],
        [0xff],
      ]);
      const text = [...new TextEncoder().encode('ab'.repeat(random.int(40))), ...bad];
      return {
        data: Uint8Array.from([
          0x82,
          ...standard.pack('op'),
          ...standard.pack('ping'),
          ...standard.pack('id'),
          ...header('str', text.length),
          ...text,
        ]),
        binary: true,
        outcome: 'malformed',
      };
    },
  },
  trailingBytes: {
    weight: 2,
    make: (random) => {
      const bytes = standard.pack(randomValidMessage(random));
      return { data: Uint8Array.from([...bytes, random.int(256)]), binary: true, outcome: 'malformed' };
    },
  },
  textAsBinary: {
    weight: 2,
    make: (random) => ({
      data: new TextEncoder().encode(JSON.stringify(randomValidMessage(random))),
      binary: true,
      outcome: 'malformed',
    }),
  },
  binaryAsText: {
    weight: 1,
    make: (random) => {
      // MessagePack of an ASCII-only message: still UTF-8, never JSON.
      const bytes = standard.pack({ op: 'ping', id: random.int(100) });
      const ascii = Array.from(bytes, (b) => String.fromCharCode(b & 0x7f)).join('');
      return { data: ascii, binary: false, outcome: 'malformed' };
    },
  },
} satisfies Record<string, { weight: number; make: Generator }>;

/** The name of one generator of {@link FRAME_KINDS}. */
export type FrameKind = keyof typeof FRAME_KINDS | 'oversized' | 'invalidUtf8Text';

/** Rare generators that end the connection: drawn by probability, not weight. */
function rareFrame(random: Random, options: FrameOptions): FuzzFrame {
  if (random.chance(0.5)) {
    const binary = random.chance(0.5);
    const size = options.maxMessageBytes + 1 + random.int(1000);
    const data = binary ? new Uint8Array(size).fill(0xc0) : ' '.repeat(size);
    return { kind: 'oversized', data, binary, outcome: 'close1009' };
  }
  const bad = random.pick([[0xc0, 0x80], [0xff], [0xed, 0xa0, 0x80], [0xe2, 0x82]]);
  const data = Uint8Array.from([...new TextEncoder().encode('{"op":"ping","id":"'), ...bad, 0x22, 0x7d]);
  return { kind: 'invalidUtf8Text', data, binary: false, outcome: 'dropUtf8' };
}

/**
 * A stream of fuzz frames from `seed`: every generator of {@link FRAME_KINDS} by its weight, and
 * with probability `rareRate` one that ends the connection (oversized, or text that is not UTF-8).
 */
export function createFrameGenerator(
  seed: number,
  options: FrameOptions & { readonly rareRate?: number },
): () => FuzzFrame {
  const random = createRandom(seed);
  const entries = Object.entries(FRAME_KINDS) as Array<[keyof typeof FRAME_KINDS, { weight: number; make: Generator }]>;
  const total = entries.reduce((sum, [, g]) => sum + g.weight, 0);
  const rareRate = options.rareRate ?? 0;
  return () => {
    if (rareRate > 0 && random.chance(rareRate)) return rareFrame(random, options);
    let r = random.next() * total;
    for (const [kind, generator] of entries) {
      r -= generator.weight;
      if (r < 0) return { kind, ...generator.make(random, options) };
    }
    const [kind, generator] = entries[0] as (typeof entries)[number];
    return { kind, ...generator.make(random, options) };
  };
}
