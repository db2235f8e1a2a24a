import { Packr } from 'msgpackr';
import type { ServerMessage } from './messages.ts';

/** Wire encodings of protocol v1: binary MessagePack frames (the default), or JSON text frames. */
export type Encoding = 'msgpack' | 'json';

// Standard MessagePack only (no records, no extension types), as the gateway speaks it.
const packr = new Packr({ useRecords: false, variableMapSize: true });

/** Encodes a client message for the wire: bytes for MessagePack, a string for JSON. */
export function encodeClientMessage(
  encoding: Encoding,
  message: Readonly<Record<string, unknown>>,
): string | Uint8Array {
  return encoding === 'json' ? JSON.stringify(message) : packr.pack(message);
}

/**
 * Decodes a frame as the WebSocket delivers it (a string for a text frame; an `ArrayBuffer` or a
 * view for a binary one) into a server message; throws on anything that is not a map with a
 * string `type`.
 */
export function decodeServerMessage(data: unknown): ServerMessage {
  let value: unknown;
  if (typeof data === 'string') value = JSON.parse(data);
  else if (data instanceof ArrayBuffer) value = packr.unpack(new Uint8Array(data));
  else if (ArrayBuffer.isView(data))
    value = packr.unpack(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  else throw new TypeError(`unexpected frame data: ${Object.prototype.toString.call(data)}`);
  if (typeof value !== 'object' || value === null || typeof (value as { type?: unknown }).type !== 'string') {
    throw new TypeError('a server message must be a map with a string `type`');
  }
  return value as ServerMessage;
}
