import { unpack as msgpackrUnpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  buildFrame,
  EncodedFields,
  EncodedValue,
  type Encoding,
  encodeMessage,
  encodePrefix,
  type Frame,
} from './encode.ts';

const ENCODINGS: readonly Encoding[] = ['msgpack', 'json'];

function decode(frame: Frame): unknown {
  return typeof frame === 'string' ? JSON.parse(frame) : msgpackrUnpack(frame);
}

function bytesOf(frame: Frame): Buffer {
  if (typeof frame === 'string') throw new Error('expected a MessagePack frame');
  return Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
}

/** The header byte(s) of the `events` array: the bytes after the `events` key. */
function eventsHeader(frame: Frame, length: number): number[] {
  const bytes = bytesOf(frame);
  const key = Buffer.from([0xa6, ...Buffer.from('events')]);
  const at = bytes.indexOf(key);
  if (at < 0) throw new Error('no events key in frame');
  return [...bytes.subarray(at + key.length, at + key.length + length)];
}

const FIELDS = { chainId: 1, block: { number: 7, hash: '0xab', timestamp: 1_700_000_000 }, cursor: '1:7:0xab' };

describe('buildFrame', () => {
  it.each(ENCODINGS)(
    '%s: with pick, carries the picked events in that order, the same bytes as a list of them',
    (encoding) => {
      const all = Array.from({ length: 20 }, (_, i) => new EncodedValue({ kind: 'tx', id: `0x${i}` }));
      const prefix = encodePrefix('activity', 's1');
      const fields = new EncodedFields(FIELDS);
      for (const pick of [[3], [0, 5, 19], Array.from({ length: 17 }, (_, i) => i + 2)]) {
        const picked = buildFrame(encoding, prefix, fields, all, pick);
        const listed = buildFrame(
          encoding,
          prefix,
          fields,
          pick.map((i) => all[i] as EncodedValue),
        );
        expect(typeof picked === 'string' ? picked : Buffer.from(picked)).toEqual(
          typeof listed === 'string' ? listed : Buffer.from(listed),
        );
        expect((decode(picked) as { events: Array<{ id: string }> }).events.map((e) => e.id)).toEqual(
          pick.map((i) => `0x${i}`),
        );
      }
    },
  );

  it.each(ENCODINGS)('%s: decodes to exactly {type, sub, ...fields, events}', (encoding) => {
    const events = [
      { kind: 'tx', id: '0x1' },
      { kind: 'tx', id: '0x2' },
    ].map((e) => new EncodedValue(e));
    const frame = buildFrame(encoding, encodePrefix('activity', 's1'), new EncodedFields(FIELDS), events);
    const decoded = decode(frame);
    expect(decoded).toStrictEqual({
      type: 'activity',
      sub: 's1',
      ...FIELDS,
      events: [
        { kind: 'tx', id: '0x1' },
        { kind: 'tx', id: '0x2' },
      ],
    });
    expect(Object.keys(decoded as object)).toEqual(['type', 'sub', 'chainId', 'block', 'cursor', 'events']);
  });

  it('gives a string for json and bytes for msgpack', () => {
    const prefix = encodePrefix('block', 's1');
    const fields = new EncodedFields(FIELDS);
    expect(typeof buildFrame('json', prefix, fields)).toBe('string');
    expect(buildFrame('msgpack', prefix, fields)).toBeInstanceOf(Uint8Array);
  });

  it.each(ENCODINGS)('%s: leaves out the events key when no events are given', (encoding) => {
    const frame = buildFrame(encoding, encodePrefix('block', 's9'), new EncodedFields(FIELDS));
    expect(decode(frame)).toStrictEqual({ type: 'block', sub: 's9', ...FIELDS });
  });

  it.each(ENCODINGS)('%s: a message of type and sub only when there are no fields', (encoding) => {
    expect(decode(buildFrame(encoding, encodePrefix('block', 's1'), new EncodedFields({})))).toStrictEqual({
      type: 'block',
      sub: 's1',
    });
    expect(decode(buildFrame(encoding, encodePrefix('block', 's1'), new EncodedFields({}), []))).toStrictEqual({
      type: 'block',
      sub: 's1',
      events: [],
    });
  });

  it.each([
    [0, [0x90]],
    [1, [0x91]],
    [15, [0x9f]],
    [16, [0xdc, 0x00, 0x10]],
    [65_535, [0xdc, 0xff, 0xff]],
    [65_536, [0xdd, 0x00, 0x01, 0x00, 0x00]],
    [70_000, [0xdd, 0x00, 0x01, 0x11, 0x70]],
  ])('msgpack: %i events get the array header %j and decode in order', (count, header) => {
    const events = Array.from({ length: count }, (_, i) => new EncodedValue(i));
    const frame = buildFrame('msgpack', encodePrefix('activity', 's1'), new EncodedFields(FIELDS), events);
    expect(eventsHeader(frame, header.length)).toEqual(header);
    const decoded = decode(frame) as { events: number[] };
    expect(decoded.events).toHaveLength(count);
    expect(decoded.events.every((value, i) => value === i)).toBe(true);
    expect(decoded).toStrictEqual({ type: 'activity', sub: 's1', ...FIELDS, events: decoded.events });
  });

  it('json: 70000 events decode in order', () => {
    const events = Array.from({ length: 70_000 }, (_, i) => new EncodedValue(i));
    const decoded = decode(buildFrame('json', encodePrefix('activity', 's1'), new EncodedFields(FIELDS), events)) as {
      events: number[];
    };
    expect(decoded.events).toHaveLength(70_000);
    expect(decoded.events.every((value, i) => value === i)).toBe(true);
  });

  it.each([
    [13, 15, 'fixmap', [0x8f]],
    [14, 16, 'map16', [0xde, 0x00, 0x10]],
  ])('msgpack: %i fields and no events make a map of %i entries with a %s header', (fieldCount, _, __, header) => {
    const fields = Object.fromEntries(Array.from({ length: fieldCount }, (_, i) => [`f${i}`, i]));
    const frame = buildFrame('msgpack', encodePrefix('block', 's1'), new EncodedFields(fields));
    expect([...bytesOf(frame).subarray(0, header.length)]).toEqual(header);
    expect(decode(frame)).toStrictEqual({ type: 'block', sub: 's1', ...fields });
  });

  it.each(ENCODINGS)('%s: 20 fields plus events decode to a map of 23 entries', (encoding) => {
    const fields = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`field${i}`, `v${i}`]));
    const frame = buildFrame(encoding, encodePrefix('activity', 's1'), new EncodedFields(fields), [
      new EncodedValue({ a: 1 }),
    ]);
    if (encoding === 'msgpack') expect([...bytesOf(frame).subarray(0, 3)]).toEqual([0xde, 0x00, 23]);
    expect(decode(frame)).toStrictEqual({ type: 'activity', sub: 's1', ...fields, events: [{ a: 1 }] });
  });

  it.each(ENCODINGS)('%s: one EncodedFields shared by many frames gives each the same content', (encoding) => {
    const fields = new EncodedFields(FIELDS);
    const one = decode(buildFrame(encoding, encodePrefix('block', 'a'), fields));
    const two = decode(buildFrame(encoding, encodePrefix('block', 'b'), fields));
    expect(one).toStrictEqual({ type: 'block', sub: 'a', ...FIELDS });
    expect(two).toStrictEqual({ type: 'block', sub: 'b', ...FIELDS });
  });

  it.each(ENCODINGS)('%s: escapes a sub id that needs quoting', (encoding) => {
    const sub = 'a"b\\c\u00e9';
    expect(decode(buildFrame(encoding, encodePrefix('block', sub), new EncodedFields({ n: 1 })))).toStrictEqual({
      type: 'block',
      sub,
      n: 1,
    });
  });
});

describe('EncodedFields', () => {
  it('counts only the defined fields', () => {
    expect(new EncodedFields({ a: 1, b: undefined, c: null, d: 0 }).count).toBe(3);
  });

  it.each(ENCODINGS)('%s: skips undefined values and keeps null', (encoding) => {
    const frame = buildFrame(encoding, encodePrefix('block', 's1'), new EncodedFields({ a: 1, b: undefined, c: null }));
    const decoded = decode(frame);
    expect(decoded).toStrictEqual({ type: 'block', sub: 's1', a: 1, c: null });
    expect(decoded).not.toHaveProperty('b');
  });

  it.each(ENCODINGS)('%s: all fields undefined gives a message of type and sub only', (encoding) => {
    const frame = buildFrame(encoding, encodePrefix('block', 's1'), new EncodedFields({ a: undefined }));
    expect(decode(frame)).toStrictEqual({ type: 'block', sub: 's1' });
  });

  it('encodes once: the same msgpack bytes instance on a second access', () => {
    const fields = new EncodedFields(FIELDS);
    expect(fields.msgpack).toBe(fields.msgpack);
    expect(fields.json).toBe(fields.json);
  });
});

describe('EncodedValue', () => {
  it('encodes once: the same Uint8Array instance on a second access', () => {
    const value = new EncodedValue({ kind: 'tx', id: '0x1' });
    const first = value.msgpack;
    expect(value.msgpack).toBe(first);
    expect(msgpackrUnpack(first)).toStrictEqual({ kind: 'tx', id: '0x1' });
  });

  it('keeps its bytes intact after many other values are packed', () => {
    const value = new EncodedValue({ kind: 'tx', id: '0x1' });
    const copy = Uint8Array.from(value.msgpack);
    for (let i = 0; i < 10_000; i++) new EncodedValue({ i, pad: 'x'.repeat(64) }).msgpack;
    expect([...value.msgpack]).toEqual([...copy]);
  });

  it('encodes json once and as JSON.stringify does', () => {
    const value = new EncodedValue({ to: null, value: '0x0' });
    expect(value.json).toBe('{"to":null,"value":"0x0"}');
  });
});

describe('encodeMessage', () => {
  it.each(ENCODINGS)('%s: decodes to the message', (encoding) => {
    const message = { type: 'pong', id: 3 };
    expect(decode(encodeMessage(encoding, message))).toStrictEqual(message);
  });

  it('writes standard MessagePack maps, not msgpackr records', () => {
    const bytes = bytesOf(encodeMessage('msgpack', { type: 'pong', id: 3 }));
    expect(bytes[0]).toBe(0x82);
  });
});
