import type { FinalityLevel } from '../../packages/client/src/protocol.ts';
import { toAddress } from '../domain/address.ts';
import { GatewayError } from '../domain/errors.ts';
import { EVENT_KINDS, type EventKind, type Hex } from '../domain/types.ts';
import { decodeClientFrame } from './decodeClientFrame.ts';

/** A request `id` as the client sent it, echoed in the reply. */
export type RequestId = number | string;

/** A validated client message (PROTOCOL.md, Client to server). */
export type Request =
  | {
      readonly op: 'subscribe';
      readonly id?: RequestId;
      readonly channel: 'blocks';
      readonly chainId?: number;
      readonly full: boolean;
      readonly fullInput: boolean;
      readonly confirmations: number;
      readonly finality?: FinalityLevel;
      readonly from?: unknown;
    }
  | {
      readonly op: 'subscribe';
      readonly id?: RequestId;
      readonly channel: 'activity';
      readonly chainId?: number;
      readonly addresses: readonly Hex[];
      /** `undefined` when the client named no kinds: every kind the gateway serves. */
      readonly kinds?: ReadonlySet<EventKind>;
      readonly pending: boolean;
      readonly confirmations: number;
      readonly finality?: FinalityLevel;
      readonly from?: unknown;
    }
  | {
      readonly op: 'update';
      readonly id?: RequestId;
      readonly sub: string;
      readonly add: readonly Hex[];
      readonly remove: readonly Hex[];
    }
  | { readonly op: 'unsubscribe'; readonly id?: RequestId; readonly sub: string }
  | { readonly op: 'ping'; readonly id?: RequestId }
  /** A fresh token for a connection opened with one, sent before the old one expires. */
  | { readonly op: 'auth'; readonly id?: RequestId; readonly token: string };

/** The outcome of parsing one frame: a request, or an error to answer with (and the id, if any). */
export type ParseResult =
  | { readonly ok: true; readonly request: Request }
  | { readonly ok: false; readonly id?: RequestId; readonly error: GatewayError };

const FIELDS: ReadonlyMap<string, readonly string[]> = new Map(
  Object.entries({
    subscribe: [
      'op',
      'id',
      'channel',
      'chainId',
      'full',
      'fullInput',
      'addresses',
      'kinds',
      'pending',
      'confirmations',
      'finality',
      'from',
    ],
    update: ['op', 'id', 'sub', 'add', 'remove'],
    unsubscribe: ['op', 'id', 'sub'],
    ping: ['op', 'id'],
    auth: ['op', 'id', 'token'],
  }),
);
const BLOCK_ONLY = ['full', 'fullInput'];
const ACTIVITY_ONLY = ['addresses', 'kinds', 'pending'];
const MAX_ID_CHARS = 128;
/** Longest token read (a longer one is refused unread). */
const MAX_TOKEN_CHARS = 8192;
/** Characters of a client's string an error message quotes; an address (42) fits. */
const QUOTED_CHARS = 42;

function bad(message: string): GatewayError {
  return new GatewayError('BAD_REQUEST', message);
}

/**
 * A client value as error messages show it: a string as a JSON literal of at most
 * {@link QUOTED_CHARS} characters, anything else by its type only (never stringified).
 */
function shown(value: unknown): string {
  if (typeof value !== 'string') return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  return value.length > QUOTED_CHARS ? `${JSON.stringify(value.slice(0, QUOTED_CHARS))}…` : JSON.stringify(value);
}

/** A map, as the frame decoders build them: not an array, not null. */
function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalBoolean(msg: Record<string, unknown>, key: string): boolean {
  const value = msg[key];
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw bad(`${key} must be a boolean`);
  return value;
}

function optionalUint(msg: Record<string, unknown>, key: string): number | undefined {
  const value = msg[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw bad(`${key} must be a non-negative integer`);
  }
  return value;
}

function subId(msg: Record<string, unknown>): string {
  const sub = msg['sub'];
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > MAX_ID_CHARS) {
    throw bad('sub must be the subscription id the server gave');
  }
  return sub;
}

/** Validates a list of addresses; the first bad entry is a `BAD_ADDRESS` naming it. */
function addressList(msg: Record<string, unknown>, key: string, required: boolean): Hex[] {
  const value = msg[key];
  if (value === undefined && !required) return [];
  if (!Array.isArray(value)) throw bad(`${key} must be an array of addresses`);
  const out = new Set<Hex>();
  value.forEach((raw, i) => {
    const address = toAddress(raw);
    if (address === undefined) {
      throw new GatewayError('BAD_ADDRESS', `${key}[${i}] is not an address: ${shown(raw)}`);
    }
    out.add(address);
  });
  return [...out];
}

function kindList(msg: Record<string, unknown>): Set<EventKind> | undefined {
  const value = msg['kinds'];
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length === 0)
    throw bad(`kinds must be a non-empty array of ${EVENT_KINDS.join(', ')}`);
  const kinds = new Set<EventKind>();
  for (const kind of value) {
    if (!(EVENT_KINDS as readonly unknown[]).includes(kind)) {
      throw bad(`unknown kind ${shown(kind)}; kinds are ${EVENT_KINDS.join(', ')}`);
    }
    kinds.add(kind as EventKind);
  }
  return kinds;
}

/** `finality`: absent, `"safe"` or `"finalized"`. */
function finalityLevel(msg: Record<string, unknown>): FinalityLevel | undefined {
  const value = msg['finality'];
  if (value === undefined) return undefined;
  if (value !== 'safe' && value !== 'finalized') throw bad('finality must be "safe" or "finalized"');
  return value;
}

function parseSubscribe(msg: Record<string, unknown>, id: RequestId | undefined): Request {
  const channel = msg['channel'];
  if (typeof channel !== 'string') throw bad('channel must be "blocks" or "activity"');
  if (channel !== 'blocks' && channel !== 'activity') {
    throw new GatewayError('UNSUPPORTED', `channel ${shown(channel)} is not served; channels are blocks, activity`);
  }
  const misplaced = (channel === 'blocks' ? ACTIVITY_ONLY : BLOCK_ONLY).find((key) => msg[key] !== undefined);
  if (misplaced !== undefined) throw bad(`${misplaced} does not apply to channel ${channel}`);
  const chainId = optionalUint(msg, 'chainId');
  const confirmations = optionalUint(msg, 'confirmations') ?? 0;
  const finality = finalityLevel(msg);
  if (finality !== undefined && confirmations > 0) {
    throw bad('finality and confirmations do not go together: ask for one of them');
  }
  const common = {
    op: 'subscribe' as const,
    ...(id === undefined ? {} : { id }),
    ...(chainId === undefined ? {} : { chainId }),
    confirmations,
    ...(finality === undefined ? {} : { finality }),
    ...(msg['from'] === undefined ? {} : { from: msg['from'] }),
  };
  if (channel === 'blocks') {
    return { ...common, channel, full: optionalBoolean(msg, 'full'), fullInput: optionalBoolean(msg, 'fullInput') };
  }
  const kinds = kindList(msg);
  return {
    ...common,
    channel,
    addresses: addressList(msg, 'addresses', true),
    ...(kinds === undefined ? {} : { kinds }),
    pending: optionalBoolean(msg, 'pending'),
  };
}

function parseMessage(msg: Record<string, unknown>, id: RequestId | undefined): Request {
  const op = msg['op'];
  if (typeof op !== 'string') throw bad('op must be a string: subscribe, update, unsubscribe, ping or auth');
  const allowed = FIELDS.get(op);
  if (allowed === undefined) throw bad(`unknown op ${shown(op)}`);
  const unknown = Object.keys(msg).find((key) => !allowed.includes(key));
  if (unknown !== undefined) throw bad(`unknown field ${shown(unknown)} for op ${op}`);
  const withId = id === undefined ? {} : { id };
  switch (op) {
    case 'subscribe':
      return parseSubscribe(msg, id);
    case 'update': {
      const sub = subId(msg);
      if (msg['add'] === undefined && msg['remove'] === undefined) throw bad('update needs add or remove');
      return { op, ...withId, sub, add: addressList(msg, 'add', false), remove: addressList(msg, 'remove', false) };
    }
    case 'unsubscribe':
      return { op, ...withId, sub: subId(msg) };
    case 'auth': {
      const token = msg['token'];
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_CHARS) {
        throw bad(`token must be a JWT of at most ${MAX_TOKEN_CHARS} characters`);
      }
      return { op, ...withId, token };
    }
    default:
      return { op: 'ping', ...withId };
  }
}

/**
 * Decodes and validates one client frame: MessagePack when binary, JSON when text, both with
 * the bounds of {@link decodeClientFrame} (O(bytes) time and memory). Never throws: every fault
 * becomes an error result with the code of PROTOCOL.md and a message of bounded length.
 */
export function parseRequest(data: ArrayBuffer, isBinary: boolean): ParseResult {
  let raw: unknown;
  try {
    raw = decodeClientFrame(data, isBinary);
  } catch (error) {
    if (error instanceof GatewayError) return { ok: false, error };
    return { ok: false, error: bad(isBinary ? 'binary frame is not MessagePack' : 'text frame is not JSON') };
  }
  if (!isRecord(raw)) return { ok: false, error: bad('message must be a map with an op') };
  const rawId = raw['id'];
  const idOk =
    rawId === undefined ||
    (typeof rawId === 'number' && Number.isFinite(rawId)) ||
    (typeof rawId === 'string' && rawId.length <= MAX_ID_CHARS);
  if (!idOk) return { ok: false, error: bad(`id must be a number or a string of at most ${MAX_ID_CHARS} characters`) };
  const id = rawId as RequestId | undefined;
  try {
    return { ok: true, request: parseMessage(raw, id) };
  } catch (error) {
    // Anything else is a fault of this code, not of the client: say so without quoting input.
    const gatewayError = error instanceof GatewayError ? error : bad('message could not be read');
    return { ok: false, ...(id === undefined ? {} : { id }), error: gatewayError };
  }
}
