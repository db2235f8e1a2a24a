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

/** Decodes standard MessagePack. Throws on bytes that are not MessagePack. */
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

function mapHeader(count: number): Uint8Array {
  if (count < 16) return Uint8Array.of(0x80 | count);
  return Uint8Array.of(0xde, count >> 8, count & 0xff);
}

function arrayHeader(count: number): Uint8Array {
  if (count < 16) return Uint8Array.of(0x90 | count);
  if (count < 65_536) return Uint8Array.of(0xdc, count >> 8, count & 0xff);
  return Uint8Array.of(0xdd, count >>> 24, (count >> 16) & 0xff, (count >> 8) & 0xff, count & 0xff);
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

/**
 * Builds one message frame: `{type, sub, ...shared, events?}` from pre-encoded parts. The only
 * work per subscriber is this concatenation.
 */
export function buildFrame(
  encoding: Encoding,
  prefix: FramePrefix,
  shared: EncodedFields,
  events?: readonly EncodedValue[],
): Frame {
  if (encoding === 'json') {
    const tail = events === undefined ? '' : `,"events":[${events.map((e) => e.json).join(',')}]`;
    return `{${prefix.json}${shared.count > 0 ? ',' : ''}${shared.json}${tail}}`;
  }
  const count = 2 + shared.count + (events === undefined ? 0 : 1);
  const header = mapHeader(count);
  let length = header.length + prefix.msgpack.length + shared.msgpack.length;
  let eventsHeader: Uint8Array | undefined;
  if (events !== undefined) {
    eventsHeader = arrayHeader(events.length);
    length += EVENTS_KEY.length + eventsHeader.length;
    for (const e of events) length += e.msgpack.length;
  }
  const frame = Buffer.allocUnsafe(length);
  let at = 0;
  frame.set(header, at);
  at += header.length;
  frame.set(prefix.msgpack, at);
  at += prefix.msgpack.length;
  frame.set(shared.msgpack, at);
  at += shared.msgpack.length;
  if (events !== undefined && eventsHeader !== undefined) {
    frame.set(EVENTS_KEY, at);
    at += EVENTS_KEY.length;
    frame.set(eventsHeader, at);
    at += eventsHeader.length;
    for (const e of events) {
      frame.set(e.msgpack, at);
      at += e.msgpack.length;
    }
  }
  return frame;
}

/** Encodes a whole control message (welcome, subscribed, error, ...) in one encoding. */
export function encodeMessage(encoding: Encoding, message: Readonly<Record<string, unknown>>): Frame {
  return encoding === 'json' ? JSON.stringify(message) : pack(message);
}
