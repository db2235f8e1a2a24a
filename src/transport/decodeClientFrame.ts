import { GatewayError } from '../domain/errors.ts';

/**
 * Deepest nesting of maps and arrays a client frame may hold, counting the outer map as 1. A
 * client message needs 2 (map → array of strings); deeper frames are refused with BAD_REQUEST.
 */
export const MAX_CLIENT_DEPTH = 8;

/**
 * Most maps and arrays one client frame may hold, over all depths. A client message needs 3 (the
 * map, `addresses`, `kinds`). Each container costs the heap far more than its 1-byte header
 * (a null-prototype map about 200 B), so the count, not only the frame size, bounds memory.
 */
export const MAX_CLIENT_CONTAINERS = 32;

/** Most keys one map of a client frame may hold. A client message needs 11 (`subscribe`). */
export const MAX_CLIENT_MAP_KEYS = 32;

/** A value a client frame may hold: what JSON can say, with maps of string keys. */
export type ClientValue = null | boolean | number | string | ClientValue[] | ClientMap;

/** A map of a client frame. Decoded from MessagePack it has a null prototype. */
export interface ClientMap {
  [key: string]: ClientValue;
}

/**
 * Counts the work of one decode, for tests and benchmarks. MessagePack: one step per value or
 * key read and per container closed, so at most 2 per byte. JSON: one step per character of the
 * scan and per value or key checked after `JSON.parse`, so at most 3 per character.
 */
export interface DecodeCounter {
  steps: number;
}

/** Characters of client data an error message may quote. */
const QUOTED_CHARS = 40;
/** Strings up to this many bytes are read as ASCII without the UTF-8 decoder when they are ASCII. */
const SHORT_STRING_BYTES = 8;
/** Map keys up to this many bytes go through {@link keyCache}. */
const CACHED_KEY_BYTES = 16;
const KEY_CACHE_SLOTS = 256;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function refuse(message: string): GatewayError {
  return new GatewayError('BAD_REQUEST', message);
}

/** A string of client data as a JSON literal of at most {@link QUOTED_CHARS} characters. */
function quote(text: string): string {
  return text.length > QUOTED_CHARS ? `${JSON.stringify(text.slice(0, QUOTED_CHARS))}…` : JSON.stringify(text);
}

function hex(byte: number): string {
  return `0x${byte.toString(16).padStart(2, '0')}`;
}

/** A map or array still being filled, and how many entries or elements it still waits for. */
interface OpenContainer {
  readonly map: ClientMap | undefined;
  readonly array: ClientValue[] | undefined;
  /** Entries of the map, or elements of the array, as its header claims. */
  readonly size: number;
  left: number;
  /** The key of the map entry whose value comes next; `undefined` while a key comes next. */
  key: string | undefined;
}

// The frame being decoded. Decoding is synchronous and never re-entered, so one set serves all.
const EMPTY: Uint8Array = new Uint8Array(0);
let bytes = EMPTY;
let pos = 0;
let end = 0;
/** Containers still being filled, outermost first: never more than {@link MAX_CLIENT_DEPTH}. */
const stack: OpenContainer[] = [];
/** Containers opened so far in this frame. */
let containers = 0;
/**
 * Entries (keys and values) the open containers still wait for. Each needs at least one more
 * byte, so this never passes the bytes left: checked at every header, before anything is built.
 */
let owed = 0;

/**
 * The strings of recent short keys, by a hash of their bytes (one entry per slot, replaced on a
 * miss: bounded whatever clients send). V8 stores a fresh string as a key of a null-prototype
 * map about ten times slower than one it has seen as a key before, so `op`, `id` and the other
 * field names are read once and reused.
 */
const keyCache: Array<{ readonly bytes: Uint8Array; readonly text: string } | undefined> = new Array(
  KEY_CACHE_SLOTS,
).fill(undefined);

function truncated(at: number): GatewayError {
  return refuse(`binary frame is not MessagePack: it ends inside the value at byte ${at}`);
}

/** Reads a big-endian unsigned integer of `size` (1, 2 or 4) bytes belonging to the value at `at`. */
function readUint(at: number, size: number): number {
  if (pos + size > end) throw truncated(at);
  let value = 0;
  for (let i = 0; i < size; i++) value = value * 256 + (bytes[pos++] as number);
  return value;
}

/** Eight bytes through which floats are read, so that no DataView is made per frame. */
const scratch = new Uint8Array(8);
const scratchView = new DataView(scratch.buffer);

function readFloat(at: number, size: 4 | 8): number {
  if (pos + size > end) throw truncated(at);
  for (let i = 0; i < size; i++) scratch[i] = bytes[pos++] as number;
  return size === 4 ? scratchView.getFloat32(0) : scratchView.getFloat64(0);
}

/** A 64-bit integer of the value at `at`: exact within ±(2^53 - 1), refused beyond. */
function readInt64(at: number, signed: boolean): number {
  const high = readUint(at, 4);
  const low = readUint(at, 4);
  const value = (signed && high >= 0x8000_0000 ? high - 2 ** 32 : high) * 2 ** 32 + low;
  if (!Number.isSafeInteger(value)) throw refuse(`MessagePack integer at byte ${at} is beyond ±(2^53 - 1)`);
  return value;
}

function decodeUtf8(at: number, start: number, stop: number): string {
  try {
    return utf8.decode(bytes.subarray(start, stop));
  } catch {
    throw refuse(`MessagePack string at byte ${at} is not UTF-8`);
  }
}

/** Reads a string of `length` bytes, the payload of the value at `at`; strict UTF-8. */
function readString(at: number, length: number): string {
  if (pos + length > end) throw truncated(at);
  const start = pos;
  pos += length;
  if (length > SHORT_STRING_BYTES) return decodeUtf8(at, start, pos);
  let text = '';
  for (let i = start; i < pos; i++) {
    const byte = bytes[i] as number;
    if (byte >= 0x80) return decodeUtf8(at, start, pos);
    text += String.fromCharCode(byte);
  }
  return text;
}

/** Reads a map key of `length` bytes, the payload of the key at `at`, through {@link keyCache}. */
function readKey(at: number, length: number): string {
  if (length > CACHED_KEY_BYTES) return readString(at, length);
  if (pos + length > end) throw truncated(at);
  let hash = length;
  for (let i = pos; i < pos + length; i++) hash = (hash * 31 + (bytes[i] as number)) | 0;
  const slot = hash & (KEY_CACHE_SLOTS - 1);
  const cached = keyCache[slot];
  if (cached !== undefined && cached.bytes.length === length) {
    let same = true;
    for (let i = 0; i < length && same; i++) same = cached.bytes[i] === bytes[pos + i];
    if (same) {
      pos += length;
      return cached.text;
    }
  }
  const start = pos;
  const text = readString(at, length);
  // A copy: the frame's memory is reused once the frame is handled (and Buffer#slice is a view).
  keyCache[slot] = { bytes: Uint8Array.prototype.slice.call(bytes, start, pos), text };
  return text;
}

/** The length of a string whose type byte (at `at`) was read, or -1 when the type is not a string. */
function stringLength(type: number, at: number): number {
  if (type >= 0xa0 && type <= 0xbf) return type & 0x1f;
  if (type === 0xd9) return readUint(at, 1);
  if (type === 0xda) return readUint(at, 2);
  if (type === 0xdb) return readUint(at, 4);
  return -1;
}

/**
 * Opens a map or an array of `count` entries whose header starts at `at`: returns it when
 * empty, or pushes it on the stack to be filled and returns `undefined`.
 */
function open(at: number, isMap: boolean, count: number): ClientValue | undefined {
  const what = isMap ? 'map' : 'array';
  if (stack.length >= MAX_CLIENT_DEPTH)
    throw refuse(`MessagePack nesting deeper than ${MAX_CLIENT_DEPTH} at byte ${at}`);
  if (++containers > MAX_CLIENT_CONTAINERS) {
    throw refuse(`MessagePack ${what} at byte ${at} is past ${MAX_CLIENT_CONTAINERS} maps and arrays in one frame`);
  }
  if (isMap && count > MAX_CLIENT_MAP_KEYS) {
    throw refuse(`MessagePack map at byte ${at} claims ${count} keys, more than ${MAX_CLIENT_MAP_KEYS}`);
  }
  const entries = isMap ? count * 2 : count;
  if (owed + entries > end - pos) {
    throw refuse(
      `MessagePack ${what} at byte ${at} claims ${count} entries: past the end of the frame (${end - pos} bytes left for ${owed + entries} pending entries)`,
    );
  }
  if (isMap) {
    const map = Object.create(null) as ClientMap;
    if (count === 0) return map;
    stack.push({ map, array: undefined, size: count, left: count, key: undefined });
  } else {
    if (count === 0) return [];
    // The claim is within the bytes left (checked above), so this is O(frame), not O(claim);
    // one allocation is several times cheaper than growing by push.
    const array = new Array<ClientValue>(count);
    stack.push({ map: undefined, array, size: count, left: count, key: undefined });
  }
  owed += entries;
  return undefined;
}

/**
 * Decodes one client frame of standard MessagePack with bounds: a frame of B bytes costs O(B)
 * time and memory, whatever its headers claim. Accepts nil, booleans, integers within ±(2^53 − 1)
 * (larger 64-bit integers are refused, not rounded), float 32/64, UTF-8 strings, arrays, and maps
 * with string keys (decoded with a null prototype). Refuses bin, every extension type (msgpackr's
 * records and structured-clone references included), 0xc1, a length claim past the bytes left,
 * nesting past {@link MAX_CLIENT_DEPTH}, more than {@link MAX_CLIENT_CONTAINERS} maps and arrays
 * or {@link MAX_CLIENT_MAP_KEYS} keys in a map, invalid UTF-8, the key `__proto__`, duplicate
 * keys and bytes after the value. Throws `GatewayError('BAD_REQUEST')` naming the fault and its
 * byte offset.
 */
export function decodeMsgpack(frame: Uint8Array, counter?: DecodeCounter): ClientValue {
  bytes = frame;
  pos = 0;
  end = frame.length;
  stack.length = 0;
  containers = 0;
  owed = 0;
  try {
    return decodeValue(counter);
  } finally {
    // Keep neither the client's bytes nor its values alive until the next frame.
    bytes = EMPTY;
    stack.length = 0;
  }
}

function decodeValue(counter: DecodeCounter | undefined): ClientValue {
  if (end === 0) throw refuse('binary frame is empty');
  let steps = 0;
  // One value, key or header per turn; every turn reads at least one byte.
  for (;;) {
    steps++;
    const top = stack[stack.length - 1];
    const at = pos;
    if (pos >= end) throw truncated(at);
    const type = bytes[pos++] as number;
    if (top !== undefined) owed--;

    if (top?.map !== undefined && top.key === undefined) {
      const length = stringLength(type, at);
      if (length < 0) throw refuse(`MessagePack map key at byte ${at} is not a string`);
      const key = readKey(at, length);
      if (key === '__proto__') throw refuse(`MessagePack map key "__proto__" at byte ${at} is not accepted`);
      if (key in top.map) throw refuse(`MessagePack map key ${quote(key)} at byte ${at} is a duplicate`);
      top.key = key;
      continue;
    }

    let value: ClientValue | undefined;
    if (type <= 0x7f) value = type;
    else if (type >= 0xe0) value = type - 0x100;
    else if (type <= 0x8f) value = open(at, true, type & 0x0f);
    else if (type <= 0x9f) value = open(at, false, type & 0x0f);
    else if (type <= 0xbf) value = readString(at, type & 0x1f);
    else {
      switch (type) {
        case 0xc0:
          value = null;
          break;
        case 0xc2:
          value = false;
          break;
        case 0xc3:
          value = true;
          break;
        case 0xc4:
        case 0xc5:
        case 0xc6:
          throw refuse(`MessagePack bin (${hex(type)}) at byte ${at} is not accepted: send strings`);
        case 0xc7:
        case 0xc8:
        case 0xc9:
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8: {
          // The extension's type code follows the header's length field (none for fixext).
          const codeAt = at + (type === 0xc7 ? 2 : type === 0xc8 ? 3 : type === 0xc9 ? 5 : 1);
          const code = codeAt < end ? ` ${((bytes[codeAt] as number) << 24) >> 24}` : '';
          throw refuse(`MessagePack extension type${code} (${hex(type)}) at byte ${at} is not accepted`);
        }
        case 0xca:
          value = readFloat(at, 4);
          break;
        case 0xcb:
          value = readFloat(at, 8);
          break;
        case 0xcc:
          value = readUint(at, 1);
          break;
        case 0xcd:
          value = readUint(at, 2);
          break;
        case 0xce:
          value = readUint(at, 4);
          break;
        case 0xcf:
          value = readInt64(at, false);
          break;
        case 0xd0:
          value = (readUint(at, 1) << 24) >> 24;
          break;
        case 0xd1:
          value = (readUint(at, 2) << 16) >> 16;
          break;
        case 0xd2:
          value = readUint(at, 4) | 0;
          break;
        case 0xd3:
          value = readInt64(at, true);
          break;
        case 0xd9:
        case 0xda:
        case 0xdb:
          value = readString(at, stringLength(type, at));
          break;
        case 0xdc:
          value = open(at, false, readUint(at, 2));
          break;
        case 0xdd:
          value = open(at, false, readUint(at, 4));
          break;
        case 0xde:
          value = open(at, true, readUint(at, 2));
          break;
        case 0xdf:
          value = open(at, true, readUint(at, 4));
          break;
        default:
          throw refuse(`binary frame is not MessagePack: type ${hex(type)} at byte ${at}`);
      }
    }
    // A container with entries was opened: its entries come next.
    if (value === undefined) continue;

    // Hand the value to the container it belongs to; the containers it completes follow it up.
    for (;;) {
      const parent = stack[stack.length - 1];
      if (parent === undefined) {
        if (pos !== end) throw refuse(`binary frame has ${end - pos} bytes after its value, from byte ${pos}`);
        if (counter !== undefined) counter.steps += steps;
        return value;
      }
      if (parent.map !== undefined) {
        parent.map[parent.key as string] = value;
        parent.key = undefined;
      } else {
        (parent.array as ClientValue[])[parent.size - parent.left] = value;
      }
      if (--parent.left > 0) break;
      stack.pop();
      steps++;
      value = (parent.map ?? parent.array) as ClientValue;
    }
  }
}

/** Keys seen so far in each open JSON object, by depth (index 0 unused). */
const jsonKeys = new Array<number>(MAX_CLIENT_DEPTH + 1).fill(0);

/**
 * Decodes one client frame of JSON with the bounds of {@link decodeMsgpack}: a scan of the text
 * refuses nesting past {@link MAX_CLIENT_DEPTH}, more than {@link MAX_CLIENT_CONTAINERS} objects
 * and arrays, or more than {@link MAX_CLIENT_MAP_KEYS} keys in an object before `JSON.parse`
 * runs; then a map key `__proto__` is refused (`JSON.parse` makes it an own property, harmless,
 * but it is refused as in MessagePack). Duplicate keys: the last wins, as `JSON.parse` does.
 * Throws `GatewayError('BAD_REQUEST')`.
 */
export function decodeJson(text: string, counter?: DecodeCounter): ClientValue {
  let depth = 0;
  let opened = 0;
  let inString = false;
  const length = text.length;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x3a) {
      // A colon outside strings ends a key (or is invalid JSON, which JSON.parse refuses).
      if (depth > 0 && ++(jsonKeys[depth] as number) > MAX_CLIENT_MAP_KEYS) {
        throw refuse(`JSON object has more than ${MAX_CLIENT_MAP_KEYS} keys, at character ${i}`);
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_CLIENT_DEPTH) throw refuse(`JSON nesting deeper than ${MAX_CLIENT_DEPTH} at character ${i}`);
      if (++opened > MAX_CLIENT_CONTAINERS) {
        throw refuse(`JSON has more than ${MAX_CLIENT_CONTAINERS} objects and arrays, at character ${i}`);
      }
      jsonKeys[depth] = 0;
    } else if (c === 0x5d || c === 0x7d) {
      // Invalid JSON may close more than it opened; JSON.parse refuses it, the scan stays in bounds.
      if (depth > 0) depth--;
    }
  }
  let value: ClientValue;
  try {
    value = JSON.parse(text) as ClientValue;
  } catch {
    throw refuse('text frame is not JSON');
  }
  let steps = length;
  // At most MAX_CLIENT_CONTAINERS containers of at most MAX_CLIENT_MAP_KEYS keys each are walked
  // (arrays are only scanned for containers): each value is touched once.
  const pending: ClientValue[] = [value];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    steps++;
    if (typeof next !== 'object' || next === null) continue;
    if (Array.isArray(next)) {
      for (const item of next) {
        steps++;
        if (typeof item === 'object' && item !== null) pending.push(item);
      }
      continue;
    }
    for (const key of Object.keys(next)) {
      steps++;
      if (key === '__proto__') throw refuse('JSON map key "__proto__" is not accepted');
      const item = next[key] as ClientValue;
      if (typeof item === 'object' && item !== null) pending.push(item);
    }
  }
  if (counter !== undefined) counter.steps += steps;
  return value;
}

/**
 * Decodes one client WebSocket frame with bounds: MessagePack when binary
 * ({@link decodeMsgpack}), JSON when text ({@link decodeJson}; uWebSockets.js has already
 * dropped a connection whose text was not UTF-8). Throws `GatewayError('BAD_REQUEST')`.
 */
export function decodeClientFrame(data: ArrayBuffer, isBinary: boolean, counter?: DecodeCounter): ClientValue {
  return isBinary
    ? decodeMsgpack(new Uint8Array(data), counter)
    : decodeJson(Buffer.from(data).toString('utf8'), counter);
}
