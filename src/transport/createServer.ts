import uWS from 'uWebSockets.js';
import { CloseCode, GatewayError } from '../domain/errors.ts';
import type { Encoding, Frame } from '../fanout/encode.ts';
import type { SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import type { Metrics, REFUSAL_REASONS } from '../metrics/metrics.ts';
import type { TlsFiles } from './checkTls.ts';
import { claimPort } from './claimPort.ts';
import { addressKey, clientAddress, normalizeIp } from './clientAddress.ts';
import { type Admission, type Auth, createAuth } from './createAuth.ts';
import {
  type Capacity,
  type ChainDirectory,
  type Connection,
  createSessions,
  type Limits,
  newConnection,
  type SessionLimits,
} from './createSessions.ts';
import { openFilesCounter, openFilesLimit } from './descriptors.ts';
import { LIVE_PAGE_CSP, LIVE_PAGE_HTML } from './livePage.ts';
import { type RpcChain, RpcSession } from './RpcSession.ts';
import { RpcErrorCode } from './rpcProtocol.ts';

export type { Capacity, ChainDirectory, Connection, Limits, ResumeTicket, SessionLimits } from './createSessions.ts';

/** Options of {@link createServer}. */
export interface ServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /**
   * Share the port with other gateway processes (SO_REUSEPORT: `--workers N`, where the kernel
   * spreads new connections over them). Otherwise the port is this process's alone, and a port
   * another process listens on fails the start with `BAD_CONFIG` (`is in use`). @default false
   */
  readonly sharedPort?: boolean;
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

/** A listening gateway server. */
export interface Server {
  readonly port: number;
  /** Whether it serves TLS (`wss://`, `https://`). */
  readonly secure: boolean;
  /**
   * Serves a new certificate to new connections; open ones keep theirs and stay open. On a
   * shared port the new listening socket opens before the old one closes; on a port of its own
   * the old one closes first and the new one opens at once, so only a connection arriving in
   * those microseconds is refused.
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
/** What uWebSockets.js reports when it dropped a connection for a text frame that is not UTF-8. */
const INVALID_UTF8_REASON = 'Received invalid UTF-8';
const ENCODINGS: readonly string[] = ['msgpack', 'json'];

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

/**
 * Starts the gateway's server on one port: `/v1` (protocol v1) and `/rpc` (JSON-RPC) over
 * WebSocket, and the HTTP routes, on uWebSockets.js. It is the thin part that knows sockets:
 * admission at upgrade (auth, the bounds on connections), backpressure, TLS; what a connection
 * says is for its session ({@link createSessions}, {@link RpcSession}).
 */
export function createServer(options: ServerOptions): Promise<Server> {
  assertNativeUws();
  const { limits, capacity, index, metrics, chains } = options;
  const auth = options.auth ?? createAuth({ keys: [], origins: [] });
  const sessions = createSessions({
    limits,
    capacity,
    maxConfirmations: options.maxConfirmations,
    chains,
    index,
    metrics,
    auth,
  });
  const { end } = sessions;
  const trusted = new Set((options.trustedProxies ?? []).map(normalizeIp));
  const log = options.log ?? (() => undefined);
  const open = new Set<Connection>();
  const openByEndpoint = { v1: 0, rpc: 0 };
  const endpointOf = (conn: Connection): 'v1' | 'rpc' => (conn.rpcChain === undefined ? 'v1' : 'rpc');
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
  let closing = false;

  /** Writes a text frame as it is; closes a connection whose send buffer is past its limit. */
  const sendText = (conn: Connection, text: string): void => {
    if (conn.closed || conn.link === undefined) return;
    if (conn.link.send(text, false) === 2) end(conn, CloseCode.slowConsumer, 'slow consumer', 'slow_consumer');
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
      deliver: (frames) => {
        metrics.messagesSent.inc({ channel: 'rpc' }, frames.length);
        metrics.bytesSent.inc({ channel: 'rpc' }, bytesOf(frames));
        deliver(conn, frames);
      },
      close: (code, reason, metric) => end(conn, code, reason, metric),
      reserveAddresses: (more) => sessions.reserveAddresses(conn, more),
      releaseAddresses: (count) => sessions.releaseAddresses(conn, count),
      onError: (code) => {
        metrics.errors.inc({ endpoint: 'rpc', code: rpcErrorLabel(code) });
        if (conn.grant === undefined) return;
        if (code === RpcErrorCode.forbidden) sessions.quotaHit(conn, 'allowed');
      },
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
      metrics.errors.inc({ endpoint: request.rpcChain === undefined ? 'v1' : 'rpc', code: 'TOO_MANY_CONNECTIONS' });
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
    const conn = newConnection({
      ip,
      ipKey,
      // JSON-RPC is JSON text, whatever the query says.
      encoding: request.rpcChain === undefined ? (request.encoding as Encoding) : 'json',
      grant,
      defaults: defaultLimits,
      rpcChain: request.rpcChain,
    });
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
      conn.link = ws;
      open.add(conn);
      const endpoint = endpointOf(conn);
      openByEndpoint[endpoint]++;
      metrics.connections.set({ endpoint }, openByEndpoint[endpoint]);
      metrics.connectionsOpened.inc({ endpoint });
      if (conn.grant !== undefined) metrics.keyConnections.inc({ key: conn.grant.profile.name });
      if (conn.rpcChain === undefined) {
        sessions.open(conn);
      } else {
        conn.rpc = rpcSession(conn, conn.rpcChain);
        sessions.armDeadline(conn);
      }
    },
    message: (ws, data, isBinary) => {
      const conn = ws.getUserData();
      if (data.byteLength > limits.maxMessageBytes) {
        end(conn, CloseCode.messageTooBig, 'message too big', 'message_too_big');
        return;
      }
      if (conn.rpc !== undefined) conn.rpc.handle(TEXT.decode(data));
      else sessions.message(conn, data, isBinary);
    },
    close: (ws, code, message) => {
      const conn = ws.getUserData();
      // uWS closes such a connection itself, before any handler sees the frame (no close frame: 1006).
      if (!conn.closed && code === 1006 && Buffer.from(message).toString() === INVALID_UTF8_REASON) {
        metrics.closes.inc({ endpoint: endpointOf(conn), reason: 'invalid_utf8' });
      }
      uncount(conn);
      if (conn.grant !== undefined) metrics.keyConnections.dec({ key: conn.grant.profile.name });
      conn.closed = true;
      conn.link = undefined;
      open.delete(conn);
      sessions.closed(conn);
      conn.rpc?.close();
      const endpoint = endpointOf(conn);
      openByEndpoint[endpoint]--;
      metrics.connections.set({ endpoint }, openByEndpoint[endpoint]);
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
        const unready = chains.unready();
        if (unready === undefined) httpText(res, '200 OK', 'ready\n');
        else httpText(res, '503 Service Unavailable', `${unready}\n`);
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
    const ws = conn.link;
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

  const listener = createListener(buildApp(options.tls), {
    host: options.host,
    port: options.port,
    shared: options.sharedPort === true,
    metrics,
    log,
  });
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
 * uSockets' `LIBUS_LISTEN_EXCLUSIVE_PORT`: listen without SO_REUSEPORT. The native binary exports
 * it; the typings declare it only inside an enum (`ListenOptions`) that the binary lacks.
 */
const LISTEN_EXCLUSIVE_PORT =
  (uWS as unknown as { readonly LIBUS_LISTEN_EXCLUSIVE_PORT?: number }).LIBUS_LISTEN_EXCLUSIVE_PORT ?? 1;
/** uSockets' `LIBUS_LISTEN_DEFAULT`: SO_REUSEPORT on a port given (not on port 0, which the kernel picks). */
const LISTEN_SHARED_PORT = 0;

type ListenCallback = (listening: uWS.us_listen_socket | false) => void;

/**
 * `app.listen(host, port, options, cb)`: the native binding takes the options after the port (and
 * calls `cb` before it returns), but the typings lack this overload.
 */
function listenWith(app: uWS.TemplatedApp, host: string, port: number, options: number, cb: ListenCallback): void {
  const listen = app.listen as unknown as (host: string, port: number, options: number, cb: ListenCallback) => unknown;
  listen.call(app, host, port, options, cb);
}

/** Options of {@link createListener}. */
interface ListenerOptions {
  readonly host: string;
  /** 0: the kernel picks a free port, which relistens and swaps then keep. */
  readonly port: number;
  /** SO_REUSEPORT: other processes may listen on the port too (`--workers`). */
  readonly shared: boolean;
  readonly metrics: Metrics;
  readonly log: (message: string) => void;
}

/**
 * The listening socket of the current app, on a port of its own (no SO_REUSEPORT: a second
 * gateway on the port fails to start instead of taking half the new connections) or, when
 * `shared`, on a port other processes share. It keeps the process from spinning when it runs out
 * of file descriptors: uWS keeps trying to accept on a listening socket whose connections it
 * cannot take (a full core, nothing served). Before that happens, accepting stops (the listening
 * socket closes: new connections are refused at once) and starts again on the same port once
 * enough descriptors are free. A swap to another app (a new certificate) on a shared port listens
 * before the old socket closes; on a port of its own the old socket closes first and the new one
 * listens at once.
 */
function createListener(
  first: uWS.TemplatedApp,
  { host, port: requestedPort, shared, metrics, log }: ListenerOptions,
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
  const listenOptions = shared ? LISTEN_SHARED_PORT : LISTEN_EXCLUSIVE_PORT;
  /** Listens with `listeningApp` on the port in use, as this listener always does (shared or not). */
  const listen = (listeningApp: uWS.TemplatedApp, cb: ListenCallback): void =>
    listenWith(listeningApp, host, port, listenOptions, cb);

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
      listen(listeningApp, (listening) => {
        relistening = false;
        if (listening === false) {
          // Tried again at the next check; said once a second at most.
          if (performance.now() - lastFailureLogAt > 1000) {
            lastFailureLogAt = performance.now();
            log(`transport: cannot listen on ${host}:${port} again (another process took the port?): retrying`);
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

  /**
   * Listens with the first app. On port 0 it takes the port the kernel picks and listens again on
   * it by number: uSockets sets SO_REUSEADDR (and SO_REUSEPORT when shared) only on a port given,
   * and a socket without it cannot listen again (a reload, after a pause) while connections it
   * accepted are open.
   */
  const listenFirst = (cb: ListenCallback): void => {
    if (requestedPort !== 0) {
      listen(first, cb);
      return;
    }
    listen(first, (picked) => {
      if (picked === false) {
        cb(false);
        return;
      }
      port = uWS.us_socket_local_port(picked);
      uWS.us_listen_socket_close(picked);
      listen(first, (again) => {
        if (again !== false) {
          cb(again);
          return;
        }
        // Another process took it in that moment: a port the kernel picks, as asked.
        port = 0;
        listen(first, cb);
      });
    });
  };

  const ready = new Promise<number>((resolve, reject) => {
    listenFirst((listening) => {
      if (listening === false) {
        // uWS says only that it failed: Node's own listen on the same address says why (in use,
        // not allowed, not an address here).
        claimPort(host, requestedPort).then(
          () => reject(new GatewayError('BAD_CONFIG', `port: cannot listen on ${host}:${requestedPort}`)),
          reject,
        );
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
        // Close the old socket and listen again at once (uWS listens before it returns, so in the
        // same turn of the loop): only a connection arriving in those microseconds is refused.
        const closeFirst = (): void => {
          if (token !== undefined) uWS.us_listen_socket_close(token);
          token = undefined;
          listen(next, (again) => {
            if (again !== false) {
              take(again);
              return;
            }
            // Another process took the port in that moment: keep serving the old certificate if we can.
            apps.pop();
            listen(app, (old) => {
              if (old !== false) token = old;
            });
            reject(new GatewayError('BAD_CONFIG', `port: cannot listen on ${host}:${port} with the new certificate`));
          });
        };
        if (!shared) {
          closeFirst();
          return;
        }
        listen(next, (listening) => {
          if (listening === false) {
            // No second socket on the port (one the kernel picked, listened on without SO_REUSEPORT).
            closeFirst();
            return;
          }
          const old = token;
          take(listening);
          if (old !== undefined) uWS.us_listen_socket_close(old);
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
