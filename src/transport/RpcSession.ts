import { randomBytes } from 'node:crypto';
import { toAddress } from '../domain/address.ts';
import { MAX_MALFORMED_IN_A_ROW } from '../domain/errors.ts';
import type { ChainBlock, Hex } from '../domain/types.ts';
import type { Grant } from './createAuth.ts';
import {
  RpcHub as Hub,
  type LogFilter,
  type RpcFrameBytes,
  type RpcHub,
  type RpcPeer,
  type RpcSubscription,
} from './RpcHub.ts';
import {
  answerText,
  notificationText,
  type RpcCall,
  RpcErrorCode,
  type RpcId,
  type RpcOutcome,
  readRpcFrame,
  rpcError,
  toQuantity,
} from './rpcProtocol.ts';

/** One chain as a `/rpc` connection sees it. */
export interface RpcChain {
  readonly chainId: number;
  readonly hub: RpcHub;
  /** The newest canonical block. */
  readonly head: () => ChainBlock | undefined;
  /** The canonical block of a number, within the history window. */
  readonly at: (number: number) => ChainBlock | undefined;
  /** A canonical block by hash, within the history window. */
  readonly byHash: (hash: Hex) => ChainBlock | undefined;
  /** Sends a request to the chain's node; its result, or its error as the node gave it. */
  readonly forward: (method: string, params: readonly unknown[]) => Promise<RpcOutcome>;
}

/** The limits of one `/rpc` connection. */
export interface RpcSessionLimits {
  readonly maxSubscriptions: number;
  /** Addresses of `logs` filters, over all the connection's subscriptions. */
  readonly maxAddresses: number;
  /** Calls per second (each call of a batch counts). */
  readonly maxRequestsPerSecond: number;
  /** Calls in one batch. */
  readonly maxBatch: number;
  /** Forwarded calls waiting for the node at once. */
  readonly maxForwardsInFlight: number;
  /** Logs sent at once by a `fromBlock` backfill. */
  readonly maxBackfillLogs: number;
}

/** What a session needs from its connection and the gateway. */
export interface RpcSessionDeps {
  readonly chain: RpcChain;
  readonly limits: RpcSessionLimits;
  /** Methods sent on to the node. */
  readonly forwardable: ReadonlySet<string>;
  /** What the connection's key or token allows (addresses, channels). */
  readonly grant?: Grant;
  /** Writes one frame. */
  readonly send: (text: string) => void;
  /** Writes frames together (one block's notifications). */
  readonly deliver: (frames: readonly RpcFrameBytes[]) => void;
  /** Closes the connection with a code of PROTOCOL.md. */
  readonly close: (code: number, reason: string, metric: 'rate_limited' | 'malformed') => void;
  /** Room for `more` watched addresses over all connections (the gateway's capacity); counts them when there is. */
  readonly reserveAddresses: (more: number) => boolean;
  /** Gives back watched addresses. */
  readonly releaseAddresses: (count: number) => void;
  /** Every error answer, by its code (metrics). */
  readonly onError?: (code: number) => void;
}

/** Calls answered by the gateway itself, whatever the forwarding list says. */
const OWN_METHODS = new Set(['eth_chainId', 'net_version', 'eth_blockNumber', 'eth_subscribe', 'eth_unsubscribe']);
/**
 * Subscription ids: 16 bytes as geth's, numbered per connection from one random base of the
 * process, so that the k-th subscription of every connection has the same id. An id needs to be
 * unique only on its connection; shared ones let a notification be encoded once for every
 * connection whose subscription has that id, not once per connection.
 */
const ID_BASE = BigInt(`0x${randomBytes(16).toString('hex')}`) & ~((1n << 64n) - 1n);
const ids: string[] = [];

/** The id of a connection's `k`-th subscription. */
function subscriptionId(k: number): string {
  let id = ids[k];
  if (id === undefined) {
    id = `0x${(ID_BASE + BigInt(k)).toString(16).padStart(32, '0')}`;
    if (k < 1024) ids[k] = id;
  }
  return id;
}

/** Alternatives at most in one topic position. */
const MAX_TOPIC_ALTERNATIVES = 16;
const HASH = /^0x[0-9a-fA-F]{64}$/;
const QUANTITY = /^0x(0|[1-9a-fA-F][0-9a-fA-F]{0,15})$/;

type Result = RpcOutcome | Promise<RpcOutcome>;

const fail = (code: number, message: string): RpcOutcome => ({ error: rpcError(code, message) });

/**
 * One `/rpc` connection's JSON-RPC session (PROTOCOL.md, /rpc), without a socket: it reads
 * frames, answers calls from what the gateway holds, forwards the allowed rest to the node,
 * keeps the connection's subscriptions in the chain's hub, and enforces the connection's limits.
 */
export class RpcSession implements RpcPeer {
  readonly #deps: RpcSessionDeps;
  readonly #subs = new Map<string, RpcSubscription>();
  #addresses = 0;
  #tokens: number;
  #refilledAt = performance.now();
  #rateLimitedInARow = 0;
  #malformedInARow = 0;
  #forwarding = 0;
  /** Notifications held until a batch that made a subscription is answered; `undefined`: none. */
  #held: Array<readonly RpcFrameBytes[]> | undefined;
  /** Batches that made a subscription and wait for the node. */
  #holding = 0;
  /** Subscriptions made on this connection so far (ids are numbered per connection). */
  #subscribed = 0;
  #closed = false;

  constructor(deps: RpcSessionDeps) {
    this.#deps = deps;
    this.#tokens = deps.limits.maxRequestsPerSecond;
  }

  /** Live subscriptions. */
  get subscriptions(): number {
    return this.#subs.size;
  }

  /** Addresses watched by its `logs` subscriptions. */
  get addresses(): number {
    return this.#addresses;
  }

  /** Notifications from the hub. */
  deliver(frames: readonly RpcFrameBytes[]): void {
    if (this.#closed) return;
    if (this.#held === undefined) this.#deps.deliver(frames);
    else this.#held.push(frames);
  }

  /** Reads one text frame and answers it (at once, or when forwarded calls come back). */
  handle(text: string): void {
    if (this.#closed) return;
    const frame = readRpcFrame(text, this.#deps.limits.maxBatch);
    if (frame.kind === 'error') {
      this.#malformed();
      this.#reply(null, { error: frame.error });
      return;
    }
    if (frame.kind === 'single') {
      if (!frame.call.ok) this.#malformed();
      else this.#malformedInARow = 0;
      const outcome = this.#call(frame.call);
      const answer = (o: RpcOutcome): void => {
        if (!frame.call.ok || !frame.call.notification) this.#reply(frame.call.id, o);
      };
      if (outcome instanceof Promise) void outcome.then(answer);
      else answer(outcome);
      return;
    }
    // A batch of nothing but unreadable calls is a malformed frame like any other.
    if (frame.calls.some((call) => call.ok)) this.#malformedInARow = 0;
    else this.#malformed();
    const outcomes = frame.calls.map((call) => this.#call(call));
    const texts = (settled: readonly RpcOutcome[]): string[] =>
      frame.calls.flatMap((call, i) => {
        if (call.ok && call.notification) return [];
        const outcome = settled[i] as RpcOutcome;
        if ('error' in outcome) this.#deps.onError?.(outcome.error.code);
        return [answerText(call.id, outcome)];
      });
    const send = (settled: readonly RpcOutcome[]): void => {
      const answers = texts(settled);
      if (!this.#closed && answers.length > 0) this.#deps.send(`[${answers.join(',')}]`);
    };
    if (!outcomes.some((o) => o instanceof Promise)) {
      send(outcomes as RpcOutcome[]);
      return;
    }
    // The answer naming a subscription made here waits for the node: what is sent meanwhile
    // (its backfill, live blocks) waits too, so that nothing comes before the id. Forwarded calls
    // end within the forwarder's timeout, which bounds the wait.
    const subscribed = frame.calls.some((call, i) => {
      const outcome = outcomes[i];
      return call.ok && call.method === 'eth_subscribe' && !(outcome instanceof Promise) && 'result' in (outcome ?? {});
    });
    if (subscribed) {
      this.#holding++;
      this.#held ??= [];
    }
    void Promise.all(outcomes).then((settled) => {
      send(settled);
      if (subscribed) this.#release();
    });
  }

  /** Sends the notifications held for a batch's answer, once no batch that subscribed waits. */
  #release(): void {
    if (this.#closed || --this.#holding > 0) return;
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const frames of held) this.deliver(frames);
  }

  /** Ends every subscription (the connection closed). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#held = undefined;
    for (const sub of this.#subs.values()) this.#deps.chain.hub.remove(sub);
    this.#subs.clear();
    this.#deps.releaseAddresses(this.#addresses);
    this.#addresses = 0;
  }

  #reply(id: RpcId, outcome: RpcOutcome): void {
    if (this.#closed) return;
    if ('error' in outcome) this.#deps.onError?.(outcome.error.code);
    this.#deps.send(answerText(id, outcome));
  }

  #malformed(): void {
    if (++this.#malformedInARow > MAX_MALFORMED_IN_A_ROW) {
      this.#deps.close(1008, 'too many malformed messages', 'malformed');
    }
  }

  #takeToken(): boolean {
    const now = performance.now();
    const rate = this.#deps.limits.maxRequestsPerSecond;
    this.#tokens = Math.min(rate, this.#tokens + ((now - this.#refilledAt) / 1000) * rate);
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #call(call: RpcCall): Result {
    if (!call.ok) return { error: call.error };
    const rate = this.#deps.limits.maxRequestsPerSecond;
    if (!this.#takeToken()) {
      if (++this.#rateLimitedInARow > rate) this.#deps.close(4029, 'too many requests', 'rate_limited');
      return fail(RpcErrorCode.limitExceeded, `rate limited: at most ${rate} requests per second`);
    }
    this.#rateLimitedInARow = 0;
    const { method, params } = call;
    const chain = this.#deps.chain;
    switch (method) {
      case 'eth_chainId':
        return { result: toQuantity(chain.chainId) };
      case 'net_version':
        return { result: String(chain.chainId) };
      case 'eth_blockNumber': {
        const head = chain.head();
        // Before the first block the node answers it, whatever the forwarding list says.
        return head === undefined ? this.#ask(method, params) : { result: toQuantity(head.number) };
      }
      case 'eth_subscribe':
        return this.#subscribe(params);
      case 'eth_unsubscribe':
        return this.#unsubscribe(params);
      case 'eth_getBlockByNumber':
      case 'eth_getBlockByHash': {
        const own = this.#block(method, params);
        return own ?? this.#forward(method, params);
      }
      default:
        return this.#forward(method, params);
    }
  }

  /** A block the gateway holds, without its transactions' bodies; `undefined`: ask the node. */
  #block(method: string, params: readonly unknown[]): RpcOutcome | undefined {
    const [which, full] = params;
    if (full === true || params.length > 2) return undefined;
    if (full !== undefined && full !== false) return undefined;
    const chain = this.#deps.chain;
    let block: ChainBlock | undefined;
    if (method === 'eth_getBlockByHash') {
      if (typeof which !== 'string' || !HASH.test(which)) return undefined;
      block = chain.byHash(which.toLowerCase() as Hex);
    } else if (which === 'latest') {
      block = chain.head();
    } else if (typeof which === 'string' && QUANTITY.test(which)) {
      block = chain.at(Number.parseInt(which, 16));
    }
    if (block?.header === undefined) return undefined;
    return { result: block.header };
  }

  #forward(method: string, params: readonly unknown[]): Result {
    if (OWN_METHODS.has(method) || !this.#deps.forwardable.has(method)) {
      return fail(RpcErrorCode.methodNotFound, `the method ${method} does not exist/is not available`);
    }
    return this.#ask(method, params);
  }

  /** Sends a call to the node, within the connection's calls in flight. */
  #ask(method: string, params: readonly unknown[]): Result {
    const limit = this.#deps.limits.maxForwardsInFlight;
    if (this.#forwarding >= limit) {
      return fail(RpcErrorCode.limitExceeded, `at most ${limit} requests to the node at once per connection`);
    }
    this.#forwarding++;
    return this.#deps.chain.forward(method, params).then(
      (outcome) => {
        this.#forwarding--;
        return outcome;
      },
      () => {
        this.#forwarding--;
        return fail(RpcErrorCode.upstreamUnavailable, 'the node did not answer');
      },
    );
  }

  #subscribe(params: readonly unknown[]): RpcOutcome {
    const [kind, options] = params;
    const limits = this.#deps.limits;
    const grant = this.#deps.grant;
    if (this.#subs.size >= limits.maxSubscriptions) {
      return fail(RpcErrorCode.limitExceeded, `at most ${limits.maxSubscriptions} subscriptions per connection`);
    }
    const id = subscriptionId(++this.#subscribed);
    const hub = this.#deps.chain.hub;
    const allowed = (channel: 'blocks' | 'activity'): boolean =>
      grant?.channels === undefined || grant.channels.has(channel);
    switch (kind) {
      case 'newHeads': {
        if (params.length > 1) return fail(RpcErrorCode.invalidParams, 'newHeads takes no options');
        if (!allowed('blocks')) return fail(RpcErrorCode.forbidden, 'this key may not follow blocks');
        const sub: RpcSubscription = { id, peer: this, kind: 'newHeads' };
        this.#subs.set(id, sub);
        hub.add(sub);
        return { result: id };
      }
      case 'newPendingTransactions': {
        if (params.length > 2 || (options !== undefined && typeof options !== 'boolean')) {
          return fail(
            RpcErrorCode.invalidParams,
            'newPendingTransactions takes one option: true for whole transactions',
          );
        }
        if (!allowed('activity') || grant?.addresses !== undefined) {
          return fail(RpcErrorCode.forbidden, 'this key may not follow the mempool');
        }
        const sub: RpcSubscription = { id, peer: this, kind: 'newPendingTransactions', full: options === true };
        this.#subs.set(id, sub);
        hub.add(sub);
        return { result: id };
      }
      case 'logs':
        return this.#subscribeLogs(id, params);
      default:
        return fail(
          RpcErrorCode.invalidParams,
          `unsupported subscription ${JSON.stringify(kind)?.slice(0, 40)}: newHeads, logs, newPendingTransactions`,
        );
    }
  }

  #subscribeLogs(id: string, params: readonly unknown[]): RpcOutcome {
    if (params.length > 2) return fail(RpcErrorCode.invalidParams, 'logs takes one filter');
    const parsed = readLogFilter(params[1]);
    if (typeof parsed === 'string') return fail(RpcErrorCode.invalidParams, parsed);
    const { filter, fromBlock } = parsed;
    const grant = this.#deps.grant;
    if (grant?.channels !== undefined && !grant.channels.has('activity')) {
      return fail(RpcErrorCode.forbidden, 'this key may not follow logs');
    }
    if (grant?.addresses !== undefined) {
      const outside =
        filter.addresses.size === 0 ? ['any address'] : [...filter.addresses].filter((a) => !grant.addresses?.has(a));
      if (outside.length > 0) {
        return fail(RpcErrorCode.forbidden, `this key may not watch ${outside.slice(0, 3).join(', ')}`);
      }
    }
    const more = filter.addresses.size;
    const limits = this.#deps.limits;
    if (this.#addresses + more > limits.maxAddresses) {
      return fail(RpcErrorCode.limitExceeded, `at most ${limits.maxAddresses} addresses per connection`);
    }
    const chain = this.#deps.chain;
    // A backfill from `fromBlock` (an extension): the canonical blocks from there to the head.
    const backfill: ChainBlock[] = [];
    if (fromBlock !== undefined) {
      const head = chain.head();
      for (let n = fromBlock; head !== undefined && n <= head.number; n++) {
        const block = chain.at(n);
        if (block === undefined) {
          return fail(RpcErrorCode.invalidParams, `fromBlock ${fromBlock} is older than the blocks this gateway holds`);
        }
        backfill.push(block);
      }
    }
    const frames: string[] = [];
    for (const block of backfill) {
      for (const log of Hub.matching(block, filter)) frames.push(notificationText(id, log));
      if (frames.length > limits.maxBackfillLogs) {
        return fail(
          RpcErrorCode.limitExceeded,
          `the backfill holds more than ${limits.maxBackfillLogs} logs: start later`,
        );
      }
    }
    if (more > 0 && !this.#deps.reserveAddresses(more)) {
      return fail(RpcErrorCode.limitExceeded, 'this gateway watches as many addresses as it may: try later');
    }
    const first = backfill[0];
    const since = first === undefined ? chain.hub.sequence : (chain.hub.sequenceOf(first.hash) ?? 1) - 1;
    const sub: RpcSubscription = { id, peer: this, kind: 'logs', filter, since };
    this.#subs.set(id, sub);
    this.#addresses += more;
    chain.hub.add(sub);
    if (frames.length > 0) {
      // After the answer that names the subscription, before anything live.
      queueMicrotask(() => this.deliver(frames));
    }
    return { result: id };
  }

  #unsubscribe(params: readonly unknown[]): RpcOutcome {
    const [id] = params;
    if (params.length !== 1 || typeof id !== 'string') {
      return fail(RpcErrorCode.invalidParams, 'eth_unsubscribe takes a subscription id');
    }
    const sub = this.#subs.get(id);
    // As geth answers: an error, not `false`.
    if (sub === undefined) return fail(RpcErrorCode.serverError, 'subscription not found');
    this.#subs.delete(id);
    this.#deps.chain.hub.remove(sub);
    if (sub.kind === 'logs') {
      this.#addresses -= sub.filter.addresses.size;
      this.#deps.releaseAddresses(sub.filter.addresses.size);
    }
    return { result: true };
  }
}

/** Reads a `logs` filter: `{address?, topics?, fromBlock?}`; a message when it is not one. */
export function readLogFilter(raw: unknown): { filter: LogFilter; fromBlock?: number } | string {
  if (raw === undefined || raw === null) return { filter: { addresses: new Set(), topics: [] } };
  if (typeof raw !== 'object' || Array.isArray(raw)) return 'the logs filter must be an object';
  const { address, topics, fromBlock, ...rest } = raw as Record<string, unknown>;
  const unknown = Object.keys(rest).filter((k) => k !== 'toBlock' && k !== 'blockHash');
  if (unknown.length > 0) return `unknown filter field ${JSON.stringify(unknown[0]?.slice(0, 40))}`;
  if (rest['toBlock'] !== undefined || rest['blockHash'] !== undefined) {
    return 'a logs subscription follows new blocks: toBlock and blockHash do not apply (eth_getLogs does)';
  }
  const addresses = new Set<Hex>();
  const addressList = address === undefined || address === null ? [] : Array.isArray(address) ? address : [address];
  for (const a of addressList) {
    const parsed = toAddress(a);
    if (parsed === undefined) return `not an address: ${JSON.stringify(a)?.slice(0, 60)}`;
    addresses.add(parsed);
  }
  const positions: Array<ReadonlySet<Hex> | null> = [];
  if (topics !== undefined && topics !== null) {
    if (!Array.isArray(topics) || topics.length > 4) return 'topics must be a list of at most 4 positions';
    for (const position of topics) {
      if (position === null) {
        positions.push(null);
        continue;
      }
      const alternatives = Array.isArray(position) ? position : [position];
      if (alternatives.length > MAX_TOPIC_ALTERNATIVES) {
        return `at most ${MAX_TOPIC_ALTERNATIVES} alternatives per topic position`;
      }
      const set = new Set<Hex>();
      for (const t of alternatives) {
        if (t === null) continue;
        if (typeof t !== 'string' || !HASH.test(t)) return `not a topic: ${JSON.stringify(t)?.slice(0, 70)}`;
        set.add(t.toLowerCase() as Hex);
      }
      // A position whose alternatives include null matches anything.
      positions.push(alternatives.includes(null) ? null : set);
    }
  }
  let from: number | undefined;
  if (fromBlock !== undefined && fromBlock !== null && fromBlock !== 'latest') {
    if (typeof fromBlock !== 'string' || !QUANTITY.test(fromBlock)) {
      return 'fromBlock must be a block number (0x hex) or "latest"';
    }
    from = Number.parseInt(fromBlock, 16);
  }
  return { filter: { addresses, topics: positions }, ...(from === undefined ? {} : { fromBlock: from }) };
}
