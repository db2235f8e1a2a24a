import uWS from 'uWebSockets.js';
import { type CursorPosition, parseCursor } from '../domain/cursor.ts';
import { CloseCode, GatewayError, type ProtocolErrorCode } from '../domain/errors.ts';
import { type BlockRef, EVENT_KINDS, type EventKind, type Hex } from '../domain/types.ts';
import { type Encoding, encodeMessage, type Frame } from '../fanout/encode.ts';
import type { Subscription, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import type { Metrics } from '../metrics/metrics.ts';
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
   * Open connections per remote IP address; past it the upgrade is refused with HTTP 429. 0 means
   * no limit (the default: many phones share one carrier-grade NAT address). @default 0
   */
  readonly maxConnectionsPerIp: number;
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
   * Resumes `sub` from a client's cursor: sends what it missed and returns true, or sends
   * nothing and returns false (PROTOCOL.md, Resume). At most `maxBytes` are sent.
   */
  readonly resume: (sub: Subscription<Connection>, cursor: CursorPosition, maxBytes: number) => boolean;
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
  readonly chains: ChainDirectory;
  readonly index: SubscriptionIndex<Connection>;
  readonly metrics: Metrics;
}

/** A client connection's state (the uWS user data). */
export interface Connection {
  /** The remote address, as text. */
  readonly ip: string;
  readonly encoding: Encoding;
  readonly subs: Map<string, Subscription<Connection>>;
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

/** Starts the WebSocket + HTTP server of protocol v1 (PROTOCOL.md) on one port. */
export function createServer(options: ServerOptions): Promise<Server> {
  assertNativeUws();
  const { limits, index, metrics, chains } = options;
  const open = new Set<Connection>();
  /** Connections per remote address, from upgrade to close. */
  const perIp = new Map<string, number>();
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

  const sendError = (conn: Connection, id: RequestId | undefined, code: ProtocolErrorCode, message: string): void => {
    metrics.errors.inc({ code });
    send(conn, { type: 'error', ...(id === undefined ? {} : { id }), code, message });
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
    let sub: Subscription<Connection>;
    const sid = `s${++conn.nextSid}`;
    if (request.channel === 'blocks') {
      sub = index.add(conn, sid, chainId, {
        channel: 'blocks',
        full: request.full,
        fullInput: request.fullInput,
        confirmations,
      });
    } else {
      const undecoded = [...(request.kinds ?? [])].filter((kind) => !SERVED_KINDS.has(kind));
      if (undecoded.length > 0) {
        sendError(conn, id, 'UNSUPPORTED', `kinds ${undecoded.join(', ')} are not decoded by this gateway yet`);
        return;
      }
      if (conn.addressCount + request.addresses.length > limits.maxAddresses) {
        sendError(conn, id, 'TOO_MANY_ADDRESSES', `at most ${limits.maxAddresses} addresses per connection`);
        return;
      }
      sub = index.add(
        conn,
        sid,
        chainId,
        {
          channel: 'activity',
          kinds: request.kinds ?? SERVED_KINDS,
          confirmations,
          ...(request.pending ? { pending: true } : {}),
        },
        request.addresses,
      );
      conn.addressCount += sub.addresses.size;
    }
    conn.subs.set(sid, sub);
    updateIndexGauges();
    let recovered: boolean | undefined;
    if (request.from !== undefined) {
      // Synchronous: no block is published between the catch-up and going live.
      const cursor = parseCursor(request.from);
      recovered = cursor !== undefined && chains.resume(sub, cursor, limits.maxBackpressureBytes);
      metrics.resumes.inc({ recovered: String(recovered) });
    }
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

  /** The connection's subscription a request names; answers UNKNOWN_SUBSCRIPTION when none. */
  const findSub = (
    conn: Connection,
    request: { id?: RequestId; sub: string },
  ): Subscription<Connection> | undefined => {
    const sub = conn.subs.get(request.sub);
    if (sub === undefined) {
      const named = JSON.stringify(request.sub);
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
    // Removals apply before additions; check the limit before changing anything.
    const removing = new Set(request.remove);
    let delta = 0;
    for (const address of removing) if (sub.addresses.has(address)) delta--;
    for (const address of request.add) if (!sub.addresses.has(address) || removing.has(address)) delta++;
    if (conn.addressCount + delta > limits.maxAddresses) {
      sendError(conn, request.id, 'TOO_MANY_ADDRESSES', `at most ${limits.maxAddresses} addresses per connection`);
      return;
    }
    conn.addressCount -= index.unwatch(sub, removing);
    conn.addressCount += index.watch(sub, request.add);
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
    conn.subs.delete(sub.sid);
    conn.addressCount -= sub.addresses.size;
    index.remove(sub);
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
        const encoding = new URLSearchParams(req.getQuery() ?? '').get('encoding') ?? 'msgpack';
        if (closing) {
          httpText(res, '503 Service Unavailable', 'shutting down\n');
          return;
        }
        if (!ENCODINGS.includes(encoding)) {
          httpText(res, '400 Bad Request', 'encoding must be msgpack or json\n');
          return;
        }
        const ip = Buffer.from(res.getRemoteAddressAsText()).toString();
        if (limits.maxConnectionsPerIp > 0 && (perIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) {
          metrics.errors.inc({ code: 'TOO_MANY_CONNECTIONS' });
          httpText(res, '429 Too Many Requests', `at most ${limits.maxConnectionsPerIp} connections per address\n`);
          return;
        }
        // Counted from the upgrade on, so a burst of upgrades cannot slip past the limit.
        perIp.set(ip, (perIp.get(ip) ?? 0) + 1);
        const conn: Connection = {
          ip,
          encoding: encoding as Encoding,
          subs: new Map(),
          addressCount: 0,
          nextSid: 0,
          tokens: limits.maxRequestsPerSecond,
          refilledAt: performance.now(),
          rateLimitedInARow: 0,
          malformedInARow: 0,
          closed: false,
          ws: undefined,
        };
        res.upgrade(
          conn,
          req.getHeader('sec-websocket-key'),
          req.getHeader('sec-websocket-protocol'),
          req.getHeader('sec-websocket-extensions'),
          context,
        );
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
        const left = (perIp.get(conn.ip) ?? 1) - 1;
        if (left > 0) perIp.set(conn.ip, left);
        else perIp.delete(conn.ip);
        conn.closed = true;
        conn.ws = undefined;
        open.delete(conn);
        for (const sub of conn.subs.values()) index.remove(sub);
        conn.subs.clear();
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
      resolve({
        port: uWS.us_socket_local_port(token),
        deliver,
        connections: () => open.size,
        close: () => {
          closing = true;
          for (const conn of [...open]) end(conn, CloseCode.goingAway, 'server going away', 'shutdown');
          uWS.us_listen_socket_close(token);
        },
      });
    });
  });
}
