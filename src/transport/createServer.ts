import uWS from 'uWebSockets.js';
import { type CursorPosition, parseCursor } from '../domain/cursor.ts';
import { CloseCode, GatewayError, type ProtocolErrorCode } from '../domain/errors.ts';
import { type BlockRef, EVENT_KINDS, type EventKind, type Hex } from '../domain/types.ts';
import { type Encoding, encodeMessage, type Frame } from '../fanout/encode.ts';
import type { Subscription, SubscriptionFilter, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { addressKey, clientAddress, normalizeIp } from './clientAddress.ts';
import { openFilesCounter, openFilesLimit } from './descriptors.ts';
import { LIVE_PAGE_CSP, LIVE_PAGE_HTML } from './livePage.ts';
import { parseRequest, type Request, type RequestId } from './parseRequest.ts';

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
  readonly chains: ChainDirectory;
  readonly index: SubscriptionIndex<Connection>;
  readonly metrics: Metrics;
  /** Operational events worth a log line (accepting paused or resumed). */
  readonly log?: (message: string) => void;
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
  closed: boolean;
  ws: uWS.WebSocket<Connection> | undefined;
}

/** A listening gateway server. */
export interface Server {
  readonly port: number;
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

/** How often the open-files count is looked at, in ms (a listing where the count is not cheap: every second). */
const DESCRIPTOR_CHECK_MS = 100;

/** Starts the WebSocket + HTTP server of protocol v1 (PROTOCOL.md) on one port. */
export function createServer(options: ServerOptions): Promise<Server> {
  assertNativeUws();
  const { limits, capacity, index, metrics, chains } = options;
  const trusted = new Set((options.trustedProxies ?? []).map(normalizeIp));
  const log = options.log ?? (() => undefined);
  const open = new Set<Connection>();
  /** Connections per client address key, from upgrade to close. */
  const perIp = new Map<string, number>();
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

  const takeToken = (conn: Connection): boolean => {
    const now = performance.now();
    const rate = limits.maxRequestsPerSecond;
    conn.tokens = Math.min(rate, conn.tokens + ((now - conn.refilledAt) / 1000) * rate);
    conn.refilledAt = now;
    if (conn.tokens < 1) return false;
    conn.tokens -= 1;
    return true;
  };

  /** Room for `more` watched addresses: on this connection, and in all. Answers the error when there is none. */
  const roomForAddresses = (conn: Connection, id: RequestId | undefined, more: number): boolean => {
    if (conn.addressCount + more > limits.maxAddresses) {
      sendError(conn, id, 'TOO_MANY_ADDRESSES', `at most ${limits.maxAddresses} addresses per connection`);
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
    if (request.confirmations > options.maxConfirmations) {
      sendError(conn, id, 'BAD_REQUEST', `confirmations must be at most ${options.maxConfirmations}`);
      return;
    }
    const confirmations = request.confirmations;
    if (conn.subs.size >= limits.maxSubscriptions) {
      sendError(conn, id, 'TOO_MANY_SUBSCRIPTIONS', `at most ${limits.maxSubscriptions} subscriptions per connection`);
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
      if (conn.rateLimitedInARow > limits.maxRequestsPerSecond) {
        end(conn, CloseCode.tooManyRequests, 'too many requests', 'rate_limited');
      } else {
        sendError(conn, undefined, 'RATE_LIMITED', `at most ${limits.maxRequestsPerSecond} messages per second`);
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

  const welcome = (): Record<string, unknown> => ({
    type: 'welcome',
    protocol: 1,
    chains: chains.chainIds().map((chainId) => ({ chainId, head: headOf(chainId) })),
    limits: { ...limits, maxConfirmations: options.maxConfirmations },
  });

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
  const refuse = (
    res: uWS.HttpResponse,
    status: string,
    body: string,
    reason: 'per_ip' | 'capacity' | 'bad_request' | 'shutdown',
    retryAfterSec?: number,
  ): void => {
    metrics.refusals.inc({ reason });
    res.cork(() => {
      res.writeStatus(status).writeHeader('content-type', 'text/plain; charset=utf-8');
      if (retryAfterSec !== undefined) res.writeHeader('retry-after', String(retryAfterSec));
      res.end(body, true);
    });
  };

  const app = uWS
    .App()
    .ws<Connection>('/v1', {
      compression: uWS.DISABLED,
      // uWS drops a frame past its limit with no close frame (the client sees 1006). Our own check in
      // `message` answers 1009 as PROTOCOL.md says; uWS's limit, further out, stays as the hard stop.
      maxPayloadLength: limits.maxMessageBytes * HARD_PAYLOAD_FACTOR,
      maxBackpressure: limits.maxBackpressureBytes,
      closeOnBackpressureLimit: 0,
      idleTimeout: options.idleTimeoutSec,
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => {
        // uWS's request lives only until this returns: read everything first.
        const encoding = new URLSearchParams(req.getQuery() ?? '').get('encoding') ?? 'msgpack';
        const forwardedFor = trusted.size > 0 ? req.getHeader('x-forwarded-for') : '';
        const key = req.getHeader('sec-websocket-key');
        const protocol = req.getHeader('sec-websocket-protocol');
        const extensions = req.getHeader('sec-websocket-extensions');
        if (closing) {
          refuse(res, '503 Service Unavailable', 'shutting down\n', 'shutdown', 1);
          return;
        }
        if (!ENCODINGS.includes(encoding)) {
          refuse(res, '400 Bad Request', 'encoding must be msgpack or json\n', 'bad_request');
          return;
        }
        if (connectionCount >= capacity.maxConnections) {
          refuse(
            res,
            '503 Service Unavailable',
            `this gateway holds as many connections as it may (${capacity.maxConnections})\n`,
            'capacity',
            5,
          );
          return;
        }
        const ip = clientAddress(Buffer.from(res.getRemoteAddressAsText()).toString(), forwardedFor, trusted);
        const ipKey = addressKey(ip);
        if (limits.maxConnectionsPerIp > 0 && (perIp.get(ipKey) ?? 0) >= limits.maxConnectionsPerIp) {
          metrics.errors.inc({ code: 'TOO_MANY_CONNECTIONS' });
          refuse(
            res,
            '429 Too Many Requests',
            `at most ${limits.maxConnectionsPerIp} connections per address\n`,
            'per_ip',
            5,
          );
          return;
        }
        // Counted from the upgrade on, so a burst of upgrades cannot slip past the limits.
        perIp.set(ipKey, (perIp.get(ipKey) ?? 0) + 1);
        connectionCount++;
        const conn: Connection = {
          ip,
          ipKey,
          encoding: encoding as Encoding,
          subs: new Map(),
          resuming: new Map(),
          addressCount: 0,
          nextSid: 0,
          tokens: limits.maxRequestsPerSecond,
          refilledAt: performance.now(),
          rateLimitedInARow: 0,
          malformedInARow: 0,
          closed: false,
          ws: undefined,
        };
        res.upgrade(conn, key, protocol, extensions, context);
      },
      open: (ws) => {
        const conn = ws.getUserData();
        conn.ws = ws;
        open.add(conn);
        metrics.connections.set(open.size);
        metrics.connectionsOpened.inc();
        send(conn, welcome());
      },
      message: (ws, data, isBinary) => {
        const conn = ws.getUserData();
        if (data.byteLength > limits.maxMessageBytes) {
          end(conn, CloseCode.messageTooBig, 'message too big', 'message_too_big');
          return;
        }
        onMessage(conn, data, isBinary);
      },
      close: (ws, code, message) => {
        const conn = ws.getUserData();
        // uWS closes such a connection itself, before any handler sees the frame (no close frame: 1006).
        if (!conn.closed && code === 1006 && Buffer.from(message).toString() === INVALID_UTF8_REASON) {
          metrics.closes.inc({ reason: 'invalid_utf8' });
        }
        const left = (perIp.get(conn.ipKey) ?? 1) - 1;
        if (left > 0) perIp.set(conn.ipKey, left);
        else perIp.delete(conn.ipKey);
        connectionCount--;
        conn.closed = true;
        conn.ws = undefined;
        open.delete(conn);
        for (const sub of [...conn.subs.values()]) dropSub(conn, sub);
        metrics.connections.set(open.size);
        updateIndexGauges();
      },
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

  return new Promise((resolve, reject) => {
    app.listen(options.host, options.port, (token) => {
      if (token === false) {
        reject(new GatewayError('BAD_CONFIG', `port: cannot listen on ${options.host}:${options.port}`));
        return;
      }
      const port = uWS.us_socket_local_port(token);
      const guard = guardAccepting(app, options.host, port, token, metrics, log);
      resolve({
        port,
        deliver,
        connections: () => open.size,
        close: () => {
          closing = true;
          for (const conn of [...open]) end(conn, CloseCode.goingAway, 'server going away', 'shutdown');
          guard.close();
        },
      });
    });
  });
}

/**
 * Keeps the process from spinning when it runs out of file descriptors: uWS keeps trying to
 * accept on a listening socket whose connections it cannot take (a full core, nothing served).
 * Before that happens, accepting stops (the listening socket closes: new connections are
 * refused at once) and starts again on the same port once enough descriptors are free.
 */
function guardAccepting(
  app: uWS.TemplatedApp,
  host: string,
  port: number,
  first: uWS.us_listen_socket,
  metrics: Metrics,
  log: (message: string) => void,
): { close: () => void } {
  let token: uWS.us_listen_socket | undefined = first;
  let closed = false;
  let relistening = false;
  let lastFailureLogAt = Number.NEGATIVE_INFINITY;
  const limit = openFilesLimit();
  const counter = openFilesCounter();
  metrics.accepting.set(1);
  if (limit === undefined || counter === undefined) {
    return {
      close: () => {
        closed = true;
        if (token !== undefined) uWS.us_listen_socket_close(token);
      },
    };
  }
  const pauseBelow = Math.max(16, Math.ceil(limit / 100));
  const resumeAt = Math.max(64, Math.ceil(limit / 20));
  const check = (): void => {
    if (closed || relistening) return;
    const free = limit - counter.count();
    if (token !== undefined && free < pauseBelow) {
      uWS.us_listen_socket_close(token);
      token = undefined;
      metrics.accepting.set(0);
      metrics.acceptPauses.inc();
      log(`transport: ${free} of ${limit} open files left: not accepting connections until ${resumeAt} are free`);
    } else if (token === undefined && free >= resumeAt) {
      relistening = true;
      app.listen(host, port, (listening) => {
        relistening = false;
        if (listening === false) {
          // Tried again at the next check; said once a second at most.
          if (performance.now() - lastFailureLogAt > 1000) {
            lastFailureLogAt = performance.now();
            log(`transport: cannot listen on ${host}:${port} again (the port is taken?): retrying`);
          }
          return;
        }
        if (closed) {
          uWS.us_listen_socket_close(listening);
          return;
        }
        token = listening;
        metrics.accepting.set(1);
        log(`transport: ${free} open files free: accepting connections again`);
      });
    }
  };
  const timer = setInterval(check, counter.cheap ? DESCRIPTOR_CHECK_MS : DESCRIPTOR_CHECK_MS * 10);
  timer.unref();
  return {
    close: () => {
      closed = true;
      clearInterval(timer);
      if (token !== undefined) uWS.us_listen_socket_close(token);
      token = undefined;
    },
  };
}
