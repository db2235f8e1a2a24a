import { type JWTPayload, SignJWT } from 'jose';
import { unpack } from 'msgpackr';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type CursorPosition, toCursor } from '../domain/cursor.ts';
import { MAX_MALFORMED_IN_A_ROW } from '../domain/errors.ts';
import type { BlockRef, ChainFeatures, Hex } from '../domain/types.ts';
import { type Encoding, pack } from '../fanout/encode.ts';
import {
  FINALIZED_DEPTH,
  HEADER_DEPTH,
  SAFE_DEPTH,
  type Subscription,
  SubscriptionIndex,
} from '../index/SubscriptionIndex.ts';
import { createMetrics, type Metrics } from '../metrics/metrics.ts';
import {
  type AccessProfile,
  type Auth,
  createAuth,
  type Grant,
  hashKey,
  type KeyLimits,
  type Refresh,
} from './createAuth.ts';
import {
  type Capacity,
  type ChainDirectory,
  type Connection,
  createSessions,
  type Limits,
  newConnection,
  type ResumeTicket,
  type Sessions,
  type SocketLink,
} from './createSessions.ts';

type Message = Record<string, unknown>;

const CHAIN = 31_337;
/** A second chain the gateway follows, whose head is not known yet. */
const OTHER_CHAIN = 10;
/** A chain the gateway does not follow. */
const UNKNOWN_CHAIN = 999;
const HEAD: BlockRef = { number: 100, hash: hash(100) };
const MAX_CONFIRMATIONS = 64;
const RETRY_AFTER_MS = 750;

const LIMITS: Limits = {
  maxAddresses: 5,
  maxSubscriptions: 3,
  maxMessageBytes: 65_536,
  maxBackpressureBytes: 262_144,
  maxRequestsPerSecond: 1000,
  maxConnectionsPerIp: 10,
};
const CAPACITY: Capacity = { maxConnections: 100, maxWatchedAddresses: 8 };

const SECRET = new TextEncoder().encode('a-secret-of-at-least-32-bytes-long!!');
const OTHER_SECRET = new TextEncoder().encode('another-secret-of-32-bytes-or-more!!');
/** A whole second, so that a token's `exp` (seconds) is an exact deadline in ms. */
const T0 = Date.UTC(2030, 0, 1);
const T0_SEC = T0 / 1000;

const KEY_LIMITS: KeyLimits = {
  maxConnections: 0,
  maxSubscriptions: 100,
  maxAddresses: 1000,
  maxRequestsPerSecond: 1000,
};
const TOKEN_LIMITS: KeyLimits = {
  maxConnections: 4,
  maxSubscriptions: 10,
  maxAddresses: 10,
  maxRequestsPerSecond: 1000,
};

function hash(n: number): Hex {
  return `0x${n.toString(16).padStart(64, '0')}`;
}

function addr(n: number): Hex {
  return `0x${n.toString(16).padStart(40, '0')}`;
}

const [A, B, C, D, E, F, G] = [0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7].map(addr) as [
  Hex,
  Hex,
  Hex,
  Hex,
  Hex,
  Hex,
  Hex,
];

/**
 * A socket as the session sees it: records every frame it was given, decoded, and how it was
 * ended. Like uWebSockets.js, `end` calls the close handler at once.
 */
class FakeLink implements SocketLink {
  readonly frames: Message[] = [];
  /** Whether each frame was sent as binary. */
  readonly binary: boolean[] = [];
  ended: { code: number | undefined; reason: string | undefined } | undefined;
  /** What `send` answers: 1 sent, 0 buffered, 2 dropped (past the send buffer's limit). */
  status = 1;
  readonly #onEnd: () => void;

  constructor(onEnd: () => void) {
    this.#onEnd = onEnd;
  }

  send(message: string | Uint8Array | ArrayBuffer, isBinary?: boolean): number {
    // A dropped frame never reaches the client.
    if (this.status === 2) return 2;
    const decoded =
      typeof message === 'string'
        ? JSON.parse(message)
        : unpack(message instanceof ArrayBuffer ? new Uint8Array(message) : message);
    this.frames.push(decoded as Message);
    this.binary.push(isBinary === true);
    return this.status;
  }

  end(code?: number, reason?: string): void {
    this.ended = { code, reason };
    this.#onEnd();
  }

  getBufferedAmount(): number {
    return 0;
  }

  cork(cb: () => void): void {
    cb();
  }
}

/** The chains of the gateway: heads, and resumes that finish as each test says. */
class FakeChains implements ChainDirectory {
  readonly heads = new Map<number, BlockRef>([[CHAIN, HEAD]]);
  /** What the next resume's ticket says; a `done` resume reports {@link recovered}. */
  nextStatus: ResumeTicket['status'] = 'done';
  recovered = true;
  readonly resumes: { sub: Subscription<Connection>; cursor: CursorPosition | undefined; maxBytes: number }[] = [];
  /** `onDone` of each queued resume, by sid; kept after a cancel, to call it late. */
  readonly waiting = new Map<string, (recovered: boolean) => void>();
  readonly cancelled: Subscription<Connection>[] = [];
  readonly released: Subscription<Connection>[] = [];
  /** What a recovered resume keeps of its subscription (what it sent, as the ledger does) until released. */
  readonly kept = new Set<Subscription<Connection>>();
  /** Called as a recovered resume writes its catch-up (where the transport may end the connection). */
  onCatchUp: (sub: Subscription<Connection>) => void = () => undefined;

  readonly chainIds = (): readonly number[] => [CHAIN, OTHER_CHAIN];
  readonly head = (chainId: number): BlockRef | undefined => this.heads.get(chainId);
  readonly unready = (): string | undefined => undefined;
  /** What each chain's node offers: finality on {@link CHAIN}, nothing on the other. */
  readonly features = (chainId: number): ChainFeatures =>
    chainId === CHAIN ? { finality: true, internal: undefined } : { finality: false, internal: undefined };
  readonly retryAfterMs = (): number => RETRY_AFTER_MS;
  readonly release = (sub: Subscription<Connection>): void => {
    this.released.push(sub);
    this.kept.delete(sub);
  };
  readonly position = (sub: Subscription<Connection>): string | undefined => {
    const head = this.heads.get(sub.chainId);
    return head === undefined ? undefined : toCursor(sub.chainId, head);
  };
  readonly resume = (
    sub: Subscription<Connection>,
    cursor: CursorPosition | undefined,
    maxBytes: number,
    onDone: (recovered: boolean) => void,
  ): ResumeTicket => {
    this.resumes.push({ sub, cursor, maxBytes });
    const status = this.nextStatus;
    if (status === 'done') this.#end(sub, this.recovered, onDone);
    if (status === 'queued') this.waiting.set(sub.sid, onDone);
    return { status, cancel: () => this.cancelled.push(sub) };
  };

  /** Ends a queued resume, as the replay queue does when its turn is over. */
  finish(sid: string, recovered: boolean): void {
    const onDone = this.waiting.get(sid);
    if (onDone === undefined) throw new Error(`no resume of ${sid} waits`);
    this.waiting.delete(sid);
    const sub = this.resumes.find((resume) => resume.sub.sid === sid)?.sub as Subscription<Connection>;
    this.#end(sub, recovered, onDone);
  }

  /** As ResumeJob ends: the catch-up is written, what was sent is kept, then `onDone`. */
  #end(sub: Subscription<Connection>, recovered: boolean, onDone: (recovered: boolean) => void): void {
    if (recovered) {
      this.onCatchUp(sub);
      this.kept.add(sub);
    }
    onDone(recovered);
  }
}

/** A frame as a client sends it: MessagePack in a binary frame, JSON in a text one. */
function frameOf(message: unknown, encoding: Encoding): ArrayBuffer {
  return toArrayBuffer(encoding === 'msgpack' ? pack(message) : new TextEncoder().encode(JSON.stringify(message)));
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy.buffer;
}

/** One client connection over a {@link FakeLink}. */
class Client {
  /** Frames already looked at by {@link take}. */
  #seen = 0;

  constructor(
    readonly sessions: Sessions,
    readonly conn: Connection,
    readonly link: FakeLink,
  ) {}

  send(message: unknown): void {
    this.sessions.message(this.conn, frameOf(message, this.conn.encoding), this.conn.encoding === 'msgpack');
  }

  sendRaw(bytes: Uint8Array, isBinary: boolean): void {
    this.sessions.message(this.conn, toArrayBuffer(bytes), isBinary);
  }

  /** Frames sent since the last call. */
  take(): Message[] {
    const frames = this.link.frames.slice(this.#seen);
    this.#seen = this.link.frames.length;
    return frames;
  }

  /** Sends one message and returns the one frame it was answered with at once. */
  request(message: unknown): Message {
    this.take();
    this.send(message);
    const replies = this.take();
    expect(replies).toHaveLength(1);
    return replies[0] as Message;
  }

  /** Subscribes and returns the sid it was given. */
  subscribe(message: Message): string {
    const reply = this.request({ op: 'subscribe', ...message });
    expect(reply).toMatchObject({ type: 'subscribed' });
    return reply['sub'] as string;
  }

  /** The socket closed, as the server's close handler reports it. */
  close(): void {
    this.conn.closed = true;
    this.conn.link = undefined;
    this.sessions.closed(this.conn);
  }
}

interface GatewaySetup {
  readonly limits?: Partial<Limits>;
  readonly capacity?: Partial<Capacity>;
  readonly auth?: Auth;
}

/** Sessions over a real index and real metrics; `checks` holds every token refresh under way. */
function gateway(setup: GatewaySetup = {}) {
  const metrics = createMetrics();
  const index = new SubscriptionIndex<Connection>();
  const chains = new FakeChains();
  const limits: Limits = { ...LIMITS, ...setup.limits };
  const inner = setup.auth ?? createAuth({ keys: [], origins: [] });
  const checks: Promise<Refresh>[] = [];
  const auth: Auth = {
    ...inner,
    refresh: (grant, token) => {
      const check = inner.refresh(grant, token);
      checks.push(check);
      return check;
    },
  };
  const sessions = createSessions({
    limits,
    capacity: { ...CAPACITY, ...setup.capacity },
    maxConfirmations: MAX_CONFIRMATIONS,
    chains,
    index,
    metrics,
    auth,
  });

  /** Opens a connection as the server's `admit` and `open` build it; its welcome is taken. */
  const connect = (options: { grant?: Grant; encoding?: Encoding } = {}): Client => {
    const conn = newConnection({
      ip: '127.0.0.1',
      ipKey: '127.0.0.1',
      encoding: options.encoding ?? 'msgpack',
      grant: options.grant,
      defaults: limits,
      rpcChain: undefined,
    });
    // The server's close handler, which uWS calls from `end`.
    const link = new FakeLink(() => client.close());
    conn.link = link;
    const client = new Client(sessions, conn, link);
    sessions.open(conn);
    client.take();
    return client;
  };

  /** Waits for the token refreshes under way, and for the session's answer to them. */
  const settle = async (): Promise<void> => {
    // The session's handler was attached first, so it has run once these resolve.
    await Promise.allSettled(checks.splice(0));
  };

  return { metrics, index, chains, limits, sessions, connect, settle };
}

/** A counter's or gauge's value for these labels (0 when the series does not exist). */
async function metricValue(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const match = values.find((value) =>
    Object.entries(labels).every(([label, wanted]) => String(value.labels[label]) === wanted),
  );
  return match?.value ?? 0;
}

function quotaHits(metrics: Metrics, key: string, quota: string): Promise<number> {
  return metricValue(metrics, 'blockcast_auth_quota_hits_total', { key, quota });
}

function keyGrant(name: string, restrictions: Partial<AccessProfile> = {}): Grant {
  const text = `${name}-key-0123456789abcdef`;
  const auth = createAuth({
    keys: [{ name, sha256: hashKey(text), origins: [], limits: KEY_LIMITS, ...restrictions }],
    origins: [],
  });
  const admission = auth.admit(text, '');
  if (admission instanceof Promise || !admission.ok || admission.grant === undefined) {
    throw new Error('the key was not admitted');
  }
  return admission.grant;
}

function tokenAuth(restrictions: Partial<AccessProfile> = {}): Auth {
  return createAuth({
    keys: [],
    origins: [],
    tokens: {
      key: SECRET,
      algorithm: 'HS256',
      profile: { name: 'token', origins: [], limits: TOKEN_LIMITS, ...restrictions },
    },
  });
}

function sign(claims: JWTPayload, secret: Uint8Array = SECRET): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).sign(secret);
}

async function tokenGrant(auth: Auth, claims: JWTPayload): Promise<Grant> {
  const admission = await auth.admit(await sign(claims), '');
  if (!admission.ok || admission.grant === undefined) throw new Error('the token was not admitted');
  return admission.grant;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('createSessions: welcome', () => {
  it('sends protocol 1, every chain with its head, and the gateway limits', () => {
    const { connect } = gateway();
    const client = connect();
    expect(client.link.frames).toEqual([
      {
        type: 'welcome',
        protocol: 1,
        chains: [
          { chainId: CHAIN, head: { number: HEAD.number, hash: HEAD.hash }, finality: true },
          { chainId: OTHER_CHAIN, head: null, finality: false },
        ],
        limits: { ...LIMITS, maxConfirmations: MAX_CONFIRMATIONS },
      },
    ]);
    expect(client.link.binary).toEqual([true]);
  });

  it('writes JSON text frames on a json connection', () => {
    const { connect } = gateway();
    const client = connect({ encoding: 'json' });
    expect(client.link.binary).toEqual([false]);
    expect(client.link.frames[0]).toMatchObject({ type: 'welcome', protocol: 1 });
    expect(client.request({ op: 'ping', id: 'p' })).toEqual({ type: 'pong', id: 'p', cursors: {} });
  });

  it("reports a token's grant and its profile's limits, with maxConnectionsPerKey", async () => {
    const auth = tokenAuth();
    const exp = Math.floor(Date.now() / 1000) + 600;
    const grant = await tokenGrant(auth, { sub: 'alice', exp, addresses: [A, B, C] });
    const { connect } = gateway({ auth });
    const client = connect({ grant });
    expect(client.link.frames[0]).toEqual({
      type: 'welcome',
      protocol: 1,
      chains: [
        { chainId: CHAIN, head: { number: HEAD.number, hash: HEAD.hash }, finality: true },
        { chainId: OTHER_CHAIN, head: null, finality: false },
      ],
      limits: {
        ...LIMITS,
        maxAddresses: TOKEN_LIMITS.maxAddresses,
        maxSubscriptions: TOKEN_LIMITS.maxSubscriptions,
        maxRequestsPerSecond: TOKEN_LIMITS.maxRequestsPerSecond,
        maxConfirmations: MAX_CONFIRMATIONS,
        maxConnectionsPerKey: TOKEN_LIMITS.maxConnections,
      },
      auth: { key: 'token', subject: 'alice', expiresAt: exp, addresses: 3 },
    });
    client.close();
  });

  it('reports a key by its name alone, without maxConnectionsPerKey when the key has no such limit', () => {
    const { connect } = gateway();
    const client = connect({ grant: keyGrant('alice') });
    const welcome = client.link.frames[0] as Message;
    expect(welcome['auth']).toEqual({ key: 'alice' });
    expect(welcome['limits']).not.toHaveProperty('maxConnectionsPerKey');
    expect(client.conn.deadline).toBeUndefined();
  });
});

describe('createSessions: subscribe', () => {
  it('subscribes to blocks of the first chain by default, live at once', async () => {
    const { connect, index, metrics } = gateway();
    const client = connect();
    expect(client.request({ op: 'subscribe', id: 1, channel: 'blocks' })).toEqual({
      type: 'subscribed',
      id: 1,
      sub: 's1',
      channel: 'blocks',
      chainId: CHAIN,
      head: { number: HEAD.number, hash: HEAD.hash },
      cursor: toCursor(CHAIN, HEAD),
    });
    const sub = client.conn.subs.get('s1');
    expect(sub?.filter).toEqual({ channel: 'blocks', full: false, fullInput: false, confirmations: 0 });
    expect([...index.blockSubscribers(CHAIN)]).toEqual([sub]);
    // Without transactions at the head: delivered from the block's header.
    expect(index.confirmationDepths(CHAIN)).toEqual([HEADER_DEPTH, 0]);
    expect(await metricValue(metrics, 'blockcast_index_subscriptions', { channel: 'blocks' })).toBe(1);
  });

  it('takes chainId, full, fullInput and confirmations; a chain without a head answers head null', () => {
    const { connect, index } = gateway();
    const client = connect();
    const reply = client.request({
      op: 'subscribe',
      id: 'b',
      channel: 'blocks',
      chainId: OTHER_CHAIN,
      full: true,
      fullInput: true,
      confirmations: 3,
    });
    expect(reply).toEqual({
      type: 'subscribed',
      id: 'b',
      sub: 's1',
      channel: 'blocks',
      chainId: OTHER_CHAIN,
      head: null,
    });
    expect(client.conn.subs.get('s1')?.filter).toEqual({
      channel: 'blocks',
      full: true,
      fullInput: true,
      confirmations: 3,
    });
    expect(index.confirmationDepths(OTHER_CHAIN)).toEqual([0, 3]);
    expect(index.blockSubscribers(CHAIN).size).toBe(0);
  });

  it('takes finality where the node serves the tags, and refuses it clearly where it does not', () => {
    const { connect, index } = gateway();
    const client = connect();
    const reply = client.request({ op: 'subscribe', id: 'f', channel: 'activity', addresses: [A], finality: 'safe' });
    expect(reply).toMatchObject({ type: 'subscribed', id: 'f', sub: 's1', chainId: CHAIN });
    expect(client.conn.subs.get('s1')?.filter).toMatchObject({ finality: 'safe', confirmations: 0 });
    client.request({ op: 'subscribe', id: 'g', channel: 'blocks', finality: 'finalized' });
    expect(index.confirmationDepths(CHAIN)).toEqual([0, SAFE_DEPTH, FINALIZED_DEPTH]);
    expect(
      client.request({ op: 'subscribe', id: 'h', channel: 'blocks', chainId: OTHER_CHAIN, finality: 'finalized' }),
    ).toEqual({
      type: 'error',
      id: 'h',
      code: 'UNSUPPORTED',
      message: `finality is off on chain ${OTHER_CHAIN}: its node serves no safe and finalized blocks`,
    });
    expect(client.conn.subs.size).toBe(2);
  });

  it('subscribes to activity with every kind by default and indexes its addresses', async () => {
    const { connect, index, metrics } = gateway();
    const client = connect();
    const reply = client.request({
      op: 'subscribe',
      id: 2,
      channel: 'activity',
      addresses: [A, B.toUpperCase().replace('0X', '0x'), A],
    });
    expect(reply).toMatchObject({ type: 'subscribed', id: 2, sub: 's1', channel: 'activity', chainId: CHAIN });
    const sub = client.conn.subs.get('s1');
    if (sub === undefined) throw new Error('no subscription s1');
    expect(sub.filter).toEqual({
      channel: 'activity',
      kinds: new Set(['tx', 'erc20', 'erc721', 'erc1155', 'internal']),
      confirmations: 0,
    });
    expect([...sub.addresses]).toEqual([A, B]);
    expect([...index.watchers(CHAIN, A)]).toEqual([sub]);
    expect([...index.watchers(CHAIN, B)]).toEqual([sub]);
    expect(index.pendingSubscriptions(CHAIN)).toBe(0);
    expect(client.conn.addressCount).toBe(2);
    expect(await metricValue(metrics, 'blockcast_index_watched_addresses')).toBe(2);
    expect(await metricValue(metrics, 'blockcast_index_subscriptions', { channel: 'activity' })).toBe(1);
  });

  it('keeps the kinds, pending and confirmations it was given', () => {
    const { connect, index } = gateway();
    const client = connect();
    client.subscribe({
      channel: 'activity',
      chainId: CHAIN,
      addresses: [A],
      kinds: ['erc20', 'erc721'],
      pending: true,
      confirmations: 2,
    });
    expect(client.conn.subs.get('s1')?.filter).toEqual({
      channel: 'activity',
      kinds: new Set(['erc20', 'erc721']),
      confirmations: 2,
      pending: true,
    });
    expect(index.pendingSubscriptions(CHAIN)).toBe(1);
    expect(index.confirmationDepths(CHAIN)).toEqual([0, 2]);
  });

  it('numbers subscriptions s1, s2, … on each connection', () => {
    const { connect } = gateway();
    const one = connect();
    const two = connect();
    expect(one.subscribe({ channel: 'blocks' })).toBe('s1');
    expect(one.subscribe({ channel: 'activity', addresses: [A] })).toBe('s2');
    expect(two.subscribe({ channel: 'blocks' })).toBe('s1');
  });

  it('answers UNKNOWN_CHAIN for a chain the gateway does not follow, and keeps nothing', async () => {
    const { connect, index, metrics } = gateway();
    const client = connect();
    const reply = client.request({ op: 'subscribe', id: 3, channel: 'blocks', chainId: UNKNOWN_CHAIN });
    expect(reply).toMatchObject({ type: 'error', id: 3, code: 'UNKNOWN_CHAIN' });
    expect(reply['message']).toContain(`${CHAIN}, ${OTHER_CHAIN}`);
    expect(client.conn.subs.size).toBe(0);
    expect(index.size).toBe(0);
    expect(await metricValue(metrics, 'blockcast_transport_errors_total', { code: 'UNKNOWN_CHAIN' })).toBe(1);
  });

  it('answers BAD_REQUEST for more confirmations than maxConfirmations, and takes exactly that many', () => {
    const { connect, index } = gateway();
    const client = connect();
    const over = client.request({
      op: 'subscribe',
      id: 4,
      channel: 'activity',
      addresses: [A],
      confirmations: MAX_CONFIRMATIONS + 1,
    });
    expect(over).toMatchObject({ type: 'error', id: 4, code: 'BAD_REQUEST' });
    expect(over['message']).toContain(String(MAX_CONFIRMATIONS));
    expect(index.size).toBe(0);
    expect(client.conn.addressCount).toBe(0);
    client.subscribe({ channel: 'blocks', confirmations: MAX_CONFIRMATIONS });
    expect(index.confirmationDepths(CHAIN)).toEqual([0, MAX_CONFIRMATIONS]);
  });
});

describe('createSessions: update', () => {
  it('adds and removes addresses, in the index and in the counts', async () => {
    const { connect, index, metrics } = gateway();
    const client = connect();
    const sid = client.subscribe({ channel: 'activity', addresses: [A, B] });
    expect(client.request({ op: 'update', id: 5, sub: sid, add: [C, D], remove: [A] })).toEqual({
      type: 'updated',
      id: 5,
      sub: sid,
      addresses: 3,
    });
    const sub = client.conn.subs.get(sid);
    expect(new Set(sub?.addresses)).toEqual(new Set([B, C, D]));
    expect([...index.watchers(CHAIN, A)]).toEqual([]);
    expect([...index.watchers(CHAIN, D)]).toEqual([sub]);
    expect(client.conn.addressCount).toBe(3);
    expect(await metricValue(metrics, 'blockcast_index_watched_addresses')).toBe(3);
    // Adding what it has, removing what it lacks: nothing changes.
    expect(client.request({ op: 'update', sub: sid, add: [B], remove: [E] })).toEqual({
      type: 'updated',
      sub: sid,
      addresses: 3,
    });
    expect(client.conn.addressCount).toBe(3);
  });

  it('counts an address both removed and added once', () => {
    const { connect } = gateway({ limits: { maxAddresses: 2 } });
    const client = connect();
    const sid = client.subscribe({ channel: 'activity', addresses: [A, B] });
    expect(client.request({ op: 'update', sub: sid, add: [A], remove: [A] })).toMatchObject({
      type: 'updated',
      addresses: 2,
    });
    expect(client.request({ op: 'update', sub: sid, add: [C], remove: [A] })).toMatchObject({
      type: 'updated',
      addresses: 2,
    });
    expect(new Set(client.conn.subs.get(sid)?.addresses)).toEqual(new Set([B, C]));
    expect(client.conn.addressCount).toBe(2);
  });

  it('checks the limit before changing anything: TOO_MANY_ADDRESSES leaves the removals undone', async () => {
    const { connect, index, metrics } = gateway();
    const client = connect();
    const sid = client.subscribe({ channel: 'activity', addresses: [A, B, C, D] });
    // One out, three in: 6 > 5.
    const reply = client.request({ op: 'update', id: 6, sub: sid, add: [E, F, G], remove: [A] });
    expect(reply).toMatchObject({ type: 'error', id: 6, code: 'TOO_MANY_ADDRESSES' });
    expect(reply['message']).toContain(String(LIMITS.maxAddresses));
    expect(new Set(client.conn.subs.get(sid)?.addresses)).toEqual(new Set([A, B, C, D]));
    expect(index.watchers(CHAIN, A)).toHaveLength(1);
    expect(index.watchers(CHAIN, E)).toHaveLength(0);
    expect(client.conn.addressCount).toBe(4);
    expect(await metricValue(metrics, 'blockcast_index_watched_addresses')).toBe(4);
    // One out, two in: exactly 5.
    expect(client.request({ op: 'update', sub: sid, add: [E, F], remove: [A] })).toMatchObject({
      type: 'updated',
      addresses: 5,
    });
  });

  it('answers BAD_REQUEST on a blocks subscription', () => {
    const { connect } = gateway();
    const client = connect();
    const sid = client.subscribe({ channel: 'blocks' });
    const reply = client.request({ op: 'update', id: 7, sub: sid, add: [A] });
    expect(reply).toMatchObject({ type: 'error', id: 7, code: 'BAD_REQUEST' });
    expect(reply['message']).toContain('blocks');
    expect(client.conn.addressCount).toBe(0);
  });

  it('answers TRY_AGAIN with retryAfterMs while the subscription resumes, and works once it is live', () => {
    const { connect, chains } = gateway();
    const client = connect();
    chains.nextStatus = 'queued';
    client.send({ op: 'subscribe', id: 1, channel: 'activity', addresses: [A], from: toCursor(CHAIN, HEAD) });
    expect(client.take()).toEqual([]);
    expect(client.request({ op: 'update', id: 8, sub: 's1', add: [B] })).toMatchObject({
      type: 'error',
      id: 8,
      code: 'TRY_AGAIN',
      retryAfterMs: RETRY_AFTER_MS,
    });
    expect([...(client.conn.subs.get('s1')?.addresses ?? [])]).toEqual([A]);
    expect(client.conn.addressCount).toBe(1);
    chains.finish('s1', true);
    expect(client.take()).toMatchObject([{ type: 'subscribed', id: 1, sub: 's1', recovered: true }]);
    expect(client.request({ op: 'update', id: 9, sub: 's1', add: [B] })).toEqual({
      type: 'updated',
      id: 9,
      sub: 's1',
      addresses: 2,
    });
  });

  it('answers UNKNOWN_SUBSCRIPTION for a sid the connection does not hold', () => {
    const { connect } = gateway();
    const one = connect();
    const two = connect();
    const sid = one.subscribe({ channel: 'activity', addresses: [A] });
    const reply = two.request({ op: 'update', id: 10, sub: sid, add: [B] });
    expect(reply).toMatchObject({ type: 'error', id: 10, code: 'UNKNOWN_SUBSCRIPTION' });
    expect(reply['message']).toContain('"s1"');
  });
});

describe('createSessions: unsubscribe', () => {
  it('ends the subscription: out of the index, released, its addresses given back', async () => {
    const { connect, index, chains, metrics } = gateway();
    const client = connect();
    const blocks = client.subscribe({ channel: 'blocks' });
    const activity = client.subscribe({ channel: 'activity', addresses: [A, B] });
    const sub = client.conn.subs.get(activity);
    expect(client.request({ op: 'unsubscribe', id: 11, sub: activity })).toEqual({
      type: 'unsubscribed',
      id: 11,
      sub: activity,
    });
    expect(client.conn.subs.has(activity)).toBe(false);
    expect(index.size).toBe(1);
    expect(index.watchers(CHAIN, A)).toHaveLength(0);
    expect(chains.released).toEqual([sub]);
    expect(client.conn.addressCount).toBe(0);
    expect(await metricValue(metrics, 'blockcast_index_watched_addresses')).toBe(0);
    expect(await metricValue(metrics, 'blockcast_index_subscriptions', { channel: 'activity' })).toBe(0);
    expect(client.request({ op: 'unsubscribe', sub: blocks })).toEqual({ type: 'unsubscribed', sub: blocks });
    expect(index.size).toBe(0);
    expect(client.request({ op: 'unsubscribe', id: 12, sub: blocks })).toMatchObject({
      type: 'error',
      id: 12,
      code: 'UNKNOWN_SUBSCRIPTION',
    });
  });
});

describe('createSessions: ping', () => {
  it('answers pong with the id and the position of every live subscription', () => {
    const { connect, chains } = gateway();
    const client = connect();
    expect(client.request({ op: 'ping', id: 13 })).toEqual({ type: 'pong', id: 13, cursors: {} });
    const blocks = client.subscribe({ channel: 'blocks' });
    const other = client.subscribe({ channel: 'blocks', chainId: OTHER_CHAIN });
    chains.nextStatus = 'queued';
    client.send({ op: 'subscribe', channel: 'activity', addresses: [A], from: toCursor(CHAIN, HEAD) });
    expect(client.conn.resuming.has('s3')).toBe(true);
    // s2's chain has no position yet; s3 still resumes: both left out.
    expect(client.request({ op: 'ping' })).toEqual({ type: 'pong', cursors: { [blocks]: toCursor(CHAIN, HEAD) } });
    chains.heads.set(OTHER_CHAIN, { number: 7, hash: hash(7) });
    chains.finish('s3', false);
    client.take();
    expect(client.request({ op: 'ping', id: 'x' })).toEqual({
      type: 'pong',
      id: 'x',
      cursors: {
        [blocks]: toCursor(CHAIN, HEAD),
        [other]: toCursor(OTHER_CHAIN, { number: 7, hash: hash(7) }),
        s3: toCursor(CHAIN, HEAD),
      },
    });
  });
});

describe('createSessions: limits', () => {
  it('answers TOO_MANY_SUBSCRIPTIONS past maxSubscriptions, resuming ones included', async () => {
    const { connect, chains, index, metrics } = gateway();
    const client = connect();
    client.subscribe({ channel: 'blocks' });
    client.subscribe({ channel: 'activity', addresses: [A] });
    chains.nextStatus = 'queued';
    client.send({ op: 'subscribe', channel: 'blocks', from: toCursor(CHAIN, HEAD) });
    const reply = client.request({ op: 'subscribe', id: 14, channel: 'blocks' });
    expect(reply).toMatchObject({ type: 'error', id: 14, code: 'TOO_MANY_SUBSCRIPTIONS' });
    expect(reply['message']).toContain(String(LIMITS.maxSubscriptions));
    expect(index.size).toBe(2);
    expect(client.conn.subs.size).toBe(3);
    chains.nextStatus = 'done';
    client.request({ op: 'unsubscribe', sub: 's1' });
    expect(client.subscribe({ channel: 'blocks' })).toBe('s4');
    // No grant: nothing is counted against a key.
    expect(await metricValue(metrics, 'blockcast_auth_quota_hits_total')).toBe(0);
  });

  it('answers TOO_MANY_ADDRESSES past maxAddresses over all subscriptions of the connection', () => {
    const { connect, index } = gateway();
    const client = connect();
    client.subscribe({ channel: 'activity', addresses: [A, B, C] });
    const reply = client.request({ op: 'subscribe', id: 15, channel: 'activity', addresses: [D, E, F] });
    expect(reply).toMatchObject({ type: 'error', id: 15, code: 'TOO_MANY_ADDRESSES' });
    expect(index.size).toBe(1);
    expect(client.conn.subs.size).toBe(1);
    expect(client.conn.addressCount).toBe(3);
    // Another connection has room of its own.
    expect(connect().subscribe({ channel: 'activity', addresses: [D, E, F] })).toBe('s1');
    expect(client.subscribe({ channel: 'activity', addresses: [D, E] })).toBe('s3');
  });

  it("answers OVERLOADED past the gateway's maxWatchedAddresses, in subscribe and update, and changes nothing", async () => {
    const { connect, index, metrics } = gateway();
    const one = connect();
    const two = connect();
    one.subscribe({ channel: 'activity', addresses: [A, B, C, D, E] });
    const refused = two.request({ op: 'subscribe', id: 16, channel: 'activity', addresses: [A, B, C, D] });
    expect(refused).toMatchObject({ type: 'error', id: 16, code: 'OVERLOADED' });
    expect(refused['message']).toContain(String(CAPACITY.maxWatchedAddresses));
    expect(two.conn.subs.size).toBe(0);
    expect(two.conn.addressCount).toBe(0);
    const sid = two.subscribe({ channel: 'activity', addresses: [A, B, C] });
    expect(index.watchedAddresses).toBe(8);
    expect(two.request({ op: 'update', id: 17, sub: sid, add: [D] })).toMatchObject({
      type: 'error',
      id: 17,
      code: 'OVERLOADED',
    });
    expect(two.conn.subs.get(sid)?.addresses.size).toBe(3);
    // Swapping one for another needs no room; removals free some.
    expect(two.request({ op: 'update', sub: sid, add: [D], remove: [A] })).toMatchObject({
      type: 'updated',
      addresses: 3,
    });
    expect(two.request({ op: 'update', sub: sid, remove: [B] })).toMatchObject({ type: 'updated', addresses: 2 });
    expect(two.request({ op: 'update', sub: sid, add: [E] })).toMatchObject({ type: 'updated', addresses: 3 });
    expect(await metricValue(metrics, 'blockcast_transport_errors_total', { code: 'OVERLOADED' })).toBe(2);
    // A connection that closes gives its addresses back.
    one.close();
    expect(two.request({ op: 'subscribe', channel: 'activity', addresses: [A, B] })).toMatchObject({
      type: 'subscribed',
    });
  });

  it('shares the capacity with reserveAddresses and releaseAddresses (the /rpc sessions)', () => {
    const { connect, sessions } = gateway();
    const rpc = connect();
    const v1 = connect();
    expect(sessions.reserveAddresses(rpc.conn, 6)).toBe(true);
    expect(rpc.conn.addressCount).toBe(6);
    expect(sessions.reserveAddresses(rpc.conn, 3)).toBe(false);
    expect(rpc.conn.addressCount).toBe(6);
    expect(v1.request({ op: 'subscribe', channel: 'activity', addresses: [A, B, C] })).toMatchObject({
      code: 'OVERLOADED',
    });
    expect(v1.subscribe({ channel: 'activity', addresses: [A, B] })).toBe('s2');
    expect(sessions.reserveAddresses(rpc.conn, 1)).toBe(false);
    sessions.releaseAddresses(rpc.conn, 6);
    expect(rpc.conn.addressCount).toBe(0);
    expect(sessions.reserveAddresses(rpc.conn, 6)).toBe(true);
    expect(sessions.reserveAddresses(rpc.conn, 1)).toBe(false);
    sessions.releaseAddresses(rpc.conn, 6);
    v1.close();
    expect(sessions.reserveAddresses(rpc.conn, CAPACITY.maxWatchedAddresses)).toBe(true);
  });
});

describe('createSessions: rate limit', () => {
  it('answers RATE_LIMITED past the burst, then closes with 4029 after more than maxRequestsPerSecond in a row', async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const rate = 5;
    const { connect, metrics } = gateway({ limits: { maxRequestsPerSecond: rate } });
    const client = connect();
    for (let i = 0; i < rate; i++) expect(client.request({ op: 'ping', id: i })).toMatchObject({ type: 'pong', id: i });
    for (let i = 0; i < rate; i++) {
      const reply = client.request({ op: 'ping', id: i });
      expect(reply).toMatchObject({ type: 'error', code: 'RATE_LIMITED' });
      expect(reply).not.toHaveProperty('id');
      expect(reply['message']).toContain(String(rate));
    }
    expect(client.link.ended).toBeUndefined();
    client.send({ op: 'ping' });
    expect(client.take()).toEqual([]);
    expect(client.link.ended).toEqual({ code: 4029, reason: 'too many requests' });
    expect(client.conn.closed).toBe(true);
    expect(await metricValue(metrics, 'blockcast_transport_server_closes_total', { reason: 'rate_limited' })).toBe(1);
    expect(await metricValue(metrics, 'blockcast_transport_errors_total', { code: 'RATE_LIMITED' })).toBe(rate);
  });

  it('refills at maxRequestsPerSecond, and a request served resets the count of refusals in a row', () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const rate = 4;
    const { connect } = gateway({ limits: { maxRequestsPerSecond: rate } });
    const client = connect();
    for (let i = 0; i < rate; i++) client.send({ op: 'ping' });
    for (let i = 0; i < rate; i++) expect(client.request({ op: 'ping' })).toMatchObject({ code: 'RATE_LIMITED' });
    // A quarter of a second brings one request back (and no more than the burst after a long wait).
    vi.advanceTimersByTime(250);
    expect(client.request({ op: 'ping' })).toMatchObject({ type: 'pong' });
    for (let i = 0; i < rate; i++) expect(client.request({ op: 'ping' })).toMatchObject({ code: 'RATE_LIMITED' });
    expect(client.link.ended).toBeUndefined();
    vi.advanceTimersByTime(60_000);
    client.take();
    for (let i = 0; i < rate + 1; i++) client.send({ op: 'ping' });
    expect(client.take().map((m) => m['type'])).toEqual(['pong', 'pong', 'pong', 'pong', 'error']);
    expect(client.link.ended).toBeUndefined();
  });
});

describe('createSessions: malformed frames', () => {
  it(`answers each with an error, and closes with 1008 at the ${MAX_MALFORMED_IN_A_ROW + 1}th in a row`, async () => {
    const { connect, metrics } = gateway();
    const client = connect();
    const malformed: (() => void)[] = [
      () => client.sendRaw(new Uint8Array([0xc1]), true),
      () => client.sendRaw(new TextEncoder().encode('not json'), false),
      () => client.send({ op: 'subscribe', id: 'bad', channel: 'activity', addresses: ['0x12'] }),
      () => client.send({ op: 'subscribe', channel: 'mempool' }),
      () => client.send([1, 2, 3]),
      () => client.send({ op: 'nope' }),
    ];
    for (let i = 0; i < MAX_MALFORMED_IN_A_ROW; i++) (malformed[i % malformed.length] as () => void)();
    const errors = client.take();
    expect(errors).toHaveLength(MAX_MALFORMED_IN_A_ROW);
    expect(errors.slice(0, 6)).toMatchObject([
      { type: 'error', code: 'BAD_REQUEST' },
      { type: 'error', code: 'BAD_REQUEST' },
      { type: 'error', id: 'bad', code: 'BAD_ADDRESS' },
      { type: 'error', code: 'UNSUPPORTED' },
      { type: 'error', code: 'BAD_REQUEST', message: 'message must be a map with an op' },
      { type: 'error', code: 'BAD_REQUEST' },
    ]);
    expect(client.link.ended).toBeUndefined();
    client.sendRaw(new Uint8Array([0xc1]), true);
    expect(client.take()).toEqual([]);
    expect(client.link.ended).toEqual({ code: 1008, reason: 'too many malformed messages' });
    expect(await metricValue(metrics, 'blockcast_transport_server_closes_total', { reason: 'malformed' })).toBe(1);
  });

  it('starts counting again after a message that parses, even one refused later', () => {
    const { connect } = gateway();
    const client = connect();
    const garbage = (): void => client.sendRaw(new Uint8Array([0xc1]), true);
    for (let i = 0; i < MAX_MALFORMED_IN_A_ROW; i++) garbage();
    expect(client.request({ op: 'ping' })).toMatchObject({ type: 'pong' });
    for (let i = 0; i < MAX_MALFORMED_IN_A_ROW; i++) garbage();
    expect(client.request({ op: 'unsubscribe', sub: 's9' })).toMatchObject({ code: 'UNKNOWN_SUBSCRIPTION' });
    for (let i = 0; i < MAX_MALFORMED_IN_A_ROW; i++) garbage();
    expect(client.link.ended).toBeUndefined();
    garbage();
    expect(client.link.ended?.code).toBe(1008);
  });
});

describe('createSessions: slow link', () => {
  it('closes with 4008 when a send is dropped, and sends nothing after', async () => {
    const { connect, metrics, index } = gateway();
    const client = connect();
    client.link.status = 0; // buffered: still fine
    expect(client.request({ op: 'ping' })).toMatchObject({ type: 'pong' });
    expect(client.link.ended).toBeUndefined();
    client.link.status = 2;
    client.send({ op: 'subscribe', channel: 'blocks' });
    expect(client.link.ended).toEqual({ code: 4008, reason: 'slow consumer' });
    expect(client.conn.closed).toBe(true);
    expect(await metricValue(metrics, 'blockcast_transport_server_closes_total', { reason: 'slow_consumer' })).toBe(1);
    client.link.status = 1;
    client.sessions.end(client.conn, 4029, 'again', 'rate_limited');
    expect(client.link.ended?.code).toBe(4008);
    client.send({ op: 'ping' });
    expect(client.take()).toEqual([]);
    // The close handler ran: the subscription made before the drop is gone.
    expect(client.conn.subs.size).toBe(0);
    expect(index.size).toBe(0);
  });
});

describe('createSessions: resume', () => {
  const FROM = toCursor(CHAIN, { number: 90, hash: hash(90) });

  it("answers subscribed with recovered once a 'done' resume has replayed, live at once", async () => {
    const { connect, chains, index, metrics } = gateway();
    const client = connect();
    const reply = client.request({ op: 'subscribe', id: 20, channel: 'activity', addresses: [A], from: FROM });
    expect(reply).toEqual({
      type: 'subscribed',
      id: 20,
      sub: 's1',
      channel: 'activity',
      chainId: CHAIN,
      head: { number: HEAD.number, hash: HEAD.hash },
      recovered: true,
      cursor: toCursor(CHAIN, HEAD),
    });
    const sub = client.conn.subs.get('s1');
    expect(chains.resumes).toEqual([
      { sub, cursor: { chainId: CHAIN, number: 90, hash: hash(90) }, maxBytes: LIMITS.maxBackpressureBytes },
    ]);
    expect(index.has(sub as Subscription<Connection>)).toBe(true);
    expect([...index.watchers(CHAIN, A)]).toEqual([sub]);
    expect(client.conn.resuming.size).toBe(0);
    expect(await metricValue(metrics, 'blockcast_transport_resumes_total', { recovered: 'true' })).toBe(1);
  });

  it('answers recovered:false when nothing could be replayed (an unreadable cursor reaches the directory as none)', async () => {
    const { connect, chains, metrics } = gateway();
    const client = connect();
    chains.recovered = false;
    expect(client.request({ op: 'subscribe', channel: 'blocks', from: 'not-a-cursor' })).toMatchObject({
      type: 'subscribed',
      recovered: false,
    });
    expect(chains.resumes[0]?.cursor).toBeUndefined();
    expect(await metricValue(metrics, 'blockcast_transport_resumes_total', { recovered: 'false' })).toBe(1);
  });

  it("holds a 'queued' resume out of the index and of pong until it is done", () => {
    const { connect, chains, index } = gateway();
    const client = connect();
    chains.nextStatus = 'queued';
    client.send({ op: 'subscribe', id: 21, channel: 'activity', addresses: [A, B], from: FROM });
    expect(client.take()).toEqual([]);
    const sub = client.conn.subs.get('s1') as Subscription<Connection>;
    expect(index.has(sub)).toBe(false);
    expect(index.watchers(CHAIN, A)).toHaveLength(0);
    // Its addresses are counted from the start: a resume cannot slip past the limits.
    expect(client.conn.addressCount).toBe(2);
    expect(client.request({ op: 'ping' })).toEqual({ type: 'pong', cursors: {} });
    chains.finish('s1', true);
    expect(client.take()).toMatchObject([{ type: 'subscribed', id: 21, sub: 's1', recovered: true }]);
    expect(index.has(sub)).toBe(true);
    expect([...index.watchers(CHAIN, B)]).toEqual([sub]);
    expect(client.conn.addressCount).toBe(2);
    expect(client.request({ op: 'ping' })).toEqual({ type: 'pong', cursors: { s1: toCursor(CHAIN, HEAD) } });
  });

  it('cancels a queued resume that is unsubscribed', () => {
    const { connect, chains, index } = gateway();
    const client = connect();
    chains.nextStatus = 'queued';
    client.send({ op: 'subscribe', channel: 'activity', addresses: [A], from: FROM });
    const sub = client.conn.subs.get('s1');
    expect(client.request({ op: 'unsubscribe', id: 22, sub: 's1' })).toEqual({
      type: 'unsubscribed',
      id: 22,
      sub: 's1',
    });
    expect(chains.cancelled).toEqual([sub]);
    expect(chains.released).toEqual([sub]);
    expect(client.conn.addressCount).toBe(0);
    expect(client.conn.resuming.size).toBe(0);
    expect(index.size).toBe(0);
  });

  it('forgets what a resume kept when its own catch-up closed the connection', () => {
    const { connect, chains, index } = gateway();
    const client = connect();
    // The catch-up finds the send buffer full: the transport ends the connection with 4008, and
    // uWS calls the close handler at once, inside the resume, before it keeps what it sent.
    chains.onCatchUp = () => client.sessions.end(client.conn, 4008, 'slow consumer', 'slow_consumer');
    client.send({ op: 'subscribe', id: 24, channel: 'blocks', from: FROM });
    expect(client.link.ended?.code).toBe(4008);
    expect(client.take()).toEqual([]);
    expect(client.conn.subs.size).toBe(0);
    expect(index.size).toBe(0);
    expect(chains.kept.size).toBe(0);
  });

  it("answers a 'full' resume TRY_AGAIN with retryAfterMs and keeps nothing", async () => {
    const { connect, chains, index, metrics } = gateway();
    const client = connect();
    chains.nextStatus = 'full';
    const reply = client.request({
      op: 'subscribe',
      id: 23,
      channel: 'activity',
      addresses: [A, B, C, D, E],
      from: FROM,
    });
    expect(reply).toMatchObject({ type: 'error', id: 23, code: 'TRY_AGAIN', retryAfterMs: RETRY_AFTER_MS });
    expect(client.conn.subs.size).toBe(0);
    expect(client.conn.resuming.size).toBe(0);
    expect(client.conn.addressCount).toBe(0);
    expect(index.size).toBe(0);
    expect(await metricValue(metrics, 'blockcast_transport_resumes_total')).toBe(0);
    // Neither the connection's room nor the gateway's was kept.
    chains.nextStatus = 'done';
    expect(
      client.request({ op: 'subscribe', channel: 'activity', addresses: [A, B, C, D, E], from: FROM }),
    ).toMatchObject({
      type: 'subscribed',
      recovered: true,
    });
    expect(connect().subscribe({ channel: 'activity', addresses: [A, B, C] })).toBe('s1');
  });
});

describe('createSessions: key and token restrictions', () => {
  it('answers FORBIDDEN for a chain or channel the key does not allow, and counts the hits', async () => {
    const { connect, index, metrics } = gateway();
    const client = connect({ grant: keyGrant('alice', { chains: new Set([CHAIN]), channels: new Set(['activity']) }) });
    const chain = client.request({
      op: 'subscribe',
      id: 30,
      channel: 'activity',
      chainId: OTHER_CHAIN,
      addresses: [A],
    });
    expect(chain).toMatchObject({ type: 'error', id: 30, code: 'FORBIDDEN' });
    expect(chain['message']).toContain(String(OTHER_CHAIN));
    const channel = client.request({ op: 'subscribe', id: 31, channel: 'blocks' });
    expect(channel).toMatchObject({ type: 'error', id: 31, code: 'FORBIDDEN' });
    expect(channel['message']).toContain('blocks');
    expect(index.size).toBe(0);
    // Refused subscriptions take no sid.
    expect(client.subscribe({ channel: 'activity', addresses: [A] })).toBe('s1');
    expect(await quotaHits(metrics, 'alice', 'allowed')).toBe(2);
    expect(await metricValue(metrics, 'blockcast_transport_errors_total', { code: 'FORBIDDEN' })).toBe(2);
  });

  it('answers FORBIDDEN naming up to three addresses outside the grant, in subscribe and update, and changes nothing', async () => {
    const { connect, index, metrics } = gateway();
    const client = connect({ grant: keyGrant('bob', { addresses: new Set([A, B]) }) });
    const subscribe = client.request({ op: 'subscribe', id: 32, channel: 'activity', addresses: [A, C] });
    expect(subscribe).toMatchObject({ type: 'error', id: 32, code: 'FORBIDDEN' });
    expect(subscribe['message']).toBe(`this key may not watch ${C}`);
    expect(client.conn.subs.size).toBe(0);
    expect(client.conn.addressCount).toBe(0);
    const sid = client.subscribe({ channel: 'activity', addresses: [A] });
    const update = client.request({ op: 'update', id: 33, sub: sid, add: [B, C, D, E, F], remove: [A] });
    expect(update).toMatchObject({ type: 'error', id: 33, code: 'FORBIDDEN' });
    expect(update['message']).toBe(`this key may not watch ${C}, ${D}, ${E} and 1 more`);
    expect([...(client.conn.subs.get(sid)?.addresses ?? [])]).toEqual([A]);
    expect(index.watchedAddresses).toBe(1);
    // Removing what it may not add is fine; adding what it may is too.
    expect(client.request({ op: 'update', sub: sid, add: [B], remove: [C] })).toMatchObject({
      type: 'updated',
      addresses: 2,
    });
    expect(await quotaHits(metrics, 'bob', 'allowed')).toBe(2);
  });

  it("applies a key's own limits instead of the gateway's, and counts each quota hit", async () => {
    vi.useFakeTimers({ toFake: ['performance'] });
    const { connect, metrics } = gateway({
      limits: { maxSubscriptions: 50, maxAddresses: 50, maxRequestsPerSecond: 5 },
    });
    const keyLimits: KeyLimits = { maxConnections: 2, maxSubscriptions: 2, maxAddresses: 1, maxRequestsPerSecond: 8 };
    const client = connect({ grant: keyGrant('carol', { limits: keyLimits }) });
    expect(client.link.frames[0]?.['limits']).toMatchObject({
      maxSubscriptions: 2,
      maxAddresses: 1,
      maxRequestsPerSecond: 8,
      maxConnectionsPerKey: 2,
    });
    expect(client.request({ op: 'subscribe', id: 1, channel: 'activity', addresses: [A, B] })).toMatchObject({
      code: 'TOO_MANY_ADDRESSES',
      message: 'at most 1 addresses per connection',
    });
    const sid = client.subscribe({ channel: 'activity', addresses: [A] });
    expect(client.request({ op: 'update', sub: sid, add: [B] })).toMatchObject({ code: 'TOO_MANY_ADDRESSES' });
    client.subscribe({ channel: 'blocks' });
    expect(client.request({ op: 'subscribe', channel: 'blocks' })).toMatchObject({
      code: 'TOO_MANY_SUBSCRIPTIONS',
      message: 'at most 2 subscriptions per connection',
    });
    // Five requests so far; the key's burst is 8, the gateway's would have been 5.
    for (let i = 0; i < 3; i++) expect(client.request({ op: 'ping' })).toMatchObject({ type: 'pong' });
    expect(client.request({ op: 'ping' })).toMatchObject({
      code: 'RATE_LIMITED',
      message: 'at most 8 messages per second',
    });
    expect(await quotaHits(metrics, 'carol', 'addresses')).toBe(2);
    expect(await quotaHits(metrics, 'carol', 'subscriptions')).toBe(1);
    expect(await quotaHits(metrics, 'carol', 'requests_per_second')).toBe(1);
    expect(await quotaHits(metrics, 'carol', 'allowed')).toBe(0);
  });

  it('counts quotaHit only for a connection with a grant', async () => {
    const { connect, sessions, metrics } = gateway();
    sessions.quotaHit(connect().conn, 'allowed');
    expect(await metricValue(metrics, 'blockcast_auth_quota_hits_total')).toBe(0);
    sessions.quotaHit(connect({ grant: keyGrant('dave') }).conn, 'allowed');
    expect(await quotaHits(metrics, 'dave', 'allowed')).toBe(1);
  });
});

describe('createSessions: token refresh (op auth)', () => {
  it('answers BAD_REQUEST on a connection without a grant', async () => {
    const { connect, settle } = gateway({ auth: tokenAuth() });
    const client = connect();
    const token = await sign({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 });
    expect(client.request({ op: 'auth', id: 40, token })).toMatchObject({ type: 'error', id: 40, code: 'BAD_REQUEST' });
    await settle();
    expect(client.take()).toEqual([]);
  });

  it('answers BAD_REQUEST on a connection opened with a key, and for a token that is not a JWT', async () => {
    const auth = tokenAuth();
    const { connect, settle } = gateway({ auth });
    const keyed = connect({ grant: keyGrant('alice') });
    keyed.send({ op: 'auth', id: 41, token: await sign({ sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 }) });
    await settle();
    expect(keyed.take()).toMatchObject([{ type: 'error', id: 41, code: 'BAD_REQUEST' }]);
    const grant = await tokenGrant(auth, { sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 });
    const tokened = connect({ grant });
    tokened.send({ op: 'auth', id: 42, token: 'not-a-jwt' });
    await settle();
    expect(tokened.take()).toMatchObject([{ type: 'error', id: 42, code: 'BAD_REQUEST' }]);
    expect(tokened.conn.grant).toBe(grant);
    tokened.close();
  });

  it('answers authed for a newer token of the same subject and moves the deadline', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'], now: T0 });
    const auth = tokenAuth();
    const { connect, settle, metrics } = gateway({ auth });
    const grant = await tokenGrant(auth, { sub: 'alice', exp: T0_SEC + 60, addresses: [A, B] });
    const client = connect({ grant });
    const sid = client.subscribe({ channel: 'activity', addresses: [A] });
    vi.advanceTimersByTime(30_000);
    client.send({ op: 'auth', id: 43, token: await sign({ sub: 'alice', exp: T0_SEC + 600, addresses: [A, C] }) });
    expect(client.conn.refreshing).toBe(true);
    await settle();
    expect(client.take()).toEqual([
      { type: 'authed', id: 43, key: 'token', subject: 'alice', expiresAt: T0_SEC + 600, addresses: 2 },
    ]);
    expect(client.conn.refreshing).toBe(false);
    expect(client.conn.grant?.expiresAtMs).toBe((T0_SEC + 600) * 1000);
    // The new token's restrictions apply: C is allowed now, B no longer.
    expect(client.request({ op: 'update', sub: sid, add: [C] })).toMatchObject({ type: 'updated', addresses: 2 });
    expect(client.request({ op: 'update', sub: sid, add: [B] })).toMatchObject({ code: 'FORBIDDEN' });
    // The old deadline passes without a close; the new one closes.
    vi.advanceTimersByTime(40_000);
    expect(client.link.ended).toBeUndefined();
    vi.advanceTimersByTime(600_000 - 70_000 - 1);
    expect(client.link.ended).toBeUndefined();
    vi.advanceTimersByTime(1);
    expect(client.link.ended).toEqual({ code: 4401, reason: 'token expired' });
    expect(await metricValue(metrics, 'blockcast_auth_token_expiries_total')).toBe(1);
  });

  it('answers FORBIDDEN for a token of another subject, and UNAUTHORIZED for one not valid; nothing changes', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'], now: T0 });
    const auth = tokenAuth();
    const { connect, settle } = gateway({ auth });
    const grant = await tokenGrant(auth, { sub: 'alice', exp: T0_SEC + 60 });
    const client = connect({ grant });
    client.send({ op: 'auth', id: 44, token: await sign({ sub: 'mallory', exp: T0_SEC + 600 }) });
    await settle();
    expect(client.take()).toMatchObject([{ type: 'error', id: 44, code: 'FORBIDDEN' }]);
    client.send({ op: 'auth', id: 45, token: await sign({ sub: 'alice', exp: T0_SEC + 600 }, OTHER_SECRET) });
    await settle();
    expect(client.take()).toMatchObject([{ type: 'error', id: 45, code: 'UNAUTHORIZED' }]);
    client.send({ op: 'auth', id: 46, token: await sign({ sub: 'alice', exp: T0_SEC - 60 }) });
    await settle();
    expect(client.take()).toMatchObject([
      { type: 'error', id: 46, code: 'UNAUTHORIZED', message: 'the token has expired' },
    ]);
    expect(client.conn.grant).toBe(grant);
    vi.advanceTimersByTime(60_000);
    expect(client.link.ended?.code).toBe(4401);
  });

  it('answers FORBIDDEN for a token that does not allow an address, chain or channel held, and changes nothing', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'], now: T0 });
    const auth = tokenAuth();
    const { connect, settle } = gateway({ auth });
    const grant = await tokenGrant(auth, { sub: 'alice', exp: T0_SEC + 60 });
    const client = connect({ grant });
    const sid = client.subscribe({ channel: 'activity', addresses: [A, B] });
    const narrower = [{ addresses: [A] }, { chains: [OTHER_CHAIN] }, { channels: ['blocks'] }];
    for (const [i, claims] of narrower.entries()) {
      client.send({ op: 'auth', id: 50 + i, token: await sign({ sub: 'alice', exp: T0_SEC + 600, ...claims }) });
      await settle();
      const [reply] = client.take();
      expect(reply).toMatchObject({ type: 'error', id: 50 + i, code: 'FORBIDDEN' });
      expect(reply?.['message']).toContain(sid);
    }
    expect(client.conn.grant).toBe(grant);
    // After unsubscribing, the narrower token is taken.
    client.request({ op: 'unsubscribe', sub: sid });
    client.send({ op: 'auth', id: 53, token: await sign({ sub: 'alice', exp: T0_SEC + 600, addresses: [A] }) });
    await settle();
    expect(client.take()).toMatchObject([{ type: 'authed', id: 53, addresses: 1 }]);
    vi.advanceTimersByTime(60_000);
    expect(client.link.ended).toBeUndefined();
  });

  it('answers TRY_AGAIN to a refresh while another is being checked', async () => {
    const auth = tokenAuth();
    const { connect, settle } = gateway({ auth });
    const exp = Math.floor(Date.now() / 1000) + 600;
    const client = connect({ grant: await tokenGrant(auth, { sub: 'alice', exp }) });
    const token = await sign({ sub: 'alice', exp: exp + 60 });
    client.send({ op: 'auth', id: 60, token });
    expect(client.request({ op: 'auth', id: 61, token })).toMatchObject({
      type: 'error',
      id: 61,
      code: 'TRY_AGAIN',
      retryAfterMs: 1000,
    });
    await settle();
    expect(client.take()).toMatchObject([{ type: 'authed', id: 60, expiresAt: exp + 60 }]);
    client.close();
  });

  it('sends nothing and keeps the grant when the connection closed while its refresh was checked', async () => {
    const auth = tokenAuth();
    const { connect, settle } = gateway({ auth });
    const exp = Math.floor(Date.now() / 1000) + 600;
    const grant = await tokenGrant(auth, { sub: 'alice', exp });
    const client = connect({ grant });
    client.send({ op: 'auth', token: await sign({ sub: 'alice', exp: exp + 60 }) });
    client.close();
    await settle();
    expect(client.take()).toEqual([]);
    expect(client.conn.grant).toBe(grant);
    expect(client.conn.deadline).toBeUndefined();
  });
});

describe('createSessions: token deadline', () => {
  it("closes with 4401 when the token's time has passed", async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'], now: T0 });
    const auth = tokenAuth();
    const { connect, sessions, metrics } = gateway({ auth });
    const client = connect({ grant: await tokenGrant(auth, { sub: 'alice', exp: T0_SEC + 60 }) });
    expect(client.conn.deadline).toBeDefined();
    vi.advanceTimersByTime(59_999);
    expect(client.link.ended).toBeUndefined();
    // armDeadline re-checks the clock: early, it only re-arms.
    sessions.armDeadline(client.conn);
    expect(client.link.ended).toBeUndefined();
    vi.setSystemTime(T0 + 61_000);
    sessions.armDeadline(client.conn);
    expect(client.link.ended).toEqual({ code: 4401, reason: 'token expired' });
    expect(await metricValue(metrics, 'blockcast_auth_token_expiries_total')).toBe(1);
    expect(await metricValue(metrics, 'blockcast_transport_server_closes_total', { reason: 'token_expired' })).toBe(1);
  });

  it('re-arms a deadline further away than a timer can wait (2^31 - 1 ms), and closes at it', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'], now: T0 });
    const auth = tokenAuth();
    const { connect } = gateway({ auth });
    const lifetimeMs = 40 * 86_400_000;
    const client = connect({ grant: await tokenGrant(auth, { sub: 'alice', exp: T0_SEC + lifetimeMs / 1000 }) });
    vi.advanceTimersByTime(2_147_483_647);
    expect(client.link.ended).toBeUndefined();
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(lifetimeMs - 2_147_483_647 - 1);
    expect(client.link.ended).toBeUndefined();
    vi.advanceTimersByTime(1);
    expect(client.link.ended?.code).toBe(4401);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('closes at open a connection whose token expired within the clock tolerance', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'], now: T0 });
    const auth = tokenAuth();
    const { connect } = gateway({ auth });
    const client = connect({ grant: await tokenGrant(auth, { sub: 'alice', exp: T0_SEC - 2 }) });
    expect(client.link.frames).toMatchObject([{ type: 'welcome' }]);
    expect(client.link.ended).toEqual({ code: 4401, reason: 'token expired' });
    expect(client.conn.deadline).toBeUndefined();
  });

  it('stops the deadline when the connection closes', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout'], now: T0 });
    const auth = tokenAuth();
    const { connect, metrics } = gateway({ auth });
    const client = connect({ grant: await tokenGrant(auth, { sub: 'alice', exp: T0_SEC + 60 }) });
    client.close();
    expect(client.conn.deadline).toBeUndefined();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(120_000);
    expect(client.link.ended).toBeUndefined();
    expect(await metricValue(metrics, 'blockcast_auth_token_expiries_total')).toBe(0);
  });
});

describe('createSessions: closed', () => {
  it('removes every subscription from the index and gives back every address', async () => {
    const { connect, chains, index, metrics, sessions } = gateway();
    const client = connect();
    client.subscribe({ channel: 'blocks' });
    client.subscribe({ channel: 'activity', addresses: [A, B, C] });
    chains.nextStatus = 'queued';
    client.send({ op: 'subscribe', channel: 'activity', addresses: [D, E], from: toCursor(CHAIN, HEAD) });
    const subs = [...client.conn.subs.values()];
    expect(subs).toHaveLength(3);
    expect(index.size).toBe(2);
    client.close();
    expect(client.conn.subs.size).toBe(0);
    expect(client.conn.resuming.size).toBe(0);
    expect(client.conn.addressCount).toBe(0);
    expect(index.size).toBe(0);
    expect(index.watchedAddresses).toBe(0);
    expect(chains.released).toEqual(subs);
    expect(chains.cancelled).toEqual([subs[2]]);
    expect(chains.kept.size).toBe(0);
    expect(client.take()).toEqual([]);
    expect(await metricValue(metrics, 'blockcast_index_watched_addresses')).toBe(0);
    expect(await metricValue(metrics, 'blockcast_index_subscriptions', { channel: 'blocks' })).toBe(0);
    expect(await metricValue(metrics, 'blockcast_index_subscriptions', { channel: 'activity' })).toBe(0);
    // The gateway's count is back to 0: all of its capacity is free.
    const other = connect();
    expect(sessions.reserveAddresses(other.conn, CAPACITY.maxWatchedAddresses)).toBe(true);
  });
});
