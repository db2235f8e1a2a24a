import { type CursorPosition, parseCursor } from '../domain/cursor.ts';
import { CloseCode, MAX_MALFORMED_IN_A_ROW, type ProtocolErrorCode } from '../domain/errors.ts';
import { type BlockRef, type ChainFeatures, EVENT_KINDS, type EventKind, type Hex } from '../domain/types.ts';
import { type Encoding, encodeMessage } from '../fanout/encode.ts';
import type { Subscription, SubscriptionFilter, SubscriptionIndex } from '../index/SubscriptionIndex.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Auth, Grant } from './createAuth.ts';
import { parseRequest, type Request, type RequestId } from './parseRequest.ts';
import type { RpcChain, RpcSession } from './RpcSession.ts';

/**
 * The session of protocol v1 (PROTOCOL.md), apart from any socket: subscribe, update,
 * unsubscribe, ping and auth; every limit of a connection and of the gateway's capacity; rate
 * limiting, malformed frames, resume, token deadlines and refresh. The transport opens and
 * closes connections and hands it frames; the session writes through each connection's
 * {@link SocketLink}.
 */

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
  /** Why the gateway cannot serve now (a chain log unread, a stale head), for `/readyz`; `undefined` when it can. */
  readonly unready: () => string | undefined;
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
  /**
   * What a chain's node offers beyond blocks, as far as known (`undefined` before its first
   * block): the `safe`/`finalized` tags (`finality`), call traces (`internal` transfers).
   */
  readonly features: (chainId: number) => ChainFeatures;
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

/** The limits of one connection that a key may set (PROTOCOL.md, Authentication). */
export interface SessionLimits {
  readonly maxAddresses: number;
  readonly maxSubscriptions: number;
  readonly maxRequestsPerSecond: number;
}

/**
 * What a session writes to: a WebSocket as the transport holds it (uWebSockets.js's satisfies
 * it). `send` answers 1 (sent), 0 (buffered) or 2 (dropped: past the send buffer's limit).
 */
export interface SocketLink {
  send(message: string | Uint8Array | ArrayBuffer, isBinary?: boolean): number;
  end(code?: number, reason?: string): void;
  getBufferedAmount(): number;
  cork(cb: () => void): unknown;
}

/** One client connection's session state, whatever protocol it speaks (the subscription index's owner). */
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
  /** The socket, once open; `undefined` before and after. */
  link: SocketLink | undefined;
}

/** A connection as it opens: who it is, how it speaks, what its key allows; nothing subscribed yet. */
export function newConnection(init: {
  readonly ip: string;
  readonly ipKey: string;
  readonly encoding: Encoding;
  readonly grant: Grant | undefined;
  /** The gateway's limits, for a connection without a key of its own. */
  readonly defaults: SessionLimits;
  readonly rpcChain: RpcChain | undefined;
}): Connection {
  const limits = init.grant === undefined ? init.defaults : init.grant.profile.limits;
  return {
    ip: init.ip,
    ipKey: init.ipKey,
    encoding: init.encoding,
    subs: new Map(),
    resuming: new Map(),
    addressCount: 0,
    nextSid: 0,
    tokens: limits.maxRequestsPerSecond,
    refilledAt: performance.now(),
    rateLimitedInARow: 0,
    malformedInARow: 0,
    grant: init.grant,
    limits: {
      maxAddresses: limits.maxAddresses,
      maxSubscriptions: limits.maxSubscriptions,
      maxRequestsPerSecond: limits.maxRequestsPerSecond,
    },
    deadline: undefined,
    refreshing: false,
    rpcChain: init.rpcChain,
    rpc: undefined,
    closed: false,
    link: undefined,
  };
}

/** The activity kinds this gateway decodes; a subscription without `kinds` gets all of them. */
const SERVED_KINDS: ReadonlySet<EventKind> = new Set(EVENT_KINDS);

/** What a connection's key or token is, for `welcome.auth` and `authed`. */
function authSummary(grant: Grant): Record<string, unknown> {
  return {
    key: grant.profile.name,
    ...(grant.subject === undefined ? {} : { subject: grant.subject }),
    ...(grant.expiresAtMs === undefined ? {} : { expiresAt: Math.floor(grant.expiresAtMs / 1000) }),
    ...(grant.addresses === undefined ? {} : { addresses: grant.addresses.size }),
  };
}

/** Options of {@link createSessions}. */
export interface SessionsOptions {
  /** The gateway's per-connection limits (a key's replace the ones it sets). */
  readonly limits: Limits;
  readonly capacity: Capacity;
  /** Largest `confirmations` a subscription may ask for. */
  readonly maxConfirmations: number;
  readonly chains: ChainDirectory;
  readonly index: SubscriptionIndex<Connection>;
  readonly metrics: Metrics;
  /** Checks an in-band token refresh. */
  readonly auth: Auth;
}

/** The sessions of every connection, and the state they share (the gateway's capacity). */
export interface Sessions {
  /** A connection opened on `/v1`: its `welcome`, its token's deadline. */
  readonly open: (conn: Connection) => void;
  /** A frame of a `/v1` connection. */
  readonly message: (conn: Connection, data: ArrayBuffer, isBinary: boolean) => void;
  /** A connection closed (any endpoint): ends its subscriptions and its deadline. */
  readonly closed: (conn: Connection) => void;
  /** Closes a connection with a code of PROTOCOL.md, counted by `metric`. */
  readonly end: (conn: Connection, code: number, reason: string, metric: string) => void;
  /** Arms the close at a connection's token expiry (any endpoint). */
  readonly armDeadline: (conn: Connection) => void;
  /** Counts a request refused by a connection key's quota. */
  readonly quotaHit: (
    conn: Connection,
    quota: 'subscriptions' | 'addresses' | 'requests_per_second' | 'allowed',
  ) => void;
  /** Room for `more` watched addresses in the gateway's capacity; counts them on the connection when there is. */
  readonly reserveAddresses: (conn: Connection, more: number) => boolean;
  /** Gives back watched addresses of a connection. */
  readonly releaseAddresses: (conn: Connection, count: number) => void;
}

/** Builds the sessions of protocol v1 over the gateway's stages. */
export function createSessions(options: SessionsOptions): Sessions {
  const { limits, capacity, index, metrics, chains, auth } = options;
  /** Watched (subscription, address) pairs over every connection, live or resuming. */
  let watchedTotal = 0;

  const updateIndexGauges = (): void => {
    const counts = index.countByChannel();
    metrics.subscriptions.set({ channel: 'blocks' }, counts.blocks);
    metrics.subscriptions.set({ channel: 'activity' }, counts.activity);
    metrics.watchedAddresses.set(index.watchedAddresses);
  };

  const end = (conn: Connection, code: number, reason: string, metric: string): void => {
    if (conn.closed || conn.link === undefined) return;
    conn.closed = true;
    metrics.closes.inc({ endpoint: conn.rpcChain === undefined ? 'v1' : 'rpc', reason: metric });
    conn.link.end(code, reason);
  };

  const send = (conn: Connection, message: Record<string, unknown>): void => {
    if (conn.closed || conn.link === undefined) return;
    const status = conn.link.send(encodeMessage(conn.encoding, message), conn.encoding === 'msgpack');
    if (status === 2) end(conn, CloseCode.slowConsumer, 'slow consumer', 'slow_consumer');
  };

  const sendError = (
    conn: Connection,
    id: RequestId | undefined,
    code: ProtocolErrorCode,
    message: string,
    extra: Record<string, unknown> = {},
  ): void => {
    metrics.errors.inc({ endpoint: 'v1', code });
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
    const finality = request.finality;
    if (finality !== undefined) {
      const features = chains.features(chainId);
      if (features.finality !== true) {
        sendError(
          conn,
          id,
          features.finality === false ? 'UNSUPPORTED' : 'TRY_AGAIN',
          features.finality === false
            ? `finality is off on chain ${chainId}: ${features.finalityOff ?? 'its node serves no safe and finalized blocks'}`
            : `chain ${chainId}'s finality is not known yet: try again in a few seconds`,
        );
        return;
      }
    }
    if (request.channel === 'activity' && request.kinds?.has('internal') === true) {
      const internal = chains.features(chainId).internal;
      if (internal !== true) {
        sendError(
          conn,
          id,
          internal === false ? 'UNSUPPORTED' : 'TRY_AGAIN',
          internal === false
            ? `kind internal is off on chain ${chainId}: its node serves no call traces (debug_traceBlockByNumber or trace_block)`
            : `chain ${chainId}'s call traces are not known yet: try again in a few seconds`,
        );
        return;
      }
    }
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
      filter = {
        channel: 'blocks',
        full: request.full,
        fullInput: request.fullInput,
        confirmations,
        ...(finality === undefined ? {} : { finality }),
      };
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
        ...(finality === undefined ? {} : { finality }),
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
      // The subscription may have ended while it waited (unsubscribe, close). It may even have
      // ended inside its own catch-up: that write can close a slow consumer, and uWS runs the close
      // handler (which releases the subscription) from `end`, before the resume kept what it sent.
      // Release it again so that nothing of it stays behind.
      if (conn.closed || conn.subs.get(sid) !== sub) {
        if (recovered !== undefined) chains.release(sub);
        return;
      }
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

  /** A chain in `welcome`: its head and what its node offers, where known. */
  const chainSummary = (chainId: number): Record<string, unknown> => {
    const features = chains.features(chainId);
    return {
      chainId,
      head: headOf(chainId),
      ...(features.finality === undefined ? {} : { finality: features.finality }),
      ...(features.internal === undefined ? {} : { internal: features.internal }),
    };
  };

  const welcome = (conn: Connection): Record<string, unknown> => {
    const grant = conn.grant;
    const keyConnections = grant?.profile.limits.maxConnections ?? 0;
    return {
      type: 'welcome',
      protocol: 1,
      chains: chains.chainIds().map((chainId) => chainSummary(chainId)),
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

  return {
    open: (conn) => {
      send(conn, welcome(conn));
      armDeadline(conn);
    },
    message: onMessage,
    closed: (conn) => {
      clearTimeout(conn.deadline);
      conn.deadline = undefined;
      for (const sub of [...conn.subs.values()]) dropSub(conn, sub);
      updateIndexGauges();
    },
    end,
    armDeadline,
    quotaHit,
    reserveAddresses: (conn, more) => {
      if (watchedTotal + more > capacity.maxWatchedAddresses) return false;
      countAddresses(conn, more);
      return true;
    },
    releaseAddresses: (conn, count) => countAddresses(conn, -count),
  };
}
