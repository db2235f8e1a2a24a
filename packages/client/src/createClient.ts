import { type Backoff, backoffDelay, longestDelay, validateBackoff } from './backoff.ts';
import { decodeServerMessage, type Encoding, encodeClientMessage } from './codec.ts';
import { DedupeWindow } from './DedupeWindow.ts';
import { ClientError } from './errors.ts';
import {
  type ActivitySubscriptionMessage,
  type BlocksSubscriptionMessage,
  EVENT_KINDS,
  type EventKind,
  FINALITY_LEVELS,
  type FinalityLevel,
  type Hex,
  type ServerMessage,
  type SubscribedMessage,
} from './messages.ts';

/**
 * The part of a WebSocket the client uses: what the browser's `WebSocket` and the `ws` package's
 * `WebSocket` both offer.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: drops the connection at once, without a closing handshake. */
  terminate?(): void;
  onopen: ((event: never) => unknown) | null;
  onmessage: ((event: never) => unknown) | null;
  onclose: ((event: never) => unknown) | null;
  onerror: ((event: never) => unknown) | null;
}

/** A WebSocket class: the browser's `WebSocket`, or `WebSocket` from the `ws` package in Node. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * Where the client stands:
 * - `connecting`: a connection is being opened (the first, or a reconnect);
 * - `open`: the server said `welcome`; subscriptions are (re)sent;
 * - `resuming`: after a reconnect, the subscriptions made before it are sent again, each with its
 *   last cursor, for the server to replay what they missed;
 * - `recovered`: every one of them was replayed without a gap (`recovered:true`);
 * - `lost`: at least one could not be (`recovered:false`, or it had no cursor to resume from yet):
 *   its delivery restarted at the head, and the application must resync it by other means;
 * - `closed`: the connection closed; `reconnectInMs` says when the next attempt starts, `null` when
 *   the client stopped for good (`close()`, or an error a reconnect would repeat).
 */
export type ClientStatus = 'connecting' | 'open' | 'resuming' | 'recovered' | 'lost' | 'closed';

/** One status change, with what the application may want to know about it. */
export type StatusEvent =
  | {
      readonly status: 'connecting';
      /** 1 for the first attempt since the last healthy connection. */
      readonly attempt: number;
    }
  | { readonly status: 'open' }
  | {
      readonly status: 'resuming';
      /** Subscriptions sent again after the reconnect. */
      readonly subscriptions: number;
    }
  | { readonly status: 'recovered'; readonly subscriptions: number }
  | {
      readonly status: 'lost';
      readonly subscriptions: number;
      /** How many of them were not recovered. */
      readonly lost: number;
    }
  | {
      readonly status: 'closed';
      /** The WebSocket close code (1006 when the link died or never opened). */
      readonly code: number;
      readonly reason: string;
      /** Delay before the next attempt, in ms; `null` when the client will not reconnect. */
      readonly reconnectInMs: number | null;
    };

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** The gateway's protocol endpoint, `ws://HOST:PORT/v1` or `wss://…`. */
  readonly url: string;
  /** An API key, sent as `?key=` (a browser's WebSocket cannot send headers). */
  readonly apiKey?: string;
  /**
   * A token (JWT), or a function that fetches a fresh one. A function is asked before a connection
   * opens when the token it gave last expires within `tokenRefreshMarginMs`, and that long before
   * the open connection's token expires: the new one is sent in-band (`op: "auth"`) and the
   * connection stays open. A fixed token cannot be renewed: when it expires, the client stops.
   */
  readonly token?: string | (() => string | Promise<string>);
  /** How long before its token expires a connection asks for a fresh one, in ms (at most half the token's remaining life). @default 30000 */
  readonly tokenRefreshMarginMs?: number;
  /** Wire encoding. @default 'msgpack' */
  readonly encoding?: Encoding;
  /** The WebSocket class. @default globalThis.WebSocket (pass `WebSocket` from `ws` on Node 20) */
  readonly WebSocket?: WebSocketConstructor;
  /**
   * A `ping` is sent this often, in ms; a connection that brings no message at all for twice as
   * long (including one still opening) is dropped and reopened. @default 10000
   */
  readonly heartbeatIntervalMs?: number;
  /** Reconnect delays (merged with the defaults). */
  readonly backoff?: Partial<Backoff>;
  /** Called on every status change. */
  readonly onStatus?: (event: StatusEvent) => void;
  /**
   * Called with every error that has no subscription's `onError` to go to: messages the server
   * refused, undecodable frames, terminal closes, throwing listeners. @default console.error
   */
  readonly onError?: (error: ClientError) => void;
}

/** Options shared by every subscription. */
interface CommonSubscriptionOptions {
  /** @default the gateway's first chain */
  readonly chainId?: number;
  /** Deliver a block once it has this many confirmations (0: at the head). @default 0 */
  readonly confirmations?: number;
  /**
   * Deliver a block (or its activity) only once the node's `safe` or `finalized` block has reached
   * it: never a `removed` for it then. Not together with `confirmations` above 0. The gateway
   * refuses it (`UNSUPPORTED`, to `onError`) on a chain whose node has no such tags; see
   * `welcome.chains[i].finality`. Without it, the subscription gets `finality` messages instead.
   * @default undefined (deliver at the head, or after `confirmations`)
   */
  readonly finality?: FinalityLevel;
  /**
   * Called when the server refuses the subscription (`BAD_ADDRESS`, `TOO_MANY_SUBSCRIPTIONS`, …);
   * the subscription is then over. @default the client's `onError`
   */
  readonly onError?: (error: ClientError) => void;
}

/** Options of {@link Client.subscribeBlocks}. */
export interface SubscribeBlocksOptions extends CommonSubscriptionOptions {
  /** Include each block's transactions. @default false */
  readonly full?: boolean;
  /** With `full`, send transactions' whole `input` instead of its 4-byte selector. @default false */
  readonly fullInput?: boolean;
}

/** Options of {@link Client.watchAddresses}. */
export interface WatchAddressesOptions extends CommonSubscriptionOptions {
  /**
   * `internal` (ETH moved inside a transaction, from call traces) is served only where the chain's
   * node has traces (`welcome.chains[i].internal`); asking for it elsewhere is refused
   * (`UNSUPPORTED`). @default every kind: ['tx', 'erc20', 'erc721', 'erc1155', 'internal'] (internal where served)
   */
  readonly kinds?: readonly EventKind[];
  /**
   * Also deliver matching mempool transactions (`pending` messages, never replayed), and what
   * became of them when they were not mined: `replaced` and `dropped`. @default false
   */
  readonly pending?: boolean;
}

/** Stops a subscription: no message reaches its listener after this returns. */
export type Unsubscribe = () => void;

/**
 * What {@link Client.watchAddresses} returns: call it to stop watching (an {@link Unsubscribe}),
 * or change the watched addresses in place with `update`.
 */
export interface AddressWatch extends Unsubscribe {
  /**
   * Changes the watched addresses on the same subscription, without resubscribing: removes
   * `remove`, then adds `add` (any case; an address in both stays watched). Resolves with how
   * many addresses the subscription watches once the gateway applied the change (`updated`); a
   * change made while the connection is down or the subscription not yet confirmed waits, and is
   * carried by the next (resumed) subscribe. Changes apply in call order, one at a time. Rejects
   * with a {@link ClientError} when the gateway refuses it (`TOO_MANY_ADDRESSES`, `FORBIDDEN`,
   * `OVERLOADED`, …: the set stays as it was), `SUBSCRIPTION_ENDED` after unsubscribing, and
   * `CLIENT_CLOSED` once the client stopped. Events of removed addresses may still arrive until
   * it resolves. Throws a `TypeError` on anything but arrays of 0x addresses.
   */
  update(add: readonly string[], remove?: readonly string[]): Promise<{ readonly addresses: number }>;
  /** The watched addresses, lowercase: those given at first, then as each update the gateway confirmed left them (changes in flight not included). */
  readonly addresses: readonly Hex[];
}

/** A blockcast client: one connection, any number of subscriptions, all resumed after a reconnect. */
export interface Client {
  /**
   * Subscribes to new blocks. `onMessage` gets `subscribed`, `block` and `removed` messages,
   * without duplicates, and `finality` messages (unless it waits for finality itself). After a reconnect it gets `subscribed` again: unless that one says
   * `recovered: true`, blocks may have been missed meanwhile (the `lost` status).
   */
  subscribeBlocks(
    options: SubscribeBlocksOptions,
    onMessage: (message: BlocksSubscriptionMessage) => void,
  ): Unsubscribe;
  /**
   * Watches the activity of `addresses` (any case). `onMessage` gets `subscribed`, `activity`,
   * `removed` and `finality` messages (when a block it was sent activity for became final, unless
   * it waits for finality itself), and with
   * `pending: true` `pending`, `replaced` and `dropped` messages, each event once. After a reconnect
   * it gets `subscribed` again: unless that one says `recovered: true`, events may have been
   * missed meanwhile (the `lost` status). The returned function stops it; its `update` changes the
   * addresses in place, and a resume after a reconnect watches the changed set.
   */
  watchAddresses(
    addresses: readonly string[],
    options: WatchAddressesOptions,
    onMessage: (message: ActivitySubscriptionMessage) => void,
  ): AddressWatch;
  /** The latest status. */
  readonly status: ClientStatus;
  /** Closes the connection, ends every subscription and stops every timer. */
  close(): void;
}

/** Every default of {@link ClientOptions}, in one place. */
export const CLIENT_DEFAULTS = Object.freeze({
  encoding: 'msgpack' as Encoding,
  heartbeatIntervalMs: 10_000,
  tokenRefreshMarginMs: 30_000,
  backoff: Object.freeze({ initialMs: 500, maxMs: 30_000, factor: 2, jitter: 0.5 }) as Backoff,
});

/** Close codes after which reconnecting would only repeat the failure: the client stops. */
const TERMINAL_CLOSE_CODES: ReadonlySet<number> = new Set([1002, 1003, 1007, 1008, 1009, 1010]);
const TOO_MANY_REQUESTS = 4029;
/** The gateway closes a connection whose token expired with this code. */
const TOKEN_EXPIRED = 4401;
/** Messages of not yet confirmed subscriptions held at most (a resume replays at most the server's window). */
const MAX_BUFFERED_MESSAGES = 100_000;
const OPEN = 1;
/** How the client closes a socket it gives up on while the link still works. */
const CLIENT_CLOSE = { code: 1000, reason: 'reconnecting' } as const;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

type AnyListener = (message: ServerMessage) => void;

/** One `update` of an address subscription, from the call until the gateway answers it. */
interface AddressChange {
  /** Lowercase. */
  readonly add: readonly string[];
  /** Lowercase. */
  readonly remove: readonly string[];
  readonly resolve: (result: { readonly addresses: number }) => void;
  readonly reject: (error: ClientError) => void;
  /** The connection whose request carries it (an `update`, or a subscribe with the changed set); stale once that connection is gone. */
  sentOn: Connection | undefined;
  requestId: number | undefined;
}

/** One subscription as the application made it; it outlives connections. */
interface Subscription {
  /**
   * The `subscribe` request without `id` and `from`; its `addresses` are the set the gateway last
   * confirmed, which a resume sends again.
   */
  request: Readonly<Record<string, unknown>>;
  readonly onMessage: AnyListener;
  readonly onError: ((error: ClientError) => void) | undefined;
  readonly held: DedupeWindow;
  /** The cursor of the last `block`, `activity` or `removed` message received (`finality`, `replaced`, `dropped` carry none). */
  cursor: string | undefined;
  /** Whether the server has accepted it on some connection. */
  confirmed: boolean;
  active: boolean;
  /** Where the server has it live: `update` goes there (stale once `conn` is not the connection). */
  live: { readonly conn: Connection; readonly sid: string } | undefined;
  /** Address changes not yet confirmed, oldest first; only the first is ever in flight as an `update`. */
  readonly changes: AddressChange[];
  /** Whether a (re)subscribe carries the queued changes; off after one that did was refused. */
  foldChanges: boolean;
}

/** One WebSocket connection and what is known on it. */
interface Connection {
  readonly socket: WebSocketLike;
  readonly startedAt: number;
  lastMessageAt: number;
  welcomedAt: number | undefined;
  /** Server `sub` id → subscription, once `subscribed` arrived. */
  readonly bySid: Map<string, Subscription>;
  /** Request id → subscription, while its `subscribe` is unanswered. */
  readonly pending: Map<number, Subscription>;
  /** Request id → subscription, while its `update` is unanswered. */
  readonly updates: Map<number, Subscription>;
  /** Messages for `sub` ids not yet confirmed: a resume's replay comes before its `subscribed`. */
  readonly buffered: Map<string, ServerMessage[]>;
  bufferedCount: number;
  /** Ids of subscriptions unsubscribed on this connection whose `unsubscribed` has not come. */
  readonly retired: Set<string>;
  /** Subscriptions resumed from a cursor and not yet answered. */
  readonly resuming: Set<Subscription>;
  resumed: number;
  lost: number;
  pingTimer: ReturnType<typeof setInterval> | undefined;
  watchdogTimer: ReturnType<typeof setTimeout> | undefined;
  /** Asks for a fresh token before the connection's expires. */
  refreshTimer: ReturnType<typeof setTimeout> | undefined;
  /** The id of the `auth` request in flight. */
  refreshId: number | undefined;
  /** Subscribe requests to send again later (`TRY_AGAIN`). */
  readonly retries: Set<ReturnType<typeof setTimeout>>;
}

/**
 * Creates a client of a blockcast gateway (protocol v1). It connects at once, reconnects with
 * exponential backoff and jitter, resumes every subscription from its last cursor, drops the
 * duplicates a resume brings, and detects a dead link by heartbeat.
 *
 * @example
 * const client = createClient({ url: 'ws://localhost:8080/v1', WebSocket })
 * const unwatch = client.watchAddresses(['0xabc…'], {}, (m) => console.log(m))
 */
export function createClient(options: ClientOptions): Client {
  const baseUrl = toUrl(options.url, options.encoding ?? CLIENT_DEFAULTS.encoding);
  if (options.apiKey !== undefined && options.token !== undefined) {
    throw new TypeError('apiKey, token: give one of them, not both');
  }
  if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey.length === 0)) {
    throw new TypeError('apiKey: must be a non-empty string');
  }
  const tokenSource = options.token;
  if (tokenSource !== undefined && typeof tokenSource !== 'function' && typeof tokenSource !== 'string') {
    throw new TypeError('token: must be a JWT or a function that returns one');
  }
  const tokenRefreshMarginMs = options.tokenRefreshMarginMs ?? CLIENT_DEFAULTS.tokenRefreshMarginMs;
  if (!Number.isFinite(tokenRefreshMarginMs) || tokenRefreshMarginMs < 0) {
    throw new TypeError(`tokenRefreshMarginMs: must be a non-negative number of ms, got ${tokenRefreshMarginMs}`);
  }
  const encoding = options.encoding ?? CLIENT_DEFAULTS.encoding;
  const WebSocketClass = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof WebSocketClass !== 'function') {
    throw new TypeError('WebSocket: no global WebSocket here; pass one (on Node 20: `WebSocket` from the ws package)');
  }
  const heartbeatIntervalMs = options.heartbeatIntervalMs ?? CLIENT_DEFAULTS.heartbeatIntervalMs;
  if (!Number.isFinite(heartbeatIntervalMs) || heartbeatIntervalMs <= 0) {
    throw new TypeError(`heartbeatIntervalMs: must be a positive number of ms, got ${heartbeatIntervalMs}`);
  }
  const backoff: Backoff = { ...CLIENT_DEFAULTS.backoff, ...options.backoff };
  validateBackoff(backoff);
  const deadAfterMs = 2 * heartbeatIntervalMs;

  const subscriptions = new Set<Subscription>();
  let status: ClientStatus = 'connecting';
  let closed = false;
  let connection: Connection | undefined;
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Connection attempts that failed since the last healthy connection. */
  let failures = 0;
  let nextRequestId = 0;
  /** The token in use, as the application last gave it. */
  let token = typeof tokenSource === 'string' ? tokenSource : undefined;
  /** Counts connection attempts, so that a token that arrives late opens nothing. */
  let attempts = 0;

  const reportError = (error: ClientError, handler = options.onError): void => {
    try {
      if (handler === undefined) console.error('blockcast client:', error);
      else handler(error);
    } catch (thrown) {
      console.error('blockcast client: onError threw', thrown);
    }
  };

  const emit = (event: StatusEvent): void => {
    status = event.status;
    try {
      options.onStatus?.(event);
    } catch (thrown) {
      reportError(new ClientError('LISTENER_FAILED', `onStatus threw on ${event.status}`, { cause: thrown }));
    }
  };

  const deliver = (subscription: Subscription, message: ServerMessage): void => {
    if (!subscription.active) return;
    try {
      subscription.onMessage(message);
    } catch (thrown) {
      reportError(new ClientError('LISTENER_FAILED', `onMessage threw on ${message.type}`, { cause: thrown }));
    }
  };

  const send = (conn: Connection, message: Record<string, unknown>): void => {
    if (conn.socket.readyState !== OPEN) return; // the close that follows reconnects
    try {
      conn.socket.send(encodeClientMessage(encoding, message));
    } catch {
      // A socket closing under us: its close event reconnects.
    }
  };

  const sendSubscribe = (conn: Connection, subscription: Subscription): void => {
    const id = ++nextRequestId;
    conn.pending.set(id, subscription);
    const from = subscription.cursor === undefined ? {} : { from: subscription.cursor };
    let request = subscription.request;
    if (subscription.foldChanges && subscription.changes.length > 0) {
      // Changes made while away ride on the (resumed) subscribe: its replay already covers them.
      let addresses = request['addresses'] as readonly string[];
      for (const change of subscription.changes) {
        addresses = applyChange(addresses, change);
        change.sentOn = conn;
        change.requestId = id;
      }
      request = { ...request, addresses };
    }
    send(conn, { ...request, id, ...from });
  };

  /** Sends the oldest waiting address change as an `update`, when the subscription is live here and none is in flight. */
  const flushChanges = (conn: Connection, subscription: Subscription): void => {
    const change = subscription.changes[0];
    const live = subscription.live;
    if (change === undefined || connection !== conn || !subscription.active) return;
    if (live?.conn !== conn || change.sentOn === conn) return;
    const id = ++nextRequestId;
    change.sentOn = conn;
    change.requestId = id;
    conn.updates.set(id, subscription);
    send(conn, { op: 'update', id, sub: live.sid, add: change.add, remove: change.remove });
  };

  /** The gateway applied `subscription`'s oldest change(s) carried by request `id`: they are its set now. */
  const commitChanges = (subscription: Subscription, conn: Connection, id: number, addresses?: number): void => {
    for (let change = subscription.changes[0]; change?.sentOn === conn && change.requestId === id; ) {
      subscription.changes.shift();
      const next = applyChange(subscription.request['addresses'] as readonly string[], change);
      subscription.request = { ...subscription.request, addresses: next };
      change.resolve({ addresses: addresses ?? next.length });
      change = subscription.changes[0];
    }
  };

  const rejectChanges = (subscription: Subscription, error: ClientError): void => {
    for (const change of subscription.changes.splice(0)) change.reject(error);
  };

  const finishResumeIfDone = (conn: Connection): void => {
    if (conn.resumed === 0 || conn.resuming.size > 0 || connection !== conn) return;
    const subscriptionsResumed = conn.resumed;
    conn.resumed = 0;
    if (conn.lost > 0) emit({ status: 'lost', subscriptions: subscriptionsResumed, lost: conn.lost });
    else emit({ status: 'recovered', subscriptions: subscriptionsResumed });
  };

  /**
   * Applies a message of a subscription: for a block-scoped one, remembers the cursor and drops
   * duplicates; the others (`pending`, `finality`, `replaced`, `dropped`) carry no cursor and
   * name no block delivered, so they pass as they are and change neither.
   */
  const receive = (subscription: Subscription, message: ServerMessage): void => {
    if (!subscription.active) return;
    let out: ServerMessage | undefined = message;
    switch (message.type) {
      case 'block':
        subscription.cursor = message.cursor;
        out = subscription.held.block(message);
        break;
      case 'activity':
        subscription.cursor = message.cursor;
        out = subscription.held.activity(message);
        break;
      case 'removed':
        subscription.cursor = message.cursor;
        out = subscription.held.removed(message);
        break;
      default:
        break;
    }
    if (out !== undefined) deliver(subscription, out);
  };

  const endSubscription = (conn: Connection | undefined, subscription: Subscription, error: ClientError): void => {
    subscription.active = false;
    subscriptions.delete(subscription);
    rejectChanges(subscription, error);
    if (conn?.resuming.delete(subscription)) finishResumeIfDone(conn);
  };

  const onSubscribed = (conn: Connection, message: SubscribedMessage): void => {
    const subscription = typeof message.id === 'number' ? conn.pending.get(message.id) : undefined;
    if (subscription === undefined) return; // not a reply to this connection's requests
    conn.pending.delete(message.id as number);
    const buffered = conn.buffered.get(message.sub) ?? [];
    conn.buffered.delete(message.sub);
    conn.bufferedCount -= buffered.length;
    if (conn.pending.size === 0) {
      conn.buffered.clear(); // nothing left that could claim them
      conn.bufferedCount = 0;
    }
    if (!subscription.active) {
      // Unsubscribed while the request was in flight.
      conn.retired.add(message.sub);
      send(conn, { op: 'unsubscribe', id: ++nextRequestId, sub: message.sub });
      return;
    }
    conn.bySid.set(message.sub, subscription);
    subscription.confirmed = true;
    subscription.live = { conn, sid: message.sub };
    subscription.foldChanges = true;
    commitChanges(subscription, conn, message.id as number);
    // Arrival order: a resume's `removed` and replay first, then its `subscribed`.
    for (const early of buffered) {
      if (connection !== conn) return;
      receive(subscription, early);
    }
    if (connection !== conn) return;
    // The position after the catch-up: a subscription without messages yet can resume from it.
    if (message.cursor !== undefined) subscription.cursor = message.cursor;
    deliver(subscription, message);
    if (conn.resuming.delete(subscription)) {
      if (message.recovered !== true) conn.lost++;
      finishResumeIfDone(conn);
    }
    // Changes asked while this subscribe was in flight (or that a refused one carried).
    flushChanges(conn, subscription);
  };

  /** The gateway answered an `update` with `updated` or `error`. */
  const onUpdateAnswer = (
    conn: Connection,
    subscription: Subscription,
    id: number,
    answer: { addresses: number } | { error: ClientError; retryAfterMs: number | undefined },
  ): void => {
    const change = subscription.changes[0];
    if (change?.sentOn !== conn || change.requestId !== id) return;
    if ('addresses' in answer) {
      commitChanges(subscription, conn, id, answer.addresses);
    } else if (answer.error.code === 'TRY_AGAIN') {
      // The gateway still resumes it: the same change again later, still first in line.
      change.sentOn = undefined;
      const timer = setTimeout(() => {
        conn.retries.delete(timer);
        flushChanges(conn, subscription);
      }, retryDelay(answer.retryAfterMs));
      conn.retries.add(timer);
      return;
    } else {
      subscription.changes.shift();
      change.reject(answer.error);
    }
    flushChanges(conn, subscription);
  };

  /**
   * The gateway had no room to replay this subscription now (`TRY_AGAIN`): ask again after the
   * delay it gave (bounded; with jitter), on the same connection, from the same cursor.
   */
  const retryLater = (conn: Connection, subscription: Subscription, retryAfterMs: number | undefined): void => {
    const timer = setTimeout(() => {
      conn.retries.delete(timer);
      if (connection === conn && subscription.active) sendSubscribe(conn, subscription);
    }, retryDelay(retryAfterMs));
    conn.retries.add(timer);
  };

  const onRefused = (conn: Connection, subscription: Subscription, id: number, error: ClientError): void => {
    if (subscription.active && subscription.changes[0]?.sentOn === conn && subscription.changes[0].requestId === id) {
      // It carried address changes, which may be what the gateway refused: subscribe again with
      // the confirmed set; the changes follow one by one as `update`s, each with its own answer.
      for (const change of subscription.changes) change.sentOn = undefined;
      subscription.foldChanges = false;
      sendSubscribe(conn, subscription);
      return;
    }
    const wasActive = subscription.active;
    endSubscription(conn, subscription, error);
    if (wasActive) reportError(error, subscription.onError ?? options.onError);
  };

  const onWelcome = (conn: Connection, message: Extract<ServerMessage, { type: 'welcome' }>): void => {
    if (conn.welcomedAt !== undefined) return; // one per connection
    if (message.protocol !== 1) {
      stop(
        conn,
        1002,
        `unsupported protocol ${message.protocol}`,
        new ClientError(
          'UNSUPPORTED_PROTOCOL',
          `the gateway speaks protocol ${message.protocol}; this client speaks 1`,
        ),
      );
      return;
    }
    conn.welcomedAt = now();
    scheduleRefresh(conn, message.auth?.expiresAt);
    conn.pingTimer = setInterval(() => send(conn, { op: 'ping', id: ++nextRequestId }), heartbeatIntervalMs);
    // Taken before any callback runs: a subscription made from one is sent by `add` itself.
    const toSend = [...subscriptions];
    emit({ status: 'open' });
    if (connection !== conn) return;
    for (const subscription of toSend) {
      // One confirmed before without a cursor yet cannot be replayed: it is resent without `from`
      // and reported as not recovered (it may have missed something while away).
      const resumes = subscription.cursor !== undefined || subscription.confirmed;
      if (subscription.active && resumes) conn.resuming.add(subscription);
    }
    conn.resumed = conn.resuming.size;
    if (conn.resumed > 0) {
      emit({ status: 'resuming', subscriptions: conn.resumed });
      if (connection !== conn) return;
    }
    for (const subscription of toSend) if (subscription.active) sendSubscribe(conn, subscription);
  };

  const onServerMessage = (conn: Connection, message: ServerMessage): void => {
    switch (message.type) {
      case 'welcome':
        onWelcome(conn, message);
        return;
      case 'subscribed':
        onSubscribed(conn, message);
        return;
      case 'unsubscribed':
        conn.retired.delete(message.sub);
        return;
      case 'authed':
        if (message.id === conn.refreshId) conn.refreshId = undefined;
        scheduleRefresh(conn, message.expiresAt);
        return;
      case 'error': {
        const error = new ClientError(message.code, message.message);
        if (message.id !== undefined && message.id === conn.refreshId) {
          // The connection keeps its old token until it expires; the reconnect then asks for a fresh one.
          conn.refreshId = undefined;
          reportError(error);
          return;
        }
        const id = typeof message.id === 'number' ? message.id : undefined;
        const subscription = id === undefined ? undefined : conn.pending.get(id);
        if (id !== undefined && subscription !== undefined) {
          conn.pending.delete(id);
          if (message.code === 'TRY_AGAIN') retryLater(conn, subscription, message.retryAfterMs);
          else onRefused(conn, subscription, id, error);
          return;
        }
        const updating = id === undefined ? undefined : conn.updates.get(id);
        if (id !== undefined && updating !== undefined) {
          conn.updates.delete(id);
          onUpdateAnswer(conn, updating, id, { error, retryAfterMs: message.retryAfterMs });
          return;
        }
        reportError(error);
        // The server dropped a request without saying which: start over on a fresh connection.
        if (message.code === 'RATE_LIMITED') drop(conn, TOO_MANY_REQUESTS, 'rate limited', CLIENT_CLOSE);
        return;
      }
      case 'block':
      case 'activity':
      case 'removed':
      case 'pending':
      case 'finality':
      case 'replaced':
      case 'dropped': {
        const subscription = conn.bySid.get(message.sub);
        if (subscription !== undefined) receive(subscription, message);
        else if (!conn.retired.has(message.sub) && conn.pending.size > 0) {
          if (conn.bufferedCount >= MAX_BUFFERED_MESSAGES) {
            drop(conn, 1006, `more than ${MAX_BUFFERED_MESSAGES} messages before their subscribed`, CLIENT_CLOSE);
            return;
          }
          const list = conn.buffered.get(message.sub);
          if (list === undefined) conn.buffered.set(message.sub, [message]);
          else list.push(message);
          conn.bufferedCount++;
        }
        return;
      }
      case 'pong':
        // Positions of quiet subscriptions move on with the chain: a resume replays only what follows.
        for (const [sid, cursor] of Object.entries(message.cursors ?? {})) {
          const subscription = conn.bySid.get(sid);
          if (subscription !== undefined) subscription.cursor = cursor;
        }
        return;
      case 'updated': {
        const id = typeof message.id === 'number' ? message.id : undefined;
        const subscription = id === undefined ? undefined : conn.updates.get(id);
        if (id === undefined || subscription === undefined) return;
        conn.updates.delete(id);
        onUpdateAnswer(conn, subscription, id, { addresses: message.addresses });
        return;
      }
      default:
        return; // types of later protocol versions: a client ignores what it does not know
    }
  };

  const clearConnectionTimers = (conn: Connection): void => {
    clearInterval(conn.pingTimer);
    clearTimeout(conn.watchdogTimer);
    clearTimeout(conn.refreshTimer);
    conn.refreshTimer = undefined;
    for (const timer of conn.retries) clearTimeout(timer);
    conn.retries.clear();
    conn.pingTimer = undefined;
    conn.watchdogTimer = undefined;
  };

  /** Forgets a connection: timers, handlers, and the socket itself when it is still up. */
  const detach = (conn: Connection, closeSocket: { code: number; reason: string } | 'terminate' | undefined): void => {
    clearConnectionTimers(conn);
    const socket = conn.socket;
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    // A socket closed while still opening reports an error: keep a handler so none goes unhandled.
    socket.onerror = () => undefined;
    if (connection === conn) connection = undefined;
    if (closeSocket === undefined) return;
    try {
      if (closeSocket === 'terminate' && socket.terminate !== undefined) socket.terminate();
      else if (closeSocket === 'terminate') socket.close(4000, 'heartbeat timeout');
      else socket.close(closeSocket.code, closeSocket.reason);
    } catch {
      // Closing a socket that is already closing.
    }
  };

  /** The connection is over: reconnect after a backoff delay, or stop for good on a terminal code. */
  const drop = (
    conn: Connection,
    code: number,
    reason: string,
    closeSocket?: { code: number; reason: string } | 'terminate',
  ): void => {
    if (connection !== conn) return;
    detach(conn, closeSocket);
    if (TERMINAL_CLOSE_CODES.has(code)) {
      const error =
        code === 1009
          ? new ClientError('MESSAGE_TOO_BIG', `the gateway closed with 1009: a message was too big (${reason})`, {
              closeCode: code,
            })
          : new ClientError('CLOSED_BY_SERVER', `the gateway closed with ${code} (${reason}): not reconnecting`, {
              closeCode: code,
            });
      finish(code, reason, error);
      return;
    }
    if (code === TOKEN_EXPIRED) {
      if (typeof tokenSource !== 'function') {
        const error = new ClientError(
          'UNAUTHORIZED',
          'the token expired and cannot be renewed: pass `token` as a function',
          {
            closeCode: code,
          },
        );
        finish(code, reason, error);
        return;
      }
      token = undefined; // the next connection asks for a fresh one
    }
    const healthy = conn.welcomedAt !== undefined && now() - conn.welcomedAt >= heartbeatIntervalMs;
    if (healthy && code !== TOO_MANY_REQUESTS) failures = 0;
    reconnectLater(code, reason);
  };

  /** Reports the close and starts the next attempt after a backoff delay. */
  const reconnectLater = (code: number, reason: string): void => {
    // 4029 asks for a longer pause: the longest delay, whatever the count of failures.
    const delay = code === TOO_MANY_REQUESTS ? longestDelay(backoff) : backoffDelay(failures, backoff);
    failures = Math.min(failures + 1, 64);
    emit({ status: 'closed', code, reason, reconnectInMs: delay });
    if (closed) return;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      connect();
    }, delay);
  };

  /** Stops for good after a terminal fault on `conn`. */
  const stop = (conn: Connection, code: number, reason: string, error: ClientError): void => {
    detach(conn, { code: 1000, reason });
    finish(code, reason, error);
  };

  const finish = (code: number, reason: string, error: ClientError | undefined): void => {
    closed = true;
    clearTimeout(reconnectTimer);
    reconnectTimer = undefined;
    const ended = new ClientError('CLIENT_CLOSED', `the client is closed (${reason})`, { cause: error });
    for (const subscription of subscriptions) {
      subscription.active = false;
      rejectChanges(subscription, ended);
    }
    subscriptions.clear();
    if (error !== undefined) reportError(error);
    emit({ status: 'closed', code, reason, reconnectInMs: null });
  };

  const armWatchdog = (conn: Connection): void => {
    const silentMs = now() - conn.lastMessageAt;
    conn.watchdogTimer = setTimeout(
      () => {
        conn.watchdogTimer = undefined;
        if (connection !== conn) return;
        if (now() - conn.lastMessageAt >= deadAfterMs) {
          const what = conn.welcomedAt === undefined ? 'no welcome' : 'no message';
          drop(conn, 1006, `heartbeat: ${what} for ${deadAfterMs} ms`, 'terminate');
        } else {
          armWatchdog(conn);
        }
      },
      Math.max(0, deadAfterMs - silentMs),
    );
  };

  const fetchToken = async (): Promise<string> => {
    const fresh = await (tokenSource as () => string | Promise<string>)();
    if (typeof fresh !== 'string' || fresh.length === 0) throw new TypeError('token(): must return a JWT');
    return fresh;
  };

  /**
   * Asks the application for a fresh token `tokenRefreshMarginMs` before the connection's expires
   * (at most half its remaining life before) and sends it in-band.
   */
  const scheduleRefresh = (conn: Connection, expiresAt: number | undefined): void => {
    clearTimeout(conn.refreshTimer);
    conn.refreshTimer = undefined;
    if (typeof tokenSource !== 'function' || typeof expiresAt !== 'number') return;
    const left = expiresAt * 1000 - Date.now();
    const wait = left - Math.min(tokenRefreshMarginMs, left / 2);
    conn.refreshTimer = setTimeout(
      () => {
        conn.refreshTimer = undefined;
        if (connection !== conn) return;
        fetchToken().then(
          (fresh) => {
            if (connection !== conn) return;
            token = fresh;
            conn.refreshId = ++nextRequestId;
            send(conn, { op: 'auth', id: conn.refreshId, token: fresh });
          },
          (thrown: unknown) => {
            reportError(
              new ClientError('TOKEN_FAILED', 'token() failed: the connection closes when its token expires', {
                cause: thrown,
              }),
            );
          },
        );
      },
      Math.min(Math.max(0, wait), 2_147_483_647),
    );
  };

  /** The URL of the next connection, with its credential. */
  const urlNow = (): string => {
    if (options.apiKey === undefined && token === undefined) return baseUrl;
    const url = new URL(baseUrl);
    if (options.apiKey !== undefined) url.searchParams.set('key', options.apiKey);
    else if (token !== undefined) url.searchParams.set('token', token);
    return url.toString();
  };

  const connect = (): void => {
    if (closed) return;
    emit({ status: 'connecting', attempt: failures + 1 });
    if (closed) return;
    const attempt = ++attempts;
    if (typeof tokenSource === 'function' && !lasts(token, tokenRefreshMarginMs)) {
      fetchToken().then(
        (fresh) => {
          if (closed || attempt !== attempts) return;
          token = fresh;
          openSocket();
        },
        (thrown: unknown) => {
          if (closed || attempt !== attempts) return;
          reportError(new ClientError('TOKEN_FAILED', 'token() failed: trying again later', { cause: thrown }));
          reconnectLater(1006, 'no token');
        },
      );
      return;
    }
    openSocket();
  };

  const openSocket = (): void => {
    let socket: WebSocketLike;
    try {
      socket = new WebSocketClass(urlNow());
      socket.binaryType = 'arraybuffer';
    } catch (thrown) {
      finish(1006, 'cannot open a WebSocket', new ClientError('CLOSED_BY_SERVER', String(thrown), { cause: thrown }));
      return;
    }
    const startedAt = now();
    const conn: Connection = {
      socket,
      startedAt,
      lastMessageAt: startedAt,
      welcomedAt: undefined,
      bySid: new Map(),
      pending: new Map(),
      updates: new Map(),
      buffered: new Map(),
      bufferedCount: 0,
      retired: new Set(),
      resuming: new Set(),
      resumed: 0,
      lost: 0,
      pingTimer: undefined,
      watchdogTimer: undefined,
      refreshTimer: undefined,
      refreshId: undefined,
      retries: new Set(),
    };
    connection = conn;
    socket.onmessage = (event: { data: unknown }) => {
      if (connection !== conn) return;
      conn.lastMessageAt = now();
      let message: ServerMessage;
      try {
        message = decodeServerMessage(event.data);
      } catch (thrown) {
        reportError(new ClientError('BAD_MESSAGE', 'a frame from the gateway could not be decoded', { cause: thrown }));
        return;
      }
      onServerMessage(conn, message);
    };
    socket.onclose = (event: { code: number; reason: string }) => {
      drop(conn, event.code, event.reason);
    };
    socket.onerror = () => undefined; // a close event follows every error
    armWatchdog(conn);
  };

  const add = (
    request: Record<string, unknown>,
    onMessage: AnyListener,
    onError: Subscription['onError'],
  ): { subscription: Subscription; unsubscribe: Unsubscribe } => {
    if (closed) throw new ClientError('CLIENT_CLOSED', 'the client is closed');
    const subscription: Subscription = {
      request,
      onMessage,
      onError,
      held: new DedupeWindow(),
      cursor: undefined,
      confirmed: false,
      active: true,
      live: undefined,
      changes: [],
      foldChanges: true,
    };
    subscriptions.add(subscription);
    const conn = connection;
    if (conn?.welcomedAt !== undefined) sendSubscribe(conn, subscription);
    const unsubscribe = (): void => {
      if (!subscription.active) return;
      const current = connection;
      endSubscription(current, subscription, new ClientError('SUBSCRIPTION_ENDED', 'unsubscribed'));
      if (current === undefined) return;
      for (const [sid, s] of current.bySid) {
        if (s !== subscription) continue;
        current.bySid.delete(sid);
        current.retired.add(sid);
        send(current, { op: 'unsubscribe', id: ++nextRequestId, sub: sid });
      }
    };
    return { subscription, unsubscribe };
  };

  /** `update` of {@link AddressWatch}: queues the change and sends it when the subscription is live. */
  const updateAddresses = (
    subscription: Subscription,
    add: readonly string[],
    remove: readonly string[] = [],
  ): Promise<{ readonly addresses: number }> => {
    const change = { add: toAddressList('add', add, true), remove: toAddressList('remove', remove, true) };
    if (closed) return Promise.reject(new ClientError('CLIENT_CLOSED', 'the client is closed'));
    if (!subscription.active) {
      return Promise.reject(new ClientError('SUBSCRIPTION_ENDED', 'the subscription is over: nothing to update'));
    }
    return new Promise((resolve, reject) => {
      subscription.changes.push({ ...change, resolve, reject, sentOn: undefined, requestId: undefined });
      const conn = connection;
      if (conn !== undefined) flushChanges(conn, subscription);
    });
  };

  connect();

  return {
    subscribeBlocks(subscribeOptions, onMessage) {
      const { chainId, confirmations, finality, full, fullInput, onError } = subscribeOptions;
      validateCommon(chainId, confirmations, finality);
      const request = {
        op: 'subscribe',
        channel: 'blocks',
        ...(chainId === undefined ? {} : { chainId }),
        ...(full === undefined ? {} : { full }),
        ...(fullInput === undefined ? {} : { fullInput }),
        ...(confirmations === undefined ? {} : { confirmations }),
        ...(finality === undefined ? {} : { finality }),
      };
      return add(request, onMessage as AnyListener, onError).unsubscribe;
    },
    watchAddresses(addresses, watchOptions, onMessage) {
      const { chainId, confirmations, finality, kinds, pending, onError } = watchOptions;
      validateCommon(chainId, confirmations, finality);
      const watched = toAddressList('addresses', addresses, false);
      if (kinds !== undefined) {
        const unknown = kinds.filter((kind) => !EVENT_KINDS.includes(kind));
        if (kinds.length === 0 || unknown.length > 0) {
          throw new TypeError(`kinds: must be a non-empty list of ${EVENT_KINDS.join(', ')}; got ${kinds.join(', ')}`);
        }
      }
      const request = {
        op: 'subscribe',
        channel: 'activity',
        addresses: watched,
        ...(chainId === undefined ? {} : { chainId }),
        ...(kinds === undefined ? {} : { kinds: [...kinds] }),
        ...(pending === undefined ? {} : { pending }),
        ...(confirmations === undefined ? {} : { confirmations }),
        ...(finality === undefined ? {} : { finality }),
      };
      const { subscription, unsubscribe } = add(request, onMessage as AnyListener, onError);
      const watch = Object.assign(unsubscribe, {
        update: (add: readonly string[], remove?: readonly string[]) => updateAddresses(subscription, add, remove),
      });
      return Object.defineProperty(watch, 'addresses', {
        enumerable: true,
        get: () => [...(subscription.request['addresses'] as readonly Hex[])],
      }) as AddressWatch;
    },
    get status() {
      return status;
    },
    close() {
      if (closed) return;
      const conn = connection;
      if (conn !== undefined) detach(conn, { code: 1000, reason: 'client closed' });
      finish(1000, 'client closed', undefined);
    },
  };
}

/** Whether a token is valid for more than `marginMs` yet (by its `exp`; a token without one is asked for again). */
function lasts(token: string | undefined, marginMs: number): boolean {
  if (token === undefined) return false;
  try {
    const part = (token.split('.')[1] ?? '').replace(/-/g, '+').replace(/_/g, '/');
    const exp = (JSON.parse(atob(part)) as { exp?: unknown }).exp;
    return typeof exp === 'number' && exp * 1000 - Date.now() > marginMs;
  } catch {
    return false;
  }
}

/** Monotonic milliseconds (a wall-clock jump must not look like a dead link). */
function now(): number {
  return performance.now();
}

function toUrl(raw: string, encoding: Encoding): string {
  if (encoding !== 'msgpack' && encoding !== 'json') {
    throw new TypeError(`encoding: must be 'msgpack' or 'json', got ${JSON.stringify(encoding)}`);
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new TypeError(`url: not a URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new TypeError(`url: must be ws:// or wss://, got ${JSON.stringify(raw)}`);
  }
  if (encoding === 'json') url.searchParams.set('encoding', 'json');
  return url.toString();
}

/** Checks a list of 0x addresses (any case) and returns it lowercase, without repeats. */
function toAddressList(name: string, addresses: readonly string[], mayBeEmpty: boolean): string[] {
  if (!Array.isArray(addresses) || (!mayBeEmpty && addresses.length === 0)) {
    throw new TypeError(`${name}: must be ${mayBeEmpty ? 'an' : 'a non-empty'} array of 0x addresses`);
  }
  for (const address of addresses) {
    if (typeof address !== 'string' || !ADDRESS.test(address)) {
      throw new TypeError(`${name}: not an address: ${JSON.stringify(address)}`);
    }
  }
  return [...new Set(addresses.map((address) => address.toLowerCase()))];
}

/** `addresses` after a change, as the gateway applies one: removals first, then additions. */
function applyChange(
  addresses: readonly string[],
  change: { readonly add: readonly string[]; readonly remove: readonly string[] },
): string[] {
  const removing = new Set(change.remove);
  const next = new Set(addresses.filter((address) => !removing.has(address)));
  for (const address of change.add) next.add(address);
  return [...next];
}

/** How long to wait after a `TRY_AGAIN`, in ms: the delay it gave (bounded), plus up to half of it as jitter. */
function retryDelay(retryAfterMs: number | undefined): number {
  const base = Number.isFinite(retryAfterMs) ? Math.min(Math.max(retryAfterMs as number, 100), 60_000) : 1000;
  return base * (1 + Math.random() * 0.5);
}

function validateCommon(
  chainId: number | undefined,
  confirmations: number | undefined,
  finality: FinalityLevel | undefined,
): void {
  if (chainId !== undefined && (!Number.isSafeInteger(chainId) || chainId <= 0)) {
    throw new TypeError(`chainId: must be a positive integer, got ${chainId}`);
  }
  if (confirmations !== undefined && (!Number.isSafeInteger(confirmations) || confirmations < 0)) {
    throw new TypeError(`confirmations: must be a non-negative integer, got ${confirmations}`);
  }
  if (finality !== undefined && !FINALITY_LEVELS.includes(finality)) {
    throw new TypeError(
      `finality: must be ${FINALITY_LEVELS.map((level) => `'${level}'`).join(' or ')}, got ${JSON.stringify(finality)}`,
    );
  }
  if (finality !== undefined && confirmations !== undefined && confirmations > 0) {
    throw new TypeError('finality, confirmations: ask for one of them, not both');
  }
}
