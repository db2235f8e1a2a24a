import { Packr } from 'msgpackr';

/** Wire encodings of protocol v1: binary MessagePack frames, or JSON text frames. */
export type Encoding = 'msgpack' | 'json';

/** One WebSocket frame: bytes for MessagePack, a string for JSON. */
export type Frame = Uint8Array | string;

// Standard MessagePack only: no records or extension types, so any decoder reads it.
const packr = new Packr({ useRecords: false, variableMapSize: true });

/** Encodes one value as standard MessagePack. */
export function pack(value: unknown): Uint8Array {
  return packr.pack(value);
}

/**
 * Decodes standard MessagePack that this gateway encoded (tests and benchmarks read frames with
 * it). Never for what a client sends: msgpackr allocates by what headers claim and accepts its own
 * extensions; client frames go through the bounded decoder of `transport/decodeClientFrame.ts`.
 */
export function unpack(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

/**
 * The key/value pairs of a map, encoded at most once per encoding and spliced into many frames:
 * MessagePack pairs without the map header, or JSON members without the braces.
 */
export class EncodedFields {
  readonly #fields: Readonly<Record<string, unknown>>;
  #msgpack: Uint8Array | undefined;
  #json: string | undefined;
  /** Number of defined fields. */
  readonly count: number;

  constructor(fields: Readonly<Record<string, unknown>>) {
    this.#fields = fields;
    let count = 0;
    for (const key in fields) if (fields[key] !== undefined) count++;
    this.count = count;
  }

  get msgpack(): Uint8Array {
    if (this.#msgpack === undefined) {
      const parts: Uint8Array[] = [];
      for (const [key, value] of Object.entries(this.#fields)) {
        if (value !== undefined) parts.push(pack(key), pack(value));
      }
      this.#msgpack = Buffer.concat(parts);
    }
    return this.#msgpack;
  }

  get json(): string {
    this.#json ??= JSON.stringify(this.#fields).slice(1, -1);
    return this.#json;
  }
}

/** One value, encoded at most once per encoding, for splicing into arrays. */
export class EncodedValue {
  readonly #value: unknown;
  #msgpack: Uint8Array | undefined;
  #json: string | undefined;

  constructor(value: unknown) {
    this.#value = value;
  }

  get msgpack(): Uint8Array {
    this.#msgpack ??= pack(this.#value);
    return this.#msgpack;
  }

  get json(): string {
    this.#json ??= JSON.stringify(this.#value);
    return this.#json;
  }
}

/** Writes a MessagePack map header (fixmap or map 16) at `at`; returns the offset after it. */
function writeMapHeader(frame: Uint8Array, at: number, count: number): number {
  if (count < 16) {
    frame[at] = 0x80 | count;
    return at + 1;
  }
  frame[at] = 0xde;
  frame[at + 1] = count >> 8;
  frame[at + 2] = count & 0xff;
  return at + 3;
}

/** Writes a MessagePack array header (fixarray, array 16 or array 32) at `at`; returns the offset after it. */
function writeArrayHeader(frame: Uint8Array, at: number, count: number): number {
  if (count < 16) {
    frame[at] = 0x90 | count;
    return at + 1;
  }
  if (count < 65_536) {
    frame[at] = 0xdc;
    frame[at + 1] = count >> 8;
    frame[at + 2] = count & 0xff;
    return at + 3;
  }
  frame[at] = 0xdd;
  frame[at + 1] = count >>> 24;
  frame[at + 2] = (count >> 16) & 0xff;
  frame[at + 3] = (count >> 8) & 0xff;
  frame[at + 4] = count & 0xff;
  return at + 5;
}

/**
 * The leading `type` and `sub` members of a subscription's messages, encoded once when the
 * subscription is made, so a block costs each subscriber only the copy into its frame.
 */
export interface FramePrefix {
  readonly msgpack: Uint8Array;
  readonly json: string;
}

/** Encodes the `type` + `sub` members that start every message of one subscription. */
export function encodePrefix(type: string, sub: string): FramePrefix {
  return {
    msgpack: Buffer.concat([pack('type'), pack(type), pack('sub'), pack(sub)]),
    json: `"type":${JSON.stringify(type)},"sub":${JSON.stringify(sub)}`,
  };
}

const EVENTS_KEY = pack('events');

/** The k-th event of a frame: `events[k]`, or `events[pick[k]]` with `pick`. */
function eventAt(events: readonly EncodedValue[], pick: readonly number[] | undefined, k: number): EncodedValue {
  return events[pick === undefined ? k : (pick[k] as number)] as EncodedValue;
}

/**
 * Builds one message frame: `{type, sub, ...shared, events?}` from pre-encoded parts. The only
 * work per subscriber is this concatenation. With `pick`, the frame carries `events[pick[0]]`,
 * `events[pick[1]]`, … (a subscription's matches among a block's events) instead of all of
 * `events`, without a list of its own.
 */
export function buildFrame(
  encoding: Encoding,
  prefix: FramePrefix,
  shared: EncodedFields,
  events?: readonly EncodedValue[],
  pick?: readonly number[],
): Frame {
  const n = events === undefined ? 0 : (pick ?? events).length;
  if (encoding === 'json') {
    let tail = '';
    if (events !== undefined) {
      tail = ',"events":[';
      for (let k = 0; k < n; k++)
        tail +=
          k === 0
            ? eventAt(events as readonly EncodedValue[], pick, k).json
            : `,${eventAt(events as readonly EncodedValue[], pick, k).json}`;
      tail += ']';
    }
    return `{${prefix.json}${shared.count > 0 ? ',' : ''}${shared.json}${tail}}`;
  }
  // Headers are written in place: the frame is the only allocation per subscriber.
  const count = 2 + shared.count + (events === undefined ? 0 : 1);
  let length = (count < 16 ? 1 : 3) + prefix.msgpack.length + shared.msgpack.length;
  if (events !== undefined) {
    length += EVENTS_KEY.length + (n < 16 ? 1 : n < 65_536 ? 3 : 5);
    for (let k = 0; k < n; k++) length += eventAt(events as readonly EncodedValue[], pick, k).msgpack.length;
  }
  const frame = Buffer.allocUnsafe(length);
  let at = writeMapHeader(frame, 0, count);
  frame.set(prefix.msgpack, at);
  at += prefix.msgpack.length;
  frame.set(shared.msgpack, at);
  at += shared.msgpack.length;
  if (events !== undefined) {
    frame.set(EVENTS_KEY, at);
    at = writeArrayHeader(frame, at + EVENTS_KEY.length, n);
    for (let k = 0; k < n; k++) {
      const bytes = eventAt(events as readonly EncodedValue[], pick, k).msgpack;
      frame.set(bytes, at);
      at += bytes.length;
    }
  }
  return frame;
}

/** Encodes a whole control message (welcome, subscribed, error, ...) in one encoding. */
export function encodeMessage(encoding: Encoding, message: Readonly<Record<string, unknown>>): Frame {
  return encoding === 'json' ? JSON.stringify(message) : pack(message);
}
