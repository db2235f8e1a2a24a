/**
 * One gateway process: the stages after the chain log (index, fan-out per chain, `/rpc` hubs,
 * resumes, the transport), composed once for `src/main.ts`, its worker processes and the
 * benchmark servers. It reads the chains' logs and serves subscribers; ingest, which writes the
 * logs, is composed beside it by the caller (or runs in another process).
 */
import type { ChainLogBackend } from './chainlog/ChainLog.ts';
import type { Config } from './config.ts';
import { GatewayError, PROTOCOL_ERROR_CODES } from './domain/errors.ts';
import type { ChainFeed, FanoutObserver } from './fanout/ChainFeed.ts';
import { Fanout } from './fanout/Fanout.ts';
import { ReplayQueue } from './fanout/ReplayQueue.ts';
import { type ChainNode, type ServedChain, serveChain } from './followChain.ts';
import { SubscriptionIndex } from './index/SubscriptionIndex.ts';
import type { Logger } from './log.ts';
import { type Metrics, zeroSeries } from './metrics/metrics.ts';
import type { TlsFiles } from './transport/checkTls.ts';
import { AUTH_REFUSALS, type Auth } from './transport/createAuth.ts';
import { type Connection, createServer, type Server } from './transport/createServer.ts';
import { connectionsFor, openFilesLimit } from './transport/descriptors.ts';
import { RpcHub } from './transport/RpcHub.ts';
import type { RpcChain } from './transport/RpcSession.ts';

/** Resumes one connection may have waiting at once; more are told to try again (PROTOCOL.md, Resume). */
const MAX_QUEUED_RESUMES_PER_CONNECTION = 16;

/** A chain a gateway serves: its id, and its node where this process has one. */
export interface GatewayChain {
  readonly chainId: number;
  readonly node?: ChainNode;
}

/** Options of {@link createGateway}. */
export interface GatewayOptions {
  readonly config: Config;
  readonly log: ChainLogBackend;
  /** The chains to serve, in order (the first is the default). */
  readonly chains: readonly GatewayChain[];
  readonly auth: Auth;
  readonly tls?: TlsFiles;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Share the port with other gateway processes (`--workers`, SO_REUSEPORT); exclusive otherwise. */
  readonly sharedPort?: boolean;
  /** Also told of every fan-out pass (the benchmark servers count frames with it). */
  readonly observe?: FanoutObserver;
}

/** A serving gateway. */
export interface Gateway {
  readonly server: Server;
  readonly feeds: ReadonlyMap<number, ChainFeed<Connection>>;
  readonly index: SubscriptionIndex<Connection>;
  /** Whether every chain's log is read and its head is recent; the reason when not. */
  readonly unready: () => string | undefined;
  /** Closes the connections (1001), stops listening and reading the logs. */
  readonly close: () => Promise<void>;
}

/** How often a gateway asks who leads each chain, for `blockcast_log_leader_fence`. */
const LEADERS_INTERVAL_MS = 2000;

/** Keeps `blockcast_log_leader_fence` on the current leader of each chain; returns the stop. */
function showLeaders(log: ChainLogBackend, metrics: Metrics): () => void {
  let asking = false;
  const ask = (): void => {
    if (asking) return;
    asking = true;
    log.leaders().then(
      (leaders) => {
        asking = false;
        metrics.logLeader.reset();
        for (const [chainId, { owner, fence }] of leaders)
          metrics.logLeader.set({ chain: String(chainId), owner }, fence);
      },
      () => {
        // The log is unreachable: blockcast_log_connected says so; the last leaders stay shown.
        asking = false;
      },
    );
  };
  ask();
  const timer = setInterval(ask, LEADERS_INTERVAL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** Builds the gateway's stages, reads every chain's recent window, then listens. */
export async function createGateway(options: GatewayOptions): Promise<Gateway> {
  const { config, metrics, logger, auth } = options;
  const index = new SubscriptionIndex<Connection>();
  let server: Server | undefined;
  const fanout = new Fanout<Connection>(index, (conn, frames) => server?.deliver(conn, frames));
  const served = new Map<number, ServedChain<Connection>>();
  const feeds = new Map<number, ChainFeed<Connection>>();
  const rpcChains = new Map<number, RpcChain>();
  const closers: Array<() => Promise<void> | void> = [];
  const close = async (): Promise<void> => {
    for (const closer of closers.splice(0).reverse()) await closer();
  };
  try {
    for (const { chainId, node } of options.chains) {
      if (served.has(chainId)) throw new GatewayError('BAD_CONFIG', `chains: chain ${chainId} is configured twice`);
      const chain = await serveChain(chainId, node, {
        config,
        log: options.log,
        fanout,
        index,
        metrics,
        logger,
        ...(options.observe === undefined ? {} : { observe: options.observe }),
      });
      closers.push(chain.close);
      served.set(chainId, chain);
      const feed = chain.feed;
      feeds.set(chainId, feed);
      // `/rpc` (JSON-RPC subscriptions) follows the same blocks, retractions and mempool.
      const hub = new RpcHub(chainId, config.historyWindowBlocks);
      chain.listen({
        block: (block) => hub.onBlock(block),
        retract: (block) => hub.onRetract(block),
        pending: (events) => hub.onPending(events),
        wantsPending: () => hub.pendingSubscriptions > 0,
      });
      rpcChains.set(chainId, {
        chainId,
        hub,
        head: () => feed.history.head,
        at: (number) => feed.history.at(number),
        byHash: (hash) => {
          const found = feed.history.byHash(hash);
          return found?.canonical === true ? found.block : undefined;
        },
        forward: chain.forward,
      });
    }
    const chainIds = [...feeds.keys()];
    zeroSeries(metrics, {
      chains: chainIds,
      errorCodes: PROTOCOL_ERROR_CODES,
      keys: auth.profiles,
      authRefusals: AUTH_REFUSALS,
    });
    const lagTimer = setInterval(() => {
      for (const feed of feeds.values()) {
        const head = feed.history.head;
        if (head !== undefined)
          metrics.headLag.set({ chain: String(feed.chainId) }, Date.now() / 1000 - head.timestamp);
      }
    }, 1000);
    lagTimer.unref();
    closers.push(() => clearInterval(lagTimer));
    closers.push(showLeaders(options.log, metrics));

    // Resumes replay in turn, in short slices between live work, bounded in all and per connection.
    const replay = new ReplayQueue<Connection>({
      maxQueued: config.maxQueuedResumes,
      maxPerOwner: MAX_QUEUED_RESUMES_PER_CONNECTION,
      onSize: (jobs) => metrics.replayQueue.set(jobs),
      onWork: (seconds) => metrics.replaySeconds.inc(seconds),
    });
    closers.push(() => replay.close());
    const fileLimit = openFilesLimit();
    const maxConnections =
      config.maxConnections > 0 ? config.maxConnections : fileLimit === undefined ? 100_000 : connectionsFor(fileLimit);
    if (config.maxConnections === 0) {
      logger.info(
        { component: 'transport' },
        `transport: at most ${maxConnections} connections (open-files limit ${fileLimit ?? 'unknown'})`,
      );
    }
    const unready = (): string | undefined => {
      for (const [chainId, chain] of served) {
        if (!chain.connected()) return `chain ${chainId}: the chain log is unreachable`;
        const age = Date.now() / 1000 - (chain.feed.history.head?.timestamp ?? 0);
        if (age > config.maxHeadAgeSec) return `chain ${chainId}: the head is stale (${Math.round(age)} s old)`;
      }
      return undefined;
    };

    server = await createServer({
      host: config.host,
      port: config.port,
      ...(options.sharedPort === true ? { sharedPort: true } : {}),
      idleTimeoutSec: config.idleTimeoutSec,
      maxConfirmations: config.maxConfirmations,
      limits: {
        maxAddresses: config.maxAddresses,
        maxSubscriptions: config.maxSubscriptions,
        maxMessageBytes: config.maxMessageBytes,
        maxBackpressureBytes: config.maxBackpressureBytes,
        maxRequestsPerSecond: config.maxRequestsPerSecond,
        maxConnectionsPerIp: config.maxConnectionsPerIp,
      },
      capacity: { maxConnections, maxWatchedAddresses: config.maxWatchedAddresses },
      trustedProxies: config.trustedProxies,
      auth,
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      rpc: { chains: rpcChains, forwardable: new Set(config.forwardMethods) },
      log: (message) => logger.warn({ component: 'transport' }, message),
      index,
      metrics,
      chains: {
        chainIds: () => chainIds,
        head: (chainId) => feeds.get(chainId)?.history.head,
        resume: (sub, cursor, maxBytes, onDone) => {
          const feed = feeds.get(sub.chainId);
          if (feed === undefined || cursor === undefined) {
            onDone(false);
            return { status: 'done', cancel: () => undefined };
          }
          const job = feed.resume(sub, cursor, maxBytes, onDone);
          return { status: replay.submit(sub.owner, job), cancel: () => replay.cancel(job) };
        },
        release: (sub) => feeds.get(sub.chainId)?.release(sub),
        features: (chainId) => feeds.get(chainId)?.features() ?? { finality: undefined, internal: undefined },
        // About when the queue will have room, spread so that clients refused at once come back apart.
        retryAfterMs: () => Math.round(Math.max(500, replay.estimatedWaitMs()) * (1 + Math.random())),
        position: (sub) => feeds.get(sub.chainId)?.position(sub),
        unready,
      },
    });
    const listening = server;
    // The server closes first (its connections get 1001), then the logs stop being read.
    closers.push(() => listening.close());
    return { server: listening, feeds, index, unready, close };
  } catch (error) {
    await close();
    throw error;
  }
}
