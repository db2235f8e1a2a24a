import uWS from 'uWebSockets.js';
import { type CursorPosition, parseCursor } from '../domain/cursor.ts';
import { CloseCode, GatewayError, type ProtocolErrorCode } from '../domain/errors.ts';
import { type BlockRef, EVENT_KINDS, type EventKind, type Hex } from '../domain/types.ts';
import { type Encoding, encodeMessage, type Frame } from '../fanout/encode.ts';
import type { Subscription, SubscriptionFilter, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import type { Metrics, REFUSAL_REASONS } from '../metrics/metrics.ts';
import type { TlsFiles } from './checkTls.ts';
import { addressKey, clientAddress, normalizeIp } from './clientAddress.ts';
import { type Admission, type Auth, createAuth, type Grant } from './createAuth.ts';
import { openFilesCounter, openFilesLimit } from './descriptors.ts';
import { LIVE_PAGE_CSP, LIVE_PAGE_HTML } from './livePage.ts';
import { parseRequest, type Request, type RequestId } from './parseRequest.ts';
import { type RpcChain, RpcSession } from './RpcSession.ts';
import { RpcErrorCode } from './rpcProtocol.ts';

/** Per-connection limits, all reported to clients in `welcome.limits`. */
export interface Limits {
  /** Watched addresses per connection, over all its subscriptions. @default 10000 */
  readonly maxAddresses: number;
  /** Subscriptions per connection. @default 100 */
  readonly maxSubscriptions: number;
  /** Largest client message, in bytes; a larger frame closes the connection with 1009. @default 1048576 */
  readonly maxMessageBytes: number;
  /** Send buffer per connection, in bytes; past it the connection is closed with 4008. @default 4194304 */
  readonly maxBackpressureBytes: number;
  /** Client messages per second per connection (a burst of as many is allowed). @default 100 */
  readonly maxRequestsPerSecond: number;
  /**
   * Open connections per client address (an IPv6 /64 counts as one); past it the upgrade is
   * refused with HTTP 429. 0 means no limit. @default 500
   */
  readonly maxConnectionsPerIp: number;
}

/** Bounds over all connections: past them new work is refused, never admitted until memory runs out. */
export interface Capacity {
  /** Open connections in all; past it an upgrade is refused with HTTP 503. */
  readonly maxConnections: number;
  /** Watched (subscription, address) pairs in all; past it `subscribe` and `update` get `OVERLOADED`. */
  readonly maxWatchedAddresses: number;
}

/** Where a resume stands, as {@link ChainDirectory.resume} started it. */
export interface ResumeTicket {
  /** `done`: finished within the call; `queued`: waits its turn; `full`: refused, nothing was done. */
  readonly status: 'done' | 'queued' | 'full';
  /** Abandons it (the subscription ended first). */
  readonly cancel: () => void;
}

/** The chains the gateway follows, as the transport sees them. */
export interface ChainDirectory {
  /** Chain ids in configuration order; the first is the default of `subscribe`. */
  readonly chainIds: () => readonly number[];
  /** The newest block of a chain. */
  readonly head: (chainId: number) => BlockRef | undefined;
  /** Whether every chain's head is fresh (for `/readyz`). */
  readonly ready: () => boolean;
  /**
   * Resumes `sub` (made, not live) from a client's cursor (PROTOCOL.md, Resume): sends what it
   * missed, at most `maxBytes`, then calls `onDone(true)`, at once or later, in turn with other
   * resumes; or sends nothing and calls `onDone(false)`. `onDone` must make the subscription live
   * before it returns. A `full` ticket calls nothing: the queue of resumes had no room for it (in
   * all, or for this connection).
   */
  readonly resume: (
    sub: Subscription<Connection>,
    cursor: CursorPosition | undefined,
    maxBytes: number,
    onDone: (recovered: boolean) => void,
  ) => ResumeTicket;
  /** Forgets what was kept for a subscription that ended. */
  readonly release: (sub: Subscription<Connection>) => void;
  /** A delay to suggest to a client whose resume was refused for a full queue, in ms. */
  readonly retryAfterMs: () => number;
  /**
   * The cursor of the last block a subscription's depth has been sent: everything up to it has
   * been written (a quiet subscription can resume from there).
   */
  readonly position: (sub: Subscription<Connection>) => string | undefined;
}

/** Options of {@link createServer}. */
export interface ServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Seconds without traffic before a connection is dropped (pings are sent automatically). @default 120 */
  readonly idleTimeoutSec: number;
  /** Largest `confirmations` a subscription may ask for (reported in `welcome.limits`). @default 64 */
  readonly maxConfirmations: number;
  readonly limits: Limits;
  readonly capacity: Capacity;
  /** Addresses of reverse proxies whose `X-Forwarded-For` names the client. @default [] */
  readonly trustedProxies?: readonly string[];
  /** Who may open a socket, and with which quotas (keys, tokens, origins). @default anyone */
  readonly auth?: Auth;
  /** A certificate and key: serve `wss://` and `https://` instead of `ws://` and `http://`. */
  readonly tls?: TlsFiles;
  /** The chains of `/rpc` (JSON-RPC), and the methods it sends on to their nodes. Without it, `/rpc` is 404. */
  readonly rpc?: {
    readonly chains: ReadonlyMap<number, RpcChain>;
    readonly forwardable: ReadonlySet<string>;
  };
  readonly chains: ChainDirectory;
  readonly index: SubscriptionIndex<Connection>;
  readonly metrics: Metrics;
  /** Operational events worth a log line (accepting paused or resumed). */
  readonly log?: (message: string) => void;
}

/** The limits of one connection that a key may set (PROTOCOL.md, Authentication). */
export interface SessionLimits {
  readonly maxAddresses: number;
  readonly maxSubscriptions: number;
  readonly maxRequestsPerSecond: number;
}

/** A client connection's state (the uWS user data). */
export interface Connection {
  /** The client's address, as text (see {@link clientAddress}). */
  readonly ip: string;
  /** What the per-address limit counts it by (see {@link addressKey}). */
  readonly ipKey: string;
  readonly encoding: Encoding;
  readonly subs: Map<string, Subscription<Connection>>;
  /** Subscriptions still being resumed (not live yet): how to abandon each. */
  readonly resuming: Map<string, { cancel: (() => void) | undefined }>;
  addressCount: number;
  nextSid: number;
  tokens: number;
  refilledAt: number;
  rateLimitedInARow: number;
  /** Malformed messages since the last valid one. */
  malformedInARow: number;
  /** What its key or token allows; `undefined` when the gateway needs no credential. */
  grant: Grant | undefined;
  /** Its own limits: the gateway's, or its key's. */
  limits: SessionLimits;
  /** Closes it when its token expires. */
  deadline: ReturnType<typeof setTimeout> | undefined;
  /** A token refresh is being checked. */
  refreshing: boolean;
  /** On `/rpc`: the chain it follows, and (once open) its JSON-RPC session. */
  readonly rpcChain: RpcChain | undefined;
  rpc: RpcSession | undefined;
  closed: boolean;
  ws: uWS.WebSocket<Connection> | undefined;
}

/** A listening gateway server. */
export interface Server {
  readonly port: number;
  /** Whether it serves TLS (`wss://`, `https://`). */
  readonly secure: boolean;
  /**
   * Serves a new certificate to new connections; open ones keep theirs and stay open. The new
   * listening socket opens before the old one closes, so no connection is refused meanwhile.
   */
  readonly reloadTls: (files: TlsFiles) => Promise<void>;
  /** Writes one block's frames to a connection, corked into one write; closes it with 4008 when it is too slow. */
  readonly deliver: (conn: Connection, frames: readonly Frame[]) => void;
  /** Number of open connections. */
  readonly connections: () => number;
  /** Closes every connection with 1001 and stops listening. */
  readonly close: () => void;
}

/**
 * Fails when uWebSockets.js loaded its slow JavaScript fallback instead of the native binary
 * (the fallback lacks the native-only exports `getParts` and `SSLApp`).
 */
export function assertNativeUws(): void {
  const exports = uWS as unknown as Record<string, unknown>;
  if (typeof exports['getParts'] !== 'function' || typeof exports['SSLApp'] !== 'function') {
    throw new GatewayError(
      'NATIVE_UWS_MISSING',
      'uWebSockets.js loaded its JavaScript fallback, not the native binary: check the platform, Node.js version (20) and glibc',
    );
  }
}

/** Frames up to this many times `maxMessageBytes` are read and closed with 1009; larger ones are cut off. */
const HARD_PAYLOAD_FACTOR = 4;
/** Malformed messages in a row past which the connection is closed with 1008 (PROTOCOL.md). */
export const MAX_MALFORMED_IN_A_ROW = 16;
/** What uWebSockets.js reports when it dropped a connection for a text frame that is not UTF-8. */
const INVALID_UTF8_REASON = 'Received invalid UTF-8';
const ENCODINGS: readonly string[] = ['msgpack', 'json'];
/** The activity kinds this gateway decodes; a subscription without `kinds` gets all of them. */
const SERVED_KINDS: ReadonlySet<EventKind> = new Set(EVENT_KINDS);

/** Calls in one `/rpc` batch; a larger batch is answered with one error. */
const RPC_MAX_BATCH = 100;
/** Calls of one `/rpc` connection waiting for the node at once. */
const RPC_MAX_FORWARDS_PER_CONNECTION = 16;
/** Logs a `fromBlock` backfill of `/rpc` sends at most. */
const RPC_MAX_BACKFILL_LOGS = 10_000;
const TEXT = new TextDecoder();

/** The label of a JSON-RPC error code in `blockcast_transport_errors_total`: our own codes by name, any node's as one. */
function rpcErrorLabel(code: number): string {
  switch (code) {
    case RpcErrorCode.parseError:
      return 'RPC_PARSE_ERROR';
    case RpcErrorCode.invalidRequest:
      return 'RPC_INVALID_REQUEST';
    case RpcErrorCode.methodNotFound:
      return 'RPC_METHOD_NOT_FOUND';
    case RpcErrorCode.invalidParams:
      return 'RPC_INVALID_PARAMS';
    case RpcErrorCode.limitExceeded:
      return 'RPC_LIMIT_EXCEEDED';
    case RpcErrorCode.forbidden:
      return 'RPC_FORBIDDEN';
    case RpcErrorCode.serverError:
      return 'RPC_SERVER_ERROR';
    default:
      return 'RPC_NODE_ERROR';
  }
}

/** How often the open-files count is looked at, in ms (a listing where the count is not cheap: every second). */
const DESCRIPTOR_CHECK_MS = 100;

/** What a connection's key or token is, for `welcome.auth` and `authed`. */
function authSummary(grant: Grant): Record<string, unknown> {
  return {
    key: grant.profile.name,
    ...(grant.subject === undefined ? {} : { subject: grant.subject }),
    ...(grant.expiresAtMs === undefined ? {} : { expiresAt: Math.floor(grant.expiresAtMs / 1000) }),
    ...(grant.addresses === undefined ? {} : { addresses: grant.addresses.size }),
  };
}

/** Starts the WebSocket + HTTP server of protocol v1 (PROTOCOL.md) on one port. */
export function createServer(options: ServerOptions): Promise<Server> {
  assertNativeUws();
  const { limits, capacity, index, metrics, chains } = options;
  const auth = options.auth ?? createAuth({ keys: [], origins: [] });
  const trusted = new Set((options.trustedProxies ?? []).map(normalizeIp));
  const log = options.log ?? (() => undefined);
  const open = new Set<Connection>();
  /** Connections per client address key, from upgrade to close. */
  const perIp = new Map<string, number>();
  /** Connections per key (or token subject), from upgrade to close. */
  const perKey = new Map<string, number>();
  const defaultLimits: SessionLimits = {
    maxAddresses: limits.maxAddresses,
    maxSubscriptions: limits.maxSubscriptions,
    maxRequestsPerSecond: limits.maxRequestsPerSecond,
  };
  /** Connections from upgrade to close (open ones and those whose upgrade is under way). */
  let connectionCount = 0;
  /** Watched (subscription, address) pairs over every connection, live or resuming. */
  let watchedTotal = 0;
  let closing = false;

  const updateIndexGauges = (): void => {
    const counts = index.countByChannel();
    metrics.subscriptions.set({ channel: 'blocks' }, counts.blocks);
    metrics.subscriptions.set({ channel: 'activity' }, counts.activity);
    metrics.watchedAddresses.set(index.watchedAddresses);
  };

  const end = (conn: Connection, code: number, reason: string, metric: string): void => {
    if (conn.closed || conn.ws === undefined) return;
    conn.closed = true;
    metrics.closes.inc({ reason: metric });
    conn.ws.end(code, reason);
  };

  const send = (conn: Connection, message: Record<string, unknown>): void => {
    if (conn.closed || conn.ws === undefined) return;
    const status = conn.ws.send(encodeMessage(conn.encoding, message), conn.encoding === 'msgpack');
    if (status === 2) end(conn, CloseCode.slowConsumer, 'slow consumer', 'slow_consumer');
  };

  const sendError = (
    conn: Connection,
    id: RequestId | undefined,
    code: ProtocolErrorCode,
    message: string,
    extra: Record<string, unknown> = {},
  ): void => {
    metrics.errors.inc({ code });
    send(conn, { type: 'error', ...(id === undefined ? {} : { id }), code, message, ...extra });
  };

  const headOf = (chainId: number): { number: number; hash: Hex } | null => {
    const head = chains.head(chainId);
    return head === undefined ? null : { number: head.number, hash: head.hash };
  };

  const cursorOf = (sub: Subscription<Connection>): { cursor?: string } => {
    const cursor = chains.position(sub);
    return cursor === undefined ? {} : { cursor };
  };

  /** Counts a request refused by the quota of a connection's key. */
  const quotaHit = (
    conn: Connection,
    quota: 'subscriptions' | 'addresses' | 'requests_per_second' | 'allowed',
  ): void => {
    if (conn.grant !== undefined) metrics.quotaHits.inc({ key: conn.grant.profile.name, quota });
  };

  /** Whether the connection's key or token lets it watch these; answers `FORBIDDEN` when not. */
  const allowedAddresses = (conn: Connection, id: RequestId | undefined, addresses: readonly Hex[]): boolean => {
    const allowed = conn.grant?.addresses;
    if (allowed === undefined) return true;
    const refused = addresses.filter((a) => !allowed.has(a));
    if (refused.length === 0) return true;
    quotaHit(conn, 'allowed');
    const named = refused.slice(0, 3).join(', ');
    sendError(
      conn,
      id,
      'FORBIDDEN',
      `this key may not watch ${named}${refused.length > 3 ? ` and ${refused.length - 3} more` : ''}`,
    );
    return false;
  };

  const takeToken = (conn: Connection): boolean => {
    const now = performance.now();
    const rate = conn.limits.maxRequestsPerSecond;
    conn.tokens = Math.min(rate, conn.tokens + ((now - conn.refilledAt) / 1000) * rate);
    conn.refilledAt = now;
    if (conn.tokens < 1) return false;
    conn.tokens -= 1;
    return true;
  };

  /** Room for `more` watched addresses: on this connection, and in all. Answers the error when there is none. */
  const roomForAddresses = (conn: Connection, id: RequestId | undefined, more: number): boolean => {
    if (conn.addressCount + more > conn.limits.maxAddresses) {
      quotaHit(conn, 'addresses');
      sendError(conn, id, 'TOO_MANY_ADDRESSES', `at most ${conn.limits.maxAddresses} addresses per connection`);
      return false;
    }
    if (more > 0 && watchedTotal + more > capacity.maxWatchedAddresses) {
      sendError(
        conn,
        id,
        'OVERLOADED',
        `this gateway watches as many addresses as it may (${capacity.maxWatchedAddresses}): try another gateway or later`,
      );
      return false;
    }
    return true;
  };

  const countAddresses = (conn: Connection, delta: number): void => {
    conn.addressCount += delta;
    watchedTotal += delta;
  };

  /** Ends a subscription of a connection, live or resuming; frees what it held. */
  const dropSub = (conn: Connection, sub: Subscription<Connection>): void => {
    const resuming = conn.resuming.get(sub.sid);
    if (resuming !== undefined) {
      conn.resuming.delete(sub.sid);
      resuming.cancel?.();
    }
    conn.subs.delete(sub.sid);
    countAddresses(conn, -sub.addresses.size);
    index.remove(sub);
    chains.release(sub);
  };

  const subscribe = (conn: Connection, request: Extract<Request, { op: 'subscribe' }>): void => {
    const id = request.id;
    const chainId = request.chainId ?? chains.chainIds()[0];
    if (chainId === undefined || !chains.chainIds().includes(chainId)) {
      sendError(
        conn,
        id,
        'UNKNOWN_CHAIN',
        `chain ${request.chainId} is not served; chains are ${chains.chainIds().join(', ')}`,
      );
      return;
    }
    const grant = conn.grant;
    if (grant?.chains !== undefined && !grant.chains.has(chainId)) {
      quotaHit(conn, 'allowed');
      sendError(conn, id, 'FORBIDDEN', `this key may not use chain ${chainId}`);
      return;
    }
    if (grant?.channels !== undefined && !grant.channels.has(request.channel)) {
      quotaHit(conn, 'allowed');
      sendError(conn, id, 'FORBIDDEN', `this key may not use channel ${request.channel}`);
      return;
    }
    if (request.confirmations > options.maxConfirmations) {
      sendError(conn, id, 'BAD_REQUEST', `confirmations must be at most ${options.maxConfirmations}`);
      return;
    }
    const confirmations = request.confirmations;
    if (conn.subs.size >= conn.limits.maxSubscriptions) {
      quotaHit(conn, 'subscriptions');
      sendError(
        conn,
        id,
        'TOO_MANY_SUBSCRIPTIONS',
        `at most ${conn.limits.maxSubscriptions} subscriptions per connection`,
      );
      return;
    }
    const sid = `s${++conn.nextSid}`;
    let filter: SubscriptionFilter;
    let addresses: readonly Hex[] = [];
    if (request.channel === 'blocks') {
      filter = { channel: 'blocks', full: request.full, fullInput: request.fullInput, confirmations };
    } else {
      const undecoded = [...(request.kinds ?? [])].filter((kind) => !SERVED_KINDS.has(kind));
      if (undecoded.length > 0) {
        sendError(conn, id, 'UNSUPPORTED', `kinds ${undecoded.join(', ')} are not decoded by this gateway yet`);
        return;
      }
      if (!allowedAddresses(conn, id, request.addresses)) return;
      if (!roomForAddresses(conn, id, request.addresses.length)) return;
      filter = {
        channel: 'activity',
        kinds: request.kinds ?? SERVED_KINDS,
        confirmations,
        ...(request.pending ? { pending: true } : {}),
      };
      addresses = request.addresses;
    }
    // A resume's subscription is made detached and goes live once its catch-up is written; any
    // other is live at once (no detached state to build and drop).
    const sub =
      request.from === undefined
        ? index.add(conn, sid, chainId, filter, addresses)
        : index.create(conn, sid, chainId, filter, addresses);
    const goLive = (recovered: boolean | undefined): void => {
      // The subscription may have ended while it waited (unsubscribe, close): nothing to do then.
      if (conn.closed || conn.subs.get(sid) !== sub) return;
      index.activate(sub); // a no-op for one made live at once
      updateIndexGauges();
      if (recovered !== undefined) metrics.resumes.inc({ recovered: String(recovered) });
      send(conn, {
        type: 'subscribed',
        ...(id === undefined ? {} : { id }),
        sub: sid,
        channel: request.channel,
        chainId,
        head: headOf(chainId),
        ...(recovered === undefined ? {} : { recovered }),
        ...cursorOf(sub),
      });
    };
    conn.subs.set(sid, sub);
    countAddresses(conn, sub.addresses.size);
    if (request.from === undefined) {
      goLive(undefined);
      return;
    }
    // Replayed in turn with other resumes; live once everything it missed was written.
    const state: { cancel: (() => void) | undefined } = { cancel: undefined };
    conn.resuming.set(sid, state);
    const ticket = chains.resume(sub, parseCursor(request.from), limits.maxBackpressureBytes, (recovered) => {
      if (conn.resuming.get(sid) === state) conn.resuming.delete(sid);
      goLive(recovered);
    });
    if (ticket.status === 'full') {
      conn.resuming.delete(sid);
      conn.subs.delete(sid);
      countAddresses(conn, -sub.addresses.size);
      sendError(conn, id, 'TRY_AGAIN', 'too many resumes wait for their replay (on this connection, or in all)', {
        retryAfterMs: chains.retryAfterMs(),
      });
      return;
    }
    if (conn.resuming.get(sid) === state) state.cancel = ticket.cancel;
  };

  /** The connection's subscription a request names; answers UNKNOWN_SUBSCRIPTION when none. */
  const findSub = (
    conn: Connection,
    request: { id?: RequestId; sub: string },
  ): Subscription<Connection> | undefined => {
    const sub = conn.subs.get(request.sub);
    if (sub === undefined) {
      const named = JSON.stringify(request.sub.slice(0, 40));
      sendError(conn, request.id, 'UNKNOWN_SUBSCRIPTION', `no subscription ${named} on this connection`);
    }
    return sub;
  };

  const update = (conn: Connection, request: Extract<Request, { op: 'update' }>): void => {
    const sub = findSub(conn, request);
    if (sub === undefined) return;
    if (sub.filter.channel !== 'activity') {
      sendError(
        conn,
        request.id,
        'BAD_REQUEST',
        `subscription ${request.sub} is on channel blocks: it has no addresses`,
      );
      return;
    }
    if (conn.resuming.has(sub.sid)) {
      sendError(conn, request.id, 'TRY_AGAIN', `subscription ${sub.sid} is still resuming: update it once subscribed`, {
        retryAfterMs: chains.retryAfterMs(),
      });
      return;
    }
    // Removals apply before additions; check the limits before changing anything.
    const removing = new Set(request.remove);
    let delta = 0;
    for (const address of removing) if (sub.addresses.has(address)) delta--;
    for (const address of request.add) if (!sub.addresses.has(address) || removing.has(address)) delta++;
    if (!allowedAddresses(conn, request.id, request.add)) return;
    if (!roomForAddresses(conn, request.id, delta)) return;
    countAddresses(conn, -index.unwatch(sub, removing));
    countAddresses(conn, index.watch(sub, request.add));
    updateIndexGauges();
    send(conn, {
      type: 'updated',
      ...(request.id === undefined ? {} : { id: request.id }),
      sub: sub.sid,
      addresses: sub.addresses.size,
    });
  };

  const unsubscribe = (conn: Connection, request: Extract<Request, { op: 'unsubscribe' }>): void => {
    const sub = findSub(conn, request);
    if (sub === undefined) return;
    dropSub(conn, sub);
    updateIndexGauges();
    send(conn, { type: 'unsubscribed', ...(request.id === undefined ? {} : { id: request.id }), sub: sub.sid });
  };

  const onMessage = (conn: Connection, data: ArrayBuffer, isBinary: boolean): void => {
    if (!takeToken(conn)) {
      conn.rateLimitedInARow++;
      quotaHit(conn, 'requests_per_second');
      if (conn.rateLimitedInARow > conn.limits.maxRequestsPerSecond) {
        end(conn, CloseCode.tooManyRequests, 'too many requests', 'rate_limited');
      } else {
        sendError(conn, undefined, 'RATE_LIMITED', `at most ${conn.limits.maxRequestsPerSecond} messages per second`);
      }
      return;
    }
    conn.rateLimitedInARow = 0;
    const parsed = parseRequest(data, isBinary);
    if (!parsed.ok) {
      if (++conn.malformedInARow > MAX_MALFORMED_IN_A_ROW) {
        end(conn, CloseCode.policyViolation, 'too many malformed messages', 'malformed');
        return;
      }
      sendError(conn, parsed.id, parsed.error.code as ProtocolErrorCode, parsed.error.message);
      return;
    }
    conn.malformedInARow = 0;
    const request = parsed.request;
    switch (request.op) {
      case 'subscribe':
        subscribe(conn, request);
        return;
      case 'update':
        update(conn, request);
        return;
      case 'unsubscribe':
        unsubscribe(conn, request);
        return;
      case 'auth':
        refresh(conn, request);
        return;
      case 'ping': {
        // Every frame of every block up to each position was written before this pong.
        const cursors: Record<string, string> = {};
        for (const [sid, sub] of conn.subs) {
          if (conn.resuming.has(sid)) continue;
          const cursor = chains.position(sub);
          if (cursor !== undefined) cursors[sid] = cursor;
        }
        send(conn, { type: 'pong', ...(request.id === undefined ? {} : { id: request.id }), cursors });
        return;
      }
    }
  };

  /** Writes a text frame as it is; closes a connection whose send buffer is past its limit. */
  const sendText = (conn: Connection, text: string): void => {
    if (conn.closed || conn.ws === undefined) return;
    if (conn.ws.send(text, false) === 2) end(conn, CloseCode.slowConsumer, 'slow consumer', 'slow_consumer');
  };

  const rpcSession = (conn: Connection, chain: RpcChain): RpcSession =>
    new RpcSession({
      chain,
      limits: {
        maxSubscriptions: conn.limits.maxSubscriptions,
        maxAddresses: conn.limits.maxAddresses,
        maxRequestsPerSecond: conn.limits.maxRequestsPerSecond,
        maxBatch: RPC_MAX_BATCH,
        maxForwardsInFlight: RPC_MAX_FORWARDS_PER_CONNECTION,
        maxBackfillLogs: RPC_MAX_BACKFILL_LOGS,
      },
      forwardable: options.rpc?.forwardable ?? new Set(),
      ...(conn.grant === undefined ? {} : { grant: conn.grant }),
      send: (text) => sendText(conn, text),
      deliver: (frames) => deliver(conn, frames),
      close: (code, reason, metric) => end(conn, code, reason, metric),
      reserveAddresses: (more) => {
        if (watchedTotal + more > capacity.maxWatchedAddresses) return false;
        watchedTotal += more;
        conn.addressCount += more;
        return true;
      },
      releaseAddresses: (count) => {
        watchedTotal -= count;
        conn.addressCount -= count;
      },
      onError: (code) => {
        metrics.errors.inc({ code: rpcErrorLabel(code) });
        if (conn.grant === undefined) return;
        if (code === RpcErrorCode.forbidden) quotaHit(conn, 'allowed');
      },
    });

  const welcome = (conn: Connection): Record<string, unknown> => {
    const grant = conn.grant;
    const keyConnections = grant?.profile.limits.maxConnections ?? 0;
    return {
      type: 'welcome',
      protocol: 1,
      chains: chains.chainIds().map((chainId) => ({ chainId, head: headOf(chainId) })),
      limits: {
        ...limits,
        ...conn.limits,
        maxConfirmations: options.maxConfirmations,
        ...(keyConnections > 0 ? { maxConnectionsPerKey: keyConnections } : {}),
      },
      ...(grant === undefined ? {} : { auth: authSummary(grant) }),
    };
  };

  /** Arms the close at a token's expiry (a timer cannot wait longer than 2^31 - 1 ms: re-armed). */
  const armDeadline = (conn: Connection): void => {
    clearTimeout(conn.deadline);
    conn.deadline = undefined;
    const expiresAtMs = conn.grant?.expiresAtMs;
    if (expiresAtMs === undefined || conn.closed) return;
    const left = expiresAtMs - Date.now();
    if (left <= 0) {
      metrics.tokenExpiries.inc();
      end(conn, CloseCode.tokenExpired, 'token expired', 'token_expired');
      return;
    }
    conn.deadline = setTimeout(() => armDeadline(conn), Math.min(left, 2_147_483_647));
    conn.deadline.unref();
  };

  /** In-band refresh: a newer token for the same subject moves the deadline (PROTOCOL.md, Authentication). */
  const refresh = (conn: Connection, request: Extract<Request, { op: 'auth' }>): void => {
    const grant = conn.grant;
    if (grant === undefined) {
      sendError(conn, request.id, 'BAD_REQUEST', 'this gateway needs no credentials: nothing to refresh');
      return;
    }
    if (conn.refreshing) {
      sendError(conn, request.id, 'TRY_AGAIN', 'a refresh is already being checked', { retryAfterMs: 1000 });
      return;
    }
    conn.refreshing = true;
    auth.refresh(grant, request.token).then(
      (outcome) => {
        conn.refreshing = false;
        if (conn.closed) return;
        if (!outcome.ok) {
          sendError(conn, request.id, outcome.code, outcome.message);
          return;
        }
        const next = outcome.grant;
        // What the connection already watches must stay allowed: otherwise nothing changes.
        for (const sub of conn.subs.values()) {
          const outside =
            (next.chains !== undefined && !next.chains.has(sub.chainId)) ||
            (next.channels !== undefined && !next.channels.has(sub.filter.channel)) ||
            (next.addresses !== undefined && [...sub.addresses].some((a) => !next.addresses?.has(a)));
          if (outside) {
            sendError(
              conn,
              request.id,
              'FORBIDDEN',
              `the new token does not allow subscription ${sub.sid}: unsubscribe it first`,
            );
            return;
          }
        }
        conn.grant = next;
        armDeadline(conn);
        send(conn, { type: 'authed', ...(request.id === undefined ? {} : { id: request.id }), ...authSummary(next) });
      },
      (error: unknown) => {
        conn.refreshing = false;
        sendError(conn, request.id, 'UNAUTHORIZED', `the token could not be checked: ${String(error).slice(0, 200)}`);
      },
    );
  };

  const httpText = (
    res: uWS.HttpResponse,
    status: string,
    body: string,
    contentType = 'text/plain; charset=utf-8',
  ): void => {
    res.cork(() => {
      res.writeStatus(status).writeHeader('content-type', contentType).end(body);
    });
  };

  /** Refuses an upgrade: the status, a line saying why, and the connection closed (nothing opens). */
  /** Refuses an upgrade: the status, a line saying why, and the connection closed (nothing opens). */
  const refuse = (
    res: uWS.HttpResponse,
    status: string,
    body: string,
    reason: (typeof REFUSAL_REASONS)[number],
    headers: Readonly<Record<string, string>> = {},
  ): void => {
    metrics.refusals.inc({ reason });
    res.cork(() => {
      res.writeStatus(status).writeHeader('content-type', 'text/plain; charset=utf-8');
      for (const [name, value] of Object.entries(headers)) res.writeHeader(name, value);
      res.end(body, true);
    });
  };

  /** What an upgrade request said, copied out of uWS's request (it lives only until the handler returns). */
  interface UpgradeRequest {
    readonly encoding: string;
    readonly forwardedFor: string;
    readonly origin: string;
    readonly credential: string;
    readonly key: string;
    readonly protocol: string;
    readonly extensions: string;
    /** On `/rpc`: the chain of its path. */
    readonly rpcChain: RpcChain | undefined;
  }

  const readUpgrade = (req: uWS.HttpRequest, pathKey: string, rpcChain?: RpcChain): UpgradeRequest => {
    const query = new URLSearchParams(req.getQuery() ?? '');
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.getHeader('authorization'));
    return {
      encoding: query.get('encoding') ?? 'msgpack',
      forwardedFor: trusted.size > 0 ? req.getHeader('x-forwarded-for') : '',
      origin: req.getHeader('origin'),
      // One credential, in this order: the header, a token, a key, the path.
      credential: bearer?.[1] ?? query.get('token') ?? query.get('key') ?? pathKey,
      key: req.getHeader('sec-websocket-key'),
      protocol: req.getHeader('sec-websocket-protocol'),
      extensions: req.getHeader('sec-websocket-extensions'),
      rpcChain,
    };
  };

  /** The upgrade once auth has decided: the limits that count connections, then the socket. */
  const admit = (
    res: uWS.HttpResponse,
    request: UpgradeRequest,
    context: uWS.us_socket_context_t,
    admission: Admission,
  ): void => {
    if (!admission.ok) {
      metrics.authRefusals.inc({ key: admission.profile ?? 'none', reason: admission.reason });
      if (admission.status === 403) {
        refuse(res, '403 Forbidden', `${admission.message}\n`, 'forbidden');
      } else {
        const error = admission.reason === 'missing' ? '' : `, error="invalid_token"`;
        refuse(res, '401 Unauthorized', `${admission.message}\n`, 'unauthorized', {
          'www-authenticate': `Bearer realm="blockcast"${error}`,
        });
      }
      return;
    }
    if (closing) {
      refuse(res, '503 Service Unavailable', 'shutting down\n', 'shutdown', { 'retry-after': '1' });
      return;
    }
    if (connectionCount >= capacity.maxConnections) {
      refuse(
        res,
        '503 Service Unavailable',
        `this gateway holds as many connections as it may (${capacity.maxConnections})\n`,
        'capacity',
        { 'retry-after': '5' },
      );
      return;
    }
    const ip = clientAddress(Buffer.from(res.getRemoteAddressAsText()).toString(), request.forwardedFor, trusted);
    const ipKey = addressKey(ip);
    if (limits.maxConnectionsPerIp > 0 && (perIp.get(ipKey) ?? 0) >= limits.maxConnectionsPerIp) {
      metrics.errors.inc({ code: 'TOO_MANY_CONNECTIONS' });
      refuse(
        res,
        '429 Too Many Requests',
        `at most ${limits.maxConnectionsPerIp} connections per address\n`,
        'per_ip',
        { 'retry-after': '5' },
      );
      return;
    }
    const grant = admission.grant;
    if (request.rpcChain !== undefined && grant?.chains !== undefined && !grant.chains.has(request.rpcChain.chainId)) {
      metrics.quotaHits.inc({ key: grant.profile.name, quota: 'allowed' });
      refuse(res, '403 Forbidden', `this key may not use chain ${request.rpcChain.chainId}\n`, 'forbidden');
      return;
    }
    const keyLimit = grant?.profile.limits.maxConnections ?? 0;
    if (grant !== undefined && keyLimit > 0 && (perKey.get(grant.quotaKey) ?? 0) >= keyLimit) {
      metrics.quotaHits.inc({ key: grant.profile.name, quota: 'connections' });
      const whose = grant.subject === undefined ? 'this key' : 'this token subject';
      refuse(res, '429 Too Many Requests', `${whose} holds its ${keyLimit} connections\n`, 'key_quota', {
        'retry-after': '5',
      });
      return;
    }
    // Counted from the upgrade on, so a burst of upgrades cannot slip past the limits.
    perIp.set(ipKey, (perIp.get(ipKey) ?? 0) + 1);
    if (grant !== undefined) perKey.set(grant.quotaKey, (perKey.get(grant.quotaKey) ?? 0) + 1);
    connectionCount++;
    const sessionLimits = grant === undefined ? defaultLimits : grant.profile.limits;
    const conn: Connection = {
      ip,
      ipKey,
      // JSON-RPC is JSON text, whatever the query says.
      encoding: request.rpcChain === undefined ? (request.encoding as Encoding) : 'json',
      subs: new Map(),
      resuming: new Map(),
      addressCount: 0,
      nextSid: 0,
      tokens: sessionLimits.maxRequestsPerSecond,
      refilledAt: performance.now(),
      rateLimitedInARow: 0,
      malformedInARow: 0,
      grant,
      limits: {
        maxAddresses: sessionLimits.maxAddresses,
        maxSubscriptions: sessionLimits.maxSubscriptions,
        maxRequestsPerSecond: sessionLimits.maxRequestsPerSecond,
      },
      deadline: undefined,
      refreshing: false,
      rpcChain: request.rpcChain,
      rpc: undefined,
      closed: false,
      ws: undefined,
    };
    res.cork(() => {
      res.upgrade(conn, request.key, request.protocol, request.extensions, context);
    });
  };

  /** Gives back what an upgraded connection counted (it closed, or its upgrade never completed). */
  const uncount = (conn: Connection): void => {
    const left = (perIp.get(conn.ipKey) ?? 1) - 1;
    if (left > 0) perIp.set(conn.ipKey, left);
    else perIp.delete(conn.ipKey);
    const quotaKey = conn.grant?.quotaKey;
    if (quotaKey !== undefined) {
      const keyLeft = (perKey.get(quotaKey) ?? 1) - 1;
      if (keyLeft > 0) perKey.set(quotaKey, keyLeft);
      else perKey.delete(quotaKey);
    }
    connectionCount--;
  };

  const upgrade = (
    res: uWS.HttpResponse,
    req: uWS.HttpRequest,
    context: uWS.us_socket_context_t,
    pathKey: string,
    rpcChain?: RpcChain,
  ) => {
    // uWS's request lives only until this returns: read everything first.
    const request = readUpgrade(req, pathKey, rpcChain);
    if (closing) {
      refuse(res, '503 Service Unavailable', 'shutting down\n', 'shutdown', { 'retry-after': '1' });
      return;
    }
    if (rpcChain === undefined && !ENCODINGS.includes(request.encoding)) {
      refuse(res, '400 Bad Request', 'encoding must be msgpack or json\n', 'bad_request');
      return;
    }
    const admission = auth.admit(request.credential, request.origin);
    if (!(admission instanceof Promise)) {
      admit(res, request, context, admission);
      return;
    }
    // A token is checked asynchronously: the client may be gone by then.
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    admission.then(
      (outcome) => {
        if (!aborted) admit(res, request, context, outcome);
      },
      (error: unknown) => {
        log(`transport: a token check failed: ${String(error)}`);
        if (!aborted) {
          admit(res, request, context, { ok: false, status: 401, reason: 'bad_token', message: 'token check failed' });
        }
      },
    );
  };

  const behavior: uWS.WebSocketBehavior<Connection> = {
    compression: uWS.DISABLED,
    // uWS drops a frame past its limit with no close frame (the client sees 1006). Our own check in
    // `message` answers 1009 as PROTOCOL.md says; uWS's limit, further out, stays as the hard stop.
    maxPayloadLength: limits.maxMessageBytes * HARD_PAYLOAD_FACTOR,
    maxBackpressure: limits.maxBackpressureBytes,
    closeOnBackpressureLimit: 0,
    idleTimeout: options.idleTimeoutSec,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => upgrade(res, req, context, ''),
    open: (ws) => {
      const conn = ws.getUserData();
      conn.ws = ws;
      open.add(conn);
      metrics.connections.set(open.size);
      metrics.connectionsOpened.inc();
      if (conn.grant !== undefined) metrics.keyConnections.inc({ key: conn.grant.profile.name });
      if (conn.rpcChain !== undefined) conn.rpc = rpcSession(conn, conn.rpcChain);
      else send(conn, welcome(conn));
      armDeadline(conn);
    },
    message: (ws, data, isBinary) => {
      const conn = ws.getUserData();
      if (data.byteLength > limits.maxMessageBytes) {
        end(conn, CloseCode.messageTooBig, 'message too big', 'message_too_big');
        return;
      }
      if (conn.rpc !== undefined) conn.rpc.handle(TEXT.decode(data));
      else onMessage(conn, data, isBinary);
    },
    close: (ws, code, message) => {
      const conn = ws.getUserData();
      // uWS closes such a connection itself, before any handler sees the frame (no close frame: 1006).
      if (!conn.closed && code === 1006 && Buffer.from(message).toString() === INVALID_UTF8_REASON) {
        metrics.closes.inc({ reason: 'invalid_utf8' });
      }
      uncount(conn);
      if (conn.grant !== undefined) metrics.keyConnections.dec({ key: conn.grant.profile.name });
      clearTimeout(conn.deadline);
      conn.deadline = undefined;
      conn.closed = true;
      conn.ws = undefined;
      open.delete(conn);
      for (const sub of [...conn.subs.values()]) dropSub(conn, sub);
      conn.rpc?.close();
      metrics.connections.set(open.size);
      updateIndexGauges();
    },
  };

  /** `/rpc`, `/rpc/CHAIN_ID`, `/rpc/KEY`, `/rpc/CHAIN_ID/KEY`: the chain (404 when not served) and the key. */
  const rpcUpgrade = (
    res: uWS.HttpResponse,
    req: uWS.HttpRequest,
    context: uWS.us_socket_context_t,
    first: string,
    second: string,
  ): void => {
    const rpc = options.rpc;
    const numbered = /^\d{1,15}$/.test(first);
    const chainId = numbered ? Number(first) : chains.chainIds()[0];
    const key = numbered ? second : first;
    const chain = chainId === undefined ? undefined : rpc?.chains.get(chainId);
    if (chain === undefined || (!numbered && second !== '')) {
      refuse(
        res,
        '404 Not Found',
        `chain ${chainId} is not served here; chains are ${chains.chainIds().join(', ')}\n`,
        'bad_request',
      );
      return;
    }
    upgrade(res, req, context, key, chain);
  };

  /** One app: every route, on plain sockets or TLS. A reload builds another with the new certificate. */
  const buildApp = (tls: TlsFiles | undefined): uWS.TemplatedApp =>
    (tls === undefined ? uWS.App() : uWS.SSLApp({ cert_file_name: tls.certFile, key_file_name: tls.keyFile }))
      .ws<Connection>('/v1', behavior)
      // A browser's WebSocket cannot set headers: the key may come as the last part of the path.
      .ws<Connection>('/v1/:key', {
        ...behavior,
        upgrade: (res, req, context) => upgrade(res, req, context, req.getParameter(0) ?? ''),
      })
      .ws<Connection>('/rpc', {
        ...behavior,
        upgrade: (res, req, context) => rpcUpgrade(res, req, context, '', ''),
      })
      .ws<Connection>('/rpc/:first', {
        ...behavior,
        upgrade: (res, req, context) => rpcUpgrade(res, req, context, req.getParameter(0) ?? '', ''),
      })
      .ws<Connection>('/rpc/:first/:second', {
        ...behavior,
        upgrade: (res, req, context) =>
          rpcUpgrade(res, req, context, req.getParameter(0) ?? '', req.getParameter(1) ?? ''),
      })
      .get('/healthz', (res) => httpText(res, '200 OK', 'ok\n'))
      .get('/readyz', (res) => {
        if (chains.ready()) httpText(res, '200 OK', 'ready\n');
        else httpText(res, '503 Service Unavailable', 'a chain head is stale\n');
      })
      .get('/metrics', (res) => {
        let aborted = false;
        res.onAborted(() => {
          aborted = true;
        });
        metrics.registry.metrics().then(
          (text) => {
            if (!aborted) httpText(res, '200 OK', text, metrics.registry.contentType);
          },
          (error: unknown) => {
            if (!aborted) httpText(res, '500 Internal Server Error', `${String(error)}\n`);
          },
        );
      })
      .get('/', (res) => {
        res.cork(() => {
          res
            .writeStatus('200 OK')
            .writeHeader('content-type', 'text/html; charset=utf-8')
            .writeHeader('content-security-policy', LIVE_PAGE_CSP)
            .writeHeader('x-content-type-options', 'nosniff')
            .writeHeader('cache-control', 'no-cache')
            .end(LIVE_PAGE_HTML);
        });
      })
      .any('/*', (res) => httpText(res, '404 Not Found', 'not found\n'));

  const bytesOf = (frames: readonly Frame[]): number => {
    let bytes = 0;
    for (const frame of frames) bytes += typeof frame === 'string' ? Buffer.byteLength(frame) : frame.byteLength;
    return bytes;
  };

  const deliver = (conn: Connection, frames: readonly Frame[]): void => {
    const ws = conn.ws;
    if (conn.closed || ws === undefined) return;
    const limit = limits.maxBackpressureBytes;
    // Close before the send buffer passes its limit, not after: past uWS's maxBackpressure every
    // send is dropped, the close frame too, and the reader would see the socket end without 4008.
    const buffered = ws.getBufferedAmount();
    if (buffered > 0 && buffered + bytesOf(frames) > limit) {
      end(conn, CloseCode.slowConsumer, 'slow consumer', 'slow_consumer');
      return;
    }
    const binary = conn.encoding === 'msgpack';
    let status = 1;
    if (frames.length === 1) {
      // uWS corks a lone send itself and writes it at once: still one write, without a callback.
      status = ws.send(frames[0] as Frame, binary);
    } else {
      ws.cork(() => {
        for (const frame of frames) {
          status = ws.send(frame, binary);
          if (status === 2) return;
        }
      });
    }
    // Only a block larger than the whole limit can leave an empty buffer past it.
    if (status === 2 || (buffered === 0 && bytesOf(frames) > limit && ws.getBufferedAmount() > limit)) {
      end(conn, CloseCode.slowConsumer, 'slow consumer', 'slow_consumer');
    }
  };

  const listener = createListener(buildApp(options.tls), options.host, options.port, metrics, log);
  return listener.ready.then((port) => ({
    port,
    secure: options.tls !== undefined,
    deliver,
    connections: () => open.size,
    reloadTls: (files) => {
      if (options.tls === undefined) {
        return Promise.reject(new GatewayError('BAD_CONFIG', 'tlsCert: this server was started without TLS'));
      }
      return listener.swap(buildApp(files));
    },
    close: () => {
      closing = true;
      for (const conn of [...open]) end(conn, CloseCode.goingAway, 'server going away', 'shutdown');
      listener.close();
    },
  }));
}

/**
 * The listening socket of the current app. It keeps the process from spinning when it runs out
 * of file descriptors: uWS keeps trying to accept on a listening socket whose connections it
 * cannot take (a full core, nothing served). Before that happens, accepting stops (the listening
 * socket closes: new connections are refused at once) and starts again on the same port once
 * enough descriptors are free. A swap to another app (a new certificate) listens on the same
 * port before the old socket closes: both are bound with SO_REUSEPORT for that moment.
 * (On a port the kernel picked, `--port 0`, the old socket closes first.)
 */
function createListener(
  first: uWS.TemplatedApp,
  host: string,
  requestedPort: number,
  metrics: Metrics,
  log: (message: string) => void,
): {
  readonly ready: Promise<number>;
  readonly swap: (app: uWS.TemplatedApp) => Promise<void>;
  readonly close: () => void;
} {
  let app = first;
  /** Every app made: an app must outlive the connections it accepted. */
  const apps: uWS.TemplatedApp[] = [first];
  let token: uWS.us_listen_socket | undefined;
  let port = requestedPort;
  let closed = false;
  let relistening = false;
  let timer: ReturnType<typeof setInterval> | undefined;
  let lastFailureLogAt = Number.NEGATIVE_INFINITY;
  const limit = openFilesLimit();
  const counter = openFilesCounter();

  const check = (): void => {
    if (closed || relistening || limit === undefined || counter === undefined) return;
    const free = limit - counter.count();
    if (token !== undefined && free < Math.max(16, Math.ceil(limit / 100))) {
      uWS.us_listen_socket_close(token);
      token = undefined;
      metrics.accepting.set(0);
      metrics.acceptPauses.inc();
      const resumeAt = Math.max(64, Math.ceil(limit / 20));
      log(`transport: ${free} of ${limit} open files left: not accepting connections until ${resumeAt} are free`);
    } else if (token === undefined && free >= Math.max(64, Math.ceil(limit / 20))) {
      relistening = true;
      const listeningApp = app;
      listeningApp.listen(host, port, (listening) => {
        relistening = false;
        if (listening === false) {
          // Tried again at the next check; said once a second at most.
          if (performance.now() - lastFailureLogAt > 1000) {
            lastFailureLogAt = performance.now();
            log(`transport: cannot listen on ${host}:${port} again (the port is taken?): retrying`);
          }
          return;
        }
        if (closed || token !== undefined || listeningApp !== app) {
          uWS.us_listen_socket_close(listening);
          return;
        }
        token = listening;
        metrics.accepting.set(1);
        log(`transport: ${free} open files free: accepting connections again`);
      });
    }
  };

  const ready = new Promise<number>((resolve, reject) => {
    first.listen(host, requestedPort, (listening) => {
      if (listening === false) {
        reject(new GatewayError('BAD_CONFIG', `port: cannot listen on ${host}:${requestedPort}`));
        return;
      }
      token = listening;
      port = uWS.us_socket_local_port(listening);
      metrics.accepting.set(1);
      if (limit !== undefined && counter !== undefined) {
        timer = setInterval(check, counter.cheap ? DESCRIPTOR_CHECK_MS : DESCRIPTOR_CHECK_MS * 10);
        timer.unref();
      }
      resolve(port);
    });
  });

  return {
    ready,
    swap: (next) =>
      new Promise<void>((resolve, reject) => {
        if (closed) {
          reject(new GatewayError('BAD_CONFIG', 'the server is closed'));
          return;
        }
        apps.push(next);
        if (token === undefined) {
          // Paused for open files (or not yet listening): the next check listens with the new app.
          app = next;
          resolve();
          return;
        }
        const take = (listening: uWS.us_listen_socket): void => {
          token = listening;
          app = next;
          resolve();
        };
        next.listen(host, port, (listening) => {
          if (listening !== false) {
            const old = token;
            take(listening);
            if (old !== undefined) uWS.us_listen_socket_close(old);
            return;
          }
          // No second socket on the port (uWS sets SO_REUSEPORT only on a port given, not on one
          // the kernel picked): close the old one and listen again at once, in the same turn of
          // the loop, so only a connection arriving in those microseconds is refused.
          if (token !== undefined) uWS.us_listen_socket_close(token);
          token = undefined;
          next.listen(host, port, (again) => {
            if (again !== false) {
              take(again);
              return;
            }
            apps.pop();
            app.listen(host, port, (old) => {
              if (old !== false) token = old;
            });
            reject(new GatewayError('BAD_CONFIG', `port: cannot listen on ${host}:${port} with the new certificate`));
          });
        });
      }),
    close: () => {
      closed = true;
      clearInterval(timer);
      if (token !== undefined) uWS.us_listen_socket_close(token);
      token = undefined;
    },
  };
}
