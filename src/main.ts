/**
 * The composition root: reads the configuration, builds the stages (ingest → index → fanout →
 * transport), wires them and handles shutdown. Nothing else reads `process.env`.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ChainLogBackend } from './chainlog/ChainLog.ts';
import { createMemoryLog } from './chainlog/MemoryLog.ts';
import { createRedisLog } from './chainlog/RedisLog.ts';
import { type Config, loadConfig, usage } from './config.ts';
import { createGateway, type GatewayChain } from './createGateway.ts';
import { startAnvil } from './devnet/startAnvil.ts';
import { startTraffic } from './devnet/startTraffic.ts';
import { errorMessage, GatewayError } from './domain/errors.ts';
import type { ChainFeed } from './fanout/ChainFeed.ts';
import { type ChainSource, type LedChain, leadChain, processOwner } from './followChain.ts';
import { createLogger, type Logger } from './log.ts';
import { createMetrics } from './metrics/metrics.ts';
import { watchHeap } from './reclaimMemory.ts';
import { superviseWorkers } from './superviseWorkers.ts';
import { checkTls, type TlsFiles } from './transport/checkTls.ts';
import { claimPort } from './transport/claimPort.ts';
import { type Auth, createAuth } from './transport/createAuth.ts';
import { assertNativeUws, type Connection, type Server } from './transport/createServer.ts';
import { loadAuth } from './transport/loadAuth.ts';
import { serveOps } from './transport/serveOps.ts';

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

/** The chain log: in this process, or on Redis when processes share it. */
async function openLog(config: Config): Promise<ChainLogBackend> {
  // Enough entries for the history window (a header and a block each) and the retractions among
  // them: a late reader (a new gateway, one back from an outage) rebuilds the whole window from the log.
  const maxEntriesPerChain = Math.max(1024, 4 * config.historyWindowBlocks);
  if (config.redis === '') {
    return createMemoryLog({
      maxEntriesPerChain,
      onReaderError: (error, chainId) =>
        logger.error({ component: 'gateway', chain: chainId, err: error }, `chain ${chainId}: ${errorMessage(error)}`),
    });
  }
  return createRedisLog({
    url: config.redis,
    leaseMs: config.leaseMs,
    maxEntriesPerChain,
    onError: (error) => logger.warn({ component: 'log', err: error }, `redis: ${errorMessage(error)}`),
  });
}

/** The chains a gateway-only process serves: those in the log (waiting for the first), with their nodes where named. */
async function loggedChains(
  config: Config,
  log: ChainLogBackend,
  nodes: ReadonlyMap<number, readonly string[]>,
): Promise<GatewayChain[]> {
  let ids = await log.chains();
  for (let waited = 0; ids.length === 0; waited++) {
    if (waited % 10 === 0) {
      logger.info(
        { component: 'log' },
        'log: no chain in the chain log yet: waiting for an ingest process (--role ingest or all) to write one',
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    ids = await log.chains();
  }
  const named = config.chains.map((c) => c.chainId).filter((id) => ids.includes(id));
  const order = [...named, ...ids.filter((id) => !named.includes(id))];
  return order.map((chainId) => {
    const urls = nodes.get(chainId);
    return urls === undefined ? { chainId } : { chainId, node: { urls, currentUrl: () => urls[0] as string } };
  });
}

/** A worker's chains and their nodes, as its supervisor ran ingest for them (BLOCKCAST_WORKER_CHAINS). */
function workerNodes(raw: string | undefined): Map<number, readonly string[]> {
  const nodes = new Map<number, readonly string[]>();
  if (raw === undefined) return nodes;
  for (const { chainId, urls } of JSON.parse(raw) as Array<{ chainId: number; urls: string[] }>)
    nodes.set(chainId, urls);
  return nodes;
}

async function start(config: Config, cleanups: Cleanups): Promise<void> {
  // Everything that can be wrong in the configuration fails before a devnet or a watcher starts.
  const auth = createAuth(loadAuth(config));
  const tls = config.tlsCert === '' ? undefined : checkTls(config.tlsCert, config.tlsKey);
  const worker = process.env['BLOCKCAST_WORKER'];
  const metrics = createMetrics();
  metrics.buildInfo.set(buildInfo(), 1);
  const log = await openLog(config);
  cleanups.push(() => log.close());

  // Ingest: this process competes for the lead of each chain and writes its log while it leads.
  const led = new Map<number, LedChain>();
  if (config.role !== 'gateway' && worker === undefined) {
    const owner = processOwner();
    // One after the other, so the configuration order is the order of chains (the first is the default).
    for (const source of await chainSources(config, cleanups)) {
      const chain = await leadChain(source, { config, log, owner, metrics, logger });
      cleanups.unshift(chain.close);
      if (led.has(chain.chainId))
        throw new GatewayError('BAD_CONFIG', `chains: chain ${chain.chainId} is configured twice`);
      led.set(chain.chainId, chain);
    }
  }
  if (config.role === 'ingest') {
    const ops = await serveOps({ host: config.host, port: config.port, metrics, ready: () => undefined });
    cleanups.unshift(ops.close);
    logger.info(
      { component: 'process', port: ops.port },
      `blockcast: ingest of ${[...led.keys()].map((id) => `chain ${id}`).join(', ')} into ${config.redis === '' ? 'the in-process log' : 'Redis'}; metrics: http://${config.host}:${ops.port}/metrics`,
    );
    return;
  }
  if (config.workers > 1 && worker === undefined) {
    // This process supervises: the workers serve the port together, fed by the log.
    await claimPort(config.host, config.port);
    const chains = [...led.values()].map((c) => ({ chainId: c.chainId, urls: c.urls }));
    const workers = superviseWorkers({
      count: config.workers,
      entry: fileURLToPath(import.meta.url),
      args: process.argv.slice(2),
      execArgv: process.execArgv,
      env: { ...process.env, ...(chains.length > 0 ? { BLOCKCAST_WORKER_CHAINS: JSON.stringify(chains) } : {}) },
      log: {
        info: (m) => logger.info({ component: 'workers' }, m),
        warn: (m) => logger.warn({ component: 'workers' }, m),
      },
    });
    cleanups.unshift(() => workers.stop());
    process.on('SIGHUP', () => workers.signal('SIGHUP'));
    logger.info(
      { component: 'workers', port: config.port },
      `blockcast: ${config.workers} gateway workers on port ${config.port} (pids ${workers.pids().join(', ')}), fed by the chain log on Redis`,
    );
    return;
  }
  const chains: GatewayChain[] =
    led.size > 0
      ? [...led.values()].map((c) => ({ chainId: c.chainId, node: { urls: c.urls, currentUrl: c.currentUrl } }))
      : await loggedChains(
          config,
          log,
          worker === undefined
            ? new Map(config.chains.map((c) => [c.chainId, c.rpc] as const))
            : workerNodes(process.env['BLOCKCAST_WORKER_CHAINS']),
        );
  const gateway = await createGateway({
    config,
    log,
    chains,
    auth,
    ...(tls === undefined ? {} : { tls }),
    metrics,
    logger,
    sharedPort: worker !== undefined,
  });
  cleanups.unshift(gateway.close);
  if (worker !== undefined) stopWithSupervisor(cleanups);
  const server = gateway.server;
  // After a burst (an attack, a storm of reconnects), give the memory it took back once quiet.
  cleanups.push(watchHeap({ log: (message) => logger.info({ component: 'memory' }, message) }));
  if (tls === undefined) ignoreHangup(cleanups);
  else watchCertificate(server, tls, cleanups);
  announceAccess(config, server.port, auth);
  // One write, so a reader that sees the URL sees the whole banner.
  logger.info(
    { component: 'transport', port: server.port },
    banner(config, server.port, server.secure, auth.required, gateway.feeds),
  );
}

/** A worker whose supervisor is gone (killed with SIGKILL) stops too rather than serve on its own. */
function stopWithSupervisor(cleanups: Cleanups): void {
  const supervisor = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === supervisor) return;
    logger.warn({ component: 'workers' }, `worker: the supervisor (pid ${supervisor}) is gone: stopping`);
    process.kill(process.pid, 'SIGTERM');
  }, 1000);
  timer.unref();
  cleanups.push(() => clearInterval(timer));
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
