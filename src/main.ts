/**
 * The composition root: reads the configuration, builds the stages (ingest → index → fanout →
 * transport), wires them and handles shutdown. Nothing else reads `process.env`.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Config, loadConfig, usage } from './config.ts';
import { startAnvil } from './devnet/startAnvil.ts';
import { startTraffic } from './devnet/startTraffic.ts';
import { errorMessage, GatewayError, PROTOCOL_ERROR_CODES } from './domain/errors.ts';
import type { ChainFeed } from './fanout/ChainFeed.ts';
import { Fanout } from './fanout/Fanout.ts';
import { ReplayQueue } from './fanout/ReplayQueue.ts';
import { type ChainSource, followChain } from './followChain.ts';
import { SubscriptionIndex } from './index/SubscriptionIndex.ts';
import { createLogger, type Logger } from './log.ts';
import { createMetrics, zeroSeries } from './metrics/metrics.ts';
import { watchHeap } from './reclaimMemory.ts';
import { checkTls, type TlsFiles } from './transport/checkTls.ts';
import { AUTH_REFUSALS, type Auth, createAuth } from './transport/createAuth.ts';
import { assertNativeUws, type Connection, createServer, type Server } from './transport/createServer.ts';
import { connectionsFor, openFilesLimit } from './transport/descriptors.ts';
import { loadAuth } from './transport/loadAuth.ts';
import { RpcHub } from './transport/RpcHub.ts';
import type { RpcChain } from './transport/RpcSession.ts';

/** Resumes one connection may have waiting at once; more are told to try again (PROTOCOL.md, Resume). */
const MAX_QUEUED_RESUMES_PER_CONNECTION = 16;

/** The gateway's logger, set from the configuration in {@link run} (JSON at info until then). */
let logger: Logger = createLogger({ level: 'info', format: 'json' });

/** Labels of `blockcast_build_info`: package.json's version, the short git commit (`unknown` outside a checkout), Node.js. */
function buildInfo(): { version: string; commit: string; node: string } {
  const root = new URL('..', import.meta.url);
  const { version } = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { version: string };
  // Best effort, bounded: a missing git or a copy without .git must never stop the gateway.
  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], {
    cwd: fileURLToPath(root),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    timeout: 2_000,
  });
  const hash = git.status === 0 ? git.stdout.trim() : '';
  return { version, commit: /^[0-9a-f]{4,40}$/.test(hash) ? hash : 'unknown', node: process.version };
}

/** Things to stop at shutdown, newest first. */
type Cleanups = Array<() => Promise<void> | void>;

async function runCleanups(cleanups: Cleanups): Promise<void> {
  for (const cleanup of cleanups) {
    try {
      await cleanup();
    } catch (error) {
      logger.warn({ component: 'shutdown', err: error }, `shutdown: ${errorMessage(error)}`);
    }
  }
}

/** The chains to follow; with none configured, an embedded anvil devnet with test traffic. */
async function chainSources(config: Config, cleanups: Cleanups): Promise<ChainSource[]> {
  const sources: ChainSource[] = [
    ...(config.rpc.length > 0 ? [{ urls: config.rpc }] : []),
    ...config.chains.map((c) => ({ urls: c.rpc, chainId: c.chainId })),
  ];
  if (sources.length > 0) return sources;
  const anvil = await startAnvil({ blockTimeSec: config.devnetBlockTimeSec });
  cleanups.unshift(() => anvil.close());
  cleanups.unshift(
    startTraffic({
      rpcUrl: anvil.httpUrl,
      onError: (e) => logger.warn({ component: 'devnet', err: e }, `devnet traffic: ${errorMessage(e)}`),
    }),
  );
  logger.info(
    { component: 'devnet', url: anvil.httpUrl },
    `devnet: anvil at ${anvil.httpUrl} (block time ${config.devnetBlockTimeSec} s), sending test traffic`,
  );
  return [{ urls: [anvil.httpUrl] }];
}

function banner(
  config: Config,
  port: number,
  secure: boolean,
  keyed: boolean,
  feeds: ReadonlyMap<number, ChainFeed<Connection>>,
): string {
  const shown = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const s = secure ? 's' : '';
  const url = `ws${s}://${shown}:${port}/v1`;
  const chains = [...feeds.values()].map((f) => `chain ${f.chainId} at block ${f.history.head?.number}`).join(', ');
  const query = keyed ? '?encoding=json&key=YOUR_KEY' : '?encoding=json';
  const example = `node --experimental-websocket -e "const w=new WebSocket('${url}${query}');w.onopen=()=>w.send(JSON.stringify({op:'subscribe',channel:'blocks'}));w.onmessage=(e)=>console.log(e.data)"`;
  return [
    `blockcast: ${chains}; listening on ${url}`,
    `  JSON frames: ${url}?encoding=json   metrics: http${s}://${shown}:${port}/metrics   live page: http${s}://${shown}:${port}/`,
    '  watch blocks:',
    `  ${example}`,
  ].join('\n');
}

/** Says at start who may connect: a gateway open to anyone must not be so by accident. */
function announceAccess(config: Config, port: number, auth: Auth): void {
  const loopback = /^(127\.|::1$|localhost$)/.test(config.host);
  if (auth.required) {
    const what = auth.profiles.map((name) => (name === 'token' ? 'tokens' : name)).join(', ');
    logger.info(
      { component: 'auth', host: config.host },
      `auth: a key or token is needed to connect (${what}); listening on ${config.host}`,
    );
  } else if (loopback) {
    logger.info(
      { component: 'auth', host: config.host },
      `auth: no API keys or tokens configured: listening on ${config.host} only; configure keys (--api-key, --keys-file) or give --host to serve other machines`,
    );
  } else {
    logger.warn(
      { component: 'auth', host: config.host },
      `auth: no API keys or tokens configured: anyone who reaches ${config.host}:${port} may connect`,
    );
  }
}

async function start(config: Config, cleanups: Cleanups): Promise<void> {
  // Everything that can be wrong in the configuration fails before a devnet or a watcher starts.
  const auth = createAuth(loadAuth(config));
  const tls = config.tlsCert === '' ? undefined : checkTls(config.tlsCert, config.tlsKey);
  const sources = await chainSources(config, cleanups);
  const metrics = createMetrics();
  metrics.buildInfo.set(buildInfo(), 1);
  const index = new SubscriptionIndex<Connection>();
  let server: Server | undefined;
  const fanout = new Fanout<Connection>(index, (conn, frames) => server?.deliver(conn, frames));
  const feeds = new Map<number, ChainFeed<Connection>>();
  const rpcChains = new Map<number, RpcChain>();
  // One after the other, so the configuration order is the order of chains (the first is the default).
  for (const source of sources) {
    const chain = await followChain(source, { config, fanout, index, metrics, logger });
    cleanups.unshift(chain.close);
    if (feeds.has(chain.feed.chainId)) {
      throw new GatewayError('BAD_CONFIG', `chains: chain ${chain.feed.chainId} is configured twice`);
    }
    feeds.set(chain.feed.chainId, chain.feed);
    // `/rpc` (JSON-RPC subscriptions) follows the same blocks, retractions and mempool.
    const feed = chain.feed;
    const hub = new RpcHub(feed.chainId, config.historyWindowBlocks);
    chain.listen({
      block: (block) => hub.onBlock(block),
      retract: (block) => hub.onRetract(block),
      pending: (events) => hub.onPending(events),
      wantsPending: () => hub.pendingSubscriptions > 0,
    });
    rpcChains.set(feed.chainId, {
      chainId: feed.chainId,
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
      if (head !== undefined) metrics.headLag.set({ chain: String(feed.chainId) }, Date.now() / 1000 - head.timestamp);
    }
  }, 1000);
  lagTimer.unref();
  cleanups.push(() => clearInterval(lagTimer));

  // Resumes replay in turn, in short slices between live work, bounded in all and per connection.
  const replay = new ReplayQueue<Connection>({
    maxQueued: config.maxQueuedResumes,
    maxPerOwner: MAX_QUEUED_RESUMES_PER_CONNECTION,
    onSize: (jobs) => metrics.replayQueue.set(jobs),
    onWork: (seconds) => metrics.replaySeconds.inc(seconds),
  });
  cleanups.push(() => replay.close());
  const fileLimit = openFilesLimit();
  const maxConnections =
    config.maxConnections > 0 ? config.maxConnections : fileLimit === undefined ? 100_000 : connectionsFor(fileLimit);
  if (config.maxConnections === 0) {
    logger.info(
      { component: 'transport' },
      `transport: at most ${maxConnections} connections (open-files limit ${fileLimit ?? 'unknown'})`,
    );
  }

  server = await createServer({
    host: config.host,
    port: config.port,
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
    ...(tls === undefined ? {} : { tls }),
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
      // About when the queue will have room, spread so that clients refused at once come back apart.
      retryAfterMs: () => Math.round(Math.max(500, replay.estimatedWaitMs()) * (1 + Math.random())),
      position: (sub) => feeds.get(sub.chainId)?.position(sub),
      ready: () =>
        [...feeds.values()].every((f) => Date.now() / 1000 - (f.history.head?.timestamp ?? 0) <= config.maxHeadAgeSec),
    },
  });
  cleanups.unshift((server as Server).close);
  // After a burst (an attack, a storm of reconnects), give the memory it took back once quiet.
  cleanups.push(watchHeap({ log: (message) => logger.info({ component: 'memory' }, message) }));
  if (tls === undefined) ignoreHangup(cleanups);
  else watchCertificate(server, tls, cleanups);
  announceAccess(config, server.port, auth);
  // One write, so a reader that sees the URL sees the whole banner.
  logger.info(
    { component: 'transport', port: server.port },
    banner(config, server.port, server.secure, auth.required, feeds),
  );
}

/** Without TLS, SIGHUP has nothing to reload: it must not end the gateway either (Node's default). */
function ignoreHangup(cleanups: Cleanups): void {
  const said = (): void => logger.info({ component: 'tls' }, 'SIGHUP: nothing to reload (no --tls-cert)');
  process.on('SIGHUP', said);
  cleanups.push(() => {
    process.off('SIGHUP', said);
  });
}

/** SIGHUP reads the certificate files again and serves the new certificate; open connections stay. */
function watchCertificate(server: Server, first: TlsFiles, cleanups: Cleanups): void {
  const log = logger.child({ component: 'tls' });
  log.info(
    { certFile: first.certFile },
    `tls: serving ${first.subject.replaceAll('\n', ', ')} (sha256 ${first.fingerprint256}, valid to ${first.validTo})`,
  );
  let reloading = false;
  const reload = (): void => {
    if (reloading) return;
    reloading = true;
    let files: TlsFiles;
    try {
      files = checkTls(first.certFile, first.keyFile);
    } catch (error) {
      reloading = false;
      log.error({ err: error }, `tls: SIGHUP: kept the certificate in use: ${errorMessage(error)}`);
      return;
    }
    server.reloadTls(files).then(
      () => {
        reloading = false;
        log.info(
          {},
          `tls: SIGHUP: reloaded the certificate (sha256 ${files.fingerprint256}, valid to ${files.validTo})`,
        );
      },
      (error: unknown) => {
        reloading = false;
        log.error({ err: error }, `tls: SIGHUP: kept the certificate in use: ${errorMessage(error)}`);
      },
    );
  };
  process.on('SIGHUP', reload);
  cleanups.push(() => {
    process.off('SIGHUP', reload);
  });
}

async function run(config: Config): Promise<void> {
  const format = config.logFormat === 'auto' ? (process.stdout.isTTY ? 'pretty' : 'json') : config.logFormat;
  logger = createLogger({ level: config.logLevel, format });
  // Before anything starts: never serve on uWebSockets.js's slow JavaScript fallback.
  assertNativeUws();
  const cleanups: Cleanups = [];
  try {
    await start(config, cleanups);
  } catch (error) {
    // A half-started gateway must not leave a devnet or a watcher behind.
    await runCleanups(cleanups);
    throw error;
  }
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ component: 'process', signal }, `${signal}: closing connections and stopping`);
    void runCleanups(cleanups).then(() => process.exit(0));
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  console.log(usage());
  process.exit(0);
}
let config: Config;
try {
  config = loadConfig(argv, process.env);
} catch (error) {
  // Before any logger: the configuration that would set it up is what is wrong.
  const message = error instanceof GatewayError ? `${error.code}: ${error.message}` : String(error);
  console.error(`blockcast: ${message}`);
  process.exit(1);
}
try {
  await run(config);
} catch (error) {
  const message = error instanceof GatewayError ? `${error.code}: ${error.message}` : String(error);
  logger.error({ component: 'process', err: error }, `blockcast: ${message}`);
  process.exit(1);
}
