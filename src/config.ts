import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { GatewayError } from './domain/errors.ts';
import { LOG_LEVELS, type LogLevel } from './log.ts';
import type { AuthSettings } from './transport/loadAuth.ts';
import { parseOriginPattern } from './transport/matchOrigin.ts';

/** One chain to follow: its id (checked against the node) and its endpoints in failover order. */
export interface ChainConfig {
  readonly chainId: number;
  readonly rpc: readonly string[];
}

/** The gateway's whole configuration, validated once and frozen (its auth part: {@link AuthSettings}). */
export interface Config extends AuthSettings {
  /** JSON-RPC URLs of one chain whose id the node tells, in failover order. */
  readonly rpc: readonly string[];
  /** Chains named by id, each with its endpoints; with `rpc` too, that chain comes first. Both empty: the devnet. */
  readonly chains: readonly ChainConfig[];
  /**
   * Interface to listen on. Unless given, loopback only (127.0.0.1) without keys or tokens, every
   * interface (0.0.0.0) with them.
   */
  readonly host: string;
  readonly port: number;
  /** Head polling interval for http(s) endpoints, in ms. */
  readonly pollIntervalMs: number;
  /** Timeout of one RPC request, in ms. */
  readonly rpcTimeoutMs: number;
  /** `/readyz` fails when a chain's newest block is older than this, in seconds. */
  readonly maxHeadAgeSec: number;
  readonly idleTimeoutSec: number;
  readonly maxMessageBytes: number;
  readonly maxBackpressureBytes: number;
  /** Open connections per remote IP address (an IPv6 /64 counts as one; 0: no limit). */
  readonly maxConnectionsPerIp: number;
  /** Open connections in all; 0 derives it from the open-files limit (that limit minus a reserve). */
  readonly maxConnections: number;
  /** Watched (subscription, address) pairs in all, over every connection. */
  readonly maxWatchedAddresses: number;
  /** Resumes waiting for their replay; past it a resume is told to try again later. */
  readonly maxQueuedResumes: number;
  /** Peers whose `X-Forwarded-For` names the client (exact IP addresses of reverse proxies). */
  readonly trustedProxies: readonly string[];
  /** PEM certificate (chain) file: with `tlsKey`, serves wss:// and https:// ('' for none). */
  readonly tlsCert: string;
  /** PEM private key file of `tlsCert` ('' for none). */
  readonly tlsKey: string;
  /** Largest JSON-RPC answer read from a node, in bytes; a larger one is refused. */
  readonly rpcMaxResponseBytes: number;
  /** Methods `/rpc` sends on to the node (everything it does not answer itself). */
  readonly forwardMethods: readonly string[];
  /** Least level of the lines logged. */
  readonly logLevel: LogLevel;
  /** JSON lines, readable lines, or `auto`: readable on a terminal, JSON otherwise. */
  readonly logFormat: 'auto' | 'json' | 'pretty';
  /** Block time of the embedded devnet, in seconds. */
  readonly devnetBlockTimeSec: number;
  /** Recent blocks ingest keeps to find a reorg's common ancestor. */
  readonly reorgWindowBlocks: number;
  /** Recent blocks whose deliveries are kept for `removed` and confirmations. */
  readonly historyWindowBlocks: number;
  /** Blocks fetched at once while catching up after a gap. */
  readonly backfillConcurrency: number;
  /** Head watchdog: no new head for this many expected block times reconnects (and fails over). */
  readonly headTimeoutBlocks: number;
  /** The head watchdog never fires sooner than this, in seconds. */
  readonly headTimeoutMinSec: number;
  /** Largest `confirmations` a subscription may ask for. */
  readonly maxConfirmations: number;
  /** The chain log on Redis Streams (`redis://HOST:PORT`), shared by processes; '' keeps it in this process. */
  readonly redis: string;
  /** What this process runs: ingest and a gateway (`all`), only ingest (writes the log), only a gateway (reads it). */
  readonly role: 'all' | 'ingest' | 'gateway';
  /** Gateway processes sharing the port (SO_REUSEPORT), fed by the same log; more than 1 needs `redis`. */
  readonly workers: number;
  /** How long a chain's lead lasts without renewal, in ms: a standby takes over within about that. */
  readonly leaseMs: number;
  /** Internal transfers from the node's call traces where it serves them (`auto`), or never (`off`). */
  readonly traces: 'auto' | 'off';
  /** Token symbol, decimals and name read from each token contract (`on`), or never (`off`). */
  readonly tokenMetadata: 'on' | 'off';
  /** Tokens whose metadata is kept in memory (least recently used forgotten). */
  readonly maxTokens: number;
  /** A watched pending transaction missing from the node's mempool this long, unmined, is dropped. */
  readonly dropAfterSec: number;
}

/** Every default, in one place. */
export const DEFAULTS: Config = Object.freeze({
  rpc: Object.freeze([]),
  chains: Object.freeze([]),
  host: '127.0.0.1',
  port: 8080,
  pollIntervalMs: 1000,
  rpcTimeoutMs: 10_000,
  maxHeadAgeSec: 60,
  idleTimeoutSec: 120,
  maxAddresses: 10_000,
  maxSubscriptions: 100,
  maxMessageBytes: 1_048_576,
  maxBackpressureBytes: 4_194_304,
  maxRequestsPerSecond: 100,
  maxConnectionsPerIp: 500,
  maxConnections: 0,
  maxWatchedAddresses: 4_000_000,
  maxQueuedResumes: 1000,
  trustedProxies: Object.freeze([]),
  apiKeyHashes: Object.freeze([]),
  keysFile: '',
  allowedOrigins: Object.freeze([]),
  jwtSecret: '',
  jwtPublicKey: '',
  jwtIssuer: '',
  jwtAudience: '',
  tlsCert: '',
  tlsKey: '',
  rpcMaxResponseBytes: 134_217_728,
  logLevel: 'info',
  logFormat: 'auto',
  forwardMethods: Object.freeze([
    'eth_call',
    'eth_estimateGas',
    'eth_createAccessList',
    'eth_getBalance',
    'eth_getCode',
    'eth_getStorageAt',
    'eth_getTransactionCount',
    'eth_getProof',
    'eth_getLogs',
    'eth_getBlockByNumber',
    'eth_getBlockByHash',
    'eth_getBlockReceipts',
    'eth_getBlockTransactionCountByNumber',
    'eth_getBlockTransactionCountByHash',
    'eth_getTransactionByHash',
    'eth_getTransactionByBlockNumberAndIndex',
    'eth_getTransactionByBlockHashAndIndex',
    'eth_getTransactionReceipt',
    'eth_getUncleCountByBlockNumber',
    'eth_getUncleCountByBlockHash',
    'eth_gasPrice',
    'eth_maxPriorityFeePerGas',
    'eth_feeHistory',
    'eth_blobBaseFee',
    'eth_syncing',
    'eth_accounts',
    'eth_sendRawTransaction',
    'net_listening',
    'web3_clientVersion',
  ]),
  devnetBlockTimeSec: 1,
  reorgWindowBlocks: 128,
  historyWindowBlocks: 256,
  backfillConcurrency: 4,
  headTimeoutBlocks: 10,
  headTimeoutMinSec: 30,
  maxConfirmations: 64,
  redis: '',
  role: 'all',
  workers: 1,
  leaseMs: 3000,
  traces: 'auto',
  tokenMetadata: 'on',
  maxTokens: 10_000,
  dropAfterSec: 600,
});

interface Option {
  readonly key: keyof Config;
  readonly flag: string;
  readonly env: string;
  readonly help: string;
  /** Lower and upper bound of a numeric option. */
  readonly range?: readonly [number, number];
  /** What the value is, in `--help`. @default 'N' with a range, else 'VALUE' */
  readonly value?: string;
}

/** Flags and environment variables, and the keys they set (the README table mirrors this). */
export const OPTIONS: readonly Option[] = [
  {
    key: 'rpc',
    flag: '--rpc',
    env: 'BLOCKCAST_RPC',
    value: 'URL',
    help: 'JSON-RPC URL (http, https, ws, wss); repeat the flag or comma-separate for failover',
  },
  {
    key: 'chains',
    flag: '--chain',
    env: 'BLOCKCAST_CHAINS',
    value: 'ID=URL',
    help: 'a chain as ID=URL[,URL...]; repeat the flag (or separate chains with ; in the env) for several chains',
  },
  {
    key: 'host',
    flag: '--host',
    env: 'BLOCKCAST_HOST',
    help: 'interface to listen on (unless given: 127.0.0.1 without keys or tokens, 0.0.0.0 with them)',
  },
  {
    key: 'port',
    flag: '--port',
    env: 'BLOCKCAST_PORT',
    help: 'port of WebSocket and HTTP (0 picks a free one)',
    range: [0, 65_535],
  },
  {
    key: 'pollIntervalMs',
    flag: '--poll-interval-ms',
    env: 'BLOCKCAST_POLL_INTERVAL_MS',
    help: 'head polling interval',
    range: [10, 600_000],
  },
  {
    key: 'rpcTimeoutMs',
    flag: '--rpc-timeout-ms',
    env: 'BLOCKCAST_RPC_TIMEOUT_MS',
    help: 'timeout of one RPC request',
    range: [100, 600_000],
  },
  {
    key: 'maxHeadAgeSec',
    flag: '--max-head-age-sec',
    env: 'BLOCKCAST_MAX_HEAD_AGE_SEC',
    help: '/readyz fails past this head age',
    range: [1, 86_400],
  },
  {
    key: 'idleTimeoutSec',
    flag: '--idle-timeout-sec',
    env: 'BLOCKCAST_IDLE_TIMEOUT_SEC',
    help: 'drop a silent connection after this',
    range: [8, 960],
  },
  {
    key: 'maxAddresses',
    flag: '--max-addresses',
    env: 'BLOCKCAST_MAX_ADDRESSES',
    help: 'watched addresses per connection',
    range: [1, 1_000_000],
  },
  {
    key: 'maxSubscriptions',
    flag: '--max-subscriptions',
    env: 'BLOCKCAST_MAX_SUBSCRIPTIONS',
    help: 'subscriptions per connection',
    range: [1, 10_000],
  },
  {
    key: 'maxMessageBytes',
    flag: '--max-message-bytes',
    env: 'BLOCKCAST_MAX_MESSAGE_BYTES',
    help: 'largest client message',
    range: [1024, 67_108_864],
  },
  {
    key: 'maxBackpressureBytes',
    flag: '--max-backpressure-bytes',
    env: 'BLOCKCAST_MAX_BACKPRESSURE_BYTES',
    help: 'send buffer per connection before a 4008 close',
    range: [65_536, 1_073_741_824],
  },
  {
    key: 'maxRequestsPerSecond',
    flag: '--max-requests-per-second',
    env: 'BLOCKCAST_MAX_REQUESTS_PER_SECOND',
    help: 'client messages per second per connection',
    range: [1, 100_000],
  },
  {
    key: 'reorgWindowBlocks',
    flag: '--reorg-window-blocks',
    env: 'BLOCKCAST_REORG_WINDOW_BLOCKS',
    help: 'recent blocks kept to find a reorg ancestor',
    range: [2, 100_000],
  },
  {
    key: 'historyWindowBlocks',
    flag: '--history-window-blocks',
    env: 'BLOCKCAST_HISTORY_WINDOW_BLOCKS',
    help: 'recent blocks whose deliveries are kept (removed, confirmations)',
    range: [2, 100_000],
  },
  {
    key: 'backfillConcurrency',
    flag: '--backfill-concurrency',
    env: 'BLOCKCAST_BACKFILL_CONCURRENCY',
    help: 'blocks fetched at once while catching up',
    range: [1, 64],
  },
  {
    key: 'headTimeoutBlocks',
    flag: '--head-timeout-blocks',
    env: 'BLOCKCAST_HEAD_TIMEOUT_BLOCKS',
    help: 'no new head for this many expected block times: reconnect / fail over',
    range: [2, 10_000],
  },
  {
    key: 'headTimeoutMinSec',
    flag: '--head-timeout-min-sec',
    env: 'BLOCKCAST_HEAD_TIMEOUT_MIN_SEC',
    help: 'the head watchdog never fires sooner than this',
    range: [1, 86_400],
  },
  {
    key: 'maxConfirmations',
    flag: '--max-confirmations',
    env: 'BLOCKCAST_MAX_CONFIRMATIONS',
    help: 'largest confirmations a subscription may ask for',
    range: [0, 10_000],
  },
  {
    key: 'maxConnectionsPerIp',
    flag: '--max-connections-per-ip',
    env: 'BLOCKCAST_MAX_CONNECTIONS_PER_IP',
    help: 'open connections per remote address (an IPv6 /64 counts as one), 0 for no limit',
    range: [0, 1_000_000],
  },
  {
    key: 'maxConnections',
    flag: '--max-connections',
    env: 'BLOCKCAST_MAX_CONNECTIONS',
    help: 'open connections in all; 0 derives it from the open-files limit',
    range: [0, 10_000_000],
  },
  {
    key: 'maxWatchedAddresses',
    flag: '--max-watched-addresses',
    env: 'BLOCKCAST_MAX_WATCHED_ADDRESSES',
    help: 'watched (subscription, address) pairs over all connections',
    range: [1, 16_000_000],
  },
  {
    key: 'maxQueuedResumes',
    flag: '--max-queued-resumes',
    env: 'BLOCKCAST_MAX_QUEUED_RESUMES',
    help: 'resumes waiting for their replay; past it a resume is told to try again',
    range: [1, 1_000_000],
  },
  {
    key: 'trustedProxies',
    flag: '--trusted-proxy',
    env: 'BLOCKCAST_TRUSTED_PROXIES',
    value: 'IP',
    help: 'IP address of a reverse proxy whose X-Forwarded-For names the client; repeat or comma-separate',
  },
  {
    key: 'apiKeyHashes',
    flag: '--api-key',
    env: 'BLOCKCAST_API_KEYS',
    value: 'KEY',
    help: 'an API key (at least 16 characters) with the default limits; repeat or comma-separate',
  },
  {
    key: 'keysFile',
    flag: '--keys-file',
    env: 'BLOCKCAST_KEYS_FILE',
    value: 'FILE',
    help: 'JSON file of API keys (as SHA-256) with their origins, chains, channels, addresses and quotas',
  },
  {
    key: 'allowedOrigins',
    flag: '--allowed-origin',
    env: 'BLOCKCAST_ALLOWED_ORIGINS',
    value: 'ORIGIN',
    help: 'origin of web pages allowed to connect (https://app.example, https://*.example); repeat or comma-separate',
  },
  {
    key: 'jwtSecret',
    flag: '--jwt-secret',
    env: 'BLOCKCAST_JWT_SECRET',
    value: 'SECRET',
    help: 'secret of HS256 tokens (JWT)',
  },
  {
    key: 'jwtPublicKey',
    flag: '--jwt-public-key',
    env: 'BLOCKCAST_JWT_PUBLIC_KEY',
    value: 'FILE',
    help: 'PEM file of the public key of tokens (RSA: RS256, P-256: ES256, Ed25519: EdDSA)',
  },
  { key: 'jwtIssuer', flag: '--jwt-issuer', env: 'BLOCKCAST_JWT_ISSUER', help: 'iss every token must carry' },
  { key: 'jwtAudience', flag: '--jwt-audience', env: 'BLOCKCAST_JWT_AUDIENCE', help: 'aud every token must carry' },
  {
    key: 'tlsCert',
    flag: '--tls-cert',
    env: 'BLOCKCAST_TLS_CERT',
    value: 'FILE',
    help: 'PEM certificate file: serve wss:// and https:// (reloaded on SIGHUP)',
  },
  {
    key: 'tlsKey',
    flag: '--tls-key',
    env: 'BLOCKCAST_TLS_KEY',
    value: 'FILE',
    help: 'PEM private key file of --tls-cert',
  },
  {
    key: 'rpcMaxResponseBytes',
    flag: '--rpc-max-response-bytes',
    env: 'BLOCKCAST_RPC_MAX_RESPONSE_BYTES',
    help: 'largest JSON-RPC answer read from a node',
    range: [65_536, 268_435_456],
  },
  {
    key: 'logLevel',
    flag: '--log-level',
    env: 'BLOCKCAST_LOG_LEVEL',
    value: 'LEVEL',
    help: `least level logged: ${LOG_LEVELS.join(', ')}`,
  },
  {
    key: 'logFormat',
    flag: '--log-format',
    env: 'BLOCKCAST_LOG_FORMAT',
    value: 'FORMAT',
    help: 'json (lines with level, time, msg), pretty, or auto: pretty on a terminal, json otherwise',
  },
  {
    key: 'forwardMethods',
    flag: '--forward-methods',
    env: 'BLOCKCAST_FORWARD_METHODS',
    value: 'LIST',
    help: 'methods /rpc sends on to the node, comma-separated (replaces the default list)',
  },
  {
    key: 'redis',
    flag: '--redis',
    env: 'BLOCKCAST_REDIS',
    value: 'URL',
    help: 'keep the chain log on Redis Streams (redis://HOST:PORT), shared by ingest and gateway processes',
  },
  {
    key: 'role',
    flag: '--role',
    env: 'BLOCKCAST_ROLE',
    value: 'all|ingest|gateway',
    help: 'run ingest and a gateway (all), only ingest (writes the chain log), or only a gateway (reads it; needs --redis)',
  },
  {
    key: 'traces',
    flag: '--traces',
    env: 'BLOCKCAST_TRACES',
    value: 'auto|off',
    help: 'internal transfers from call traces where the node serves them (auto), or never (off)',
  },
  {
    key: 'tokenMetadata',
    flag: '--token-metadata',
    env: 'BLOCKCAST_TOKEN_METADATA',
    value: 'on|off',
    help: "read each token's symbol, decimals and name from its contract (on), or never (off)",
  },
  {
    key: 'maxTokens',
    flag: '--max-tokens',
    env: 'BLOCKCAST_MAX_TOKENS',
    help: 'tokens whose metadata is kept in memory',
    range: [1, 1_000_000],
  },
  {
    key: 'dropAfterSec',
    flag: '--drop-after-sec',
    env: 'BLOCKCAST_DROP_AFTER_SEC',
    help: 'a watched pending transaction gone from the mempool this long, unmined, is reported dropped',
    range: [1, 86_400],
  },
  {
    key: 'workers',
    flag: '--workers',
    env: 'BLOCKCAST_WORKERS',
    help: 'gateway processes sharing the port, fed by one chain log (more than 1 needs --redis)',
    range: [1, 256],
  },
  {
    key: 'leaseMs',
    flag: '--lease-ms',
    env: 'BLOCKCAST_LEASE_MS',
    help: "how long a chain's lead lasts unrenewed: a standby ingest takes over within about that",
    range: [300, 600_000],
  },
  {
    key: 'devnetBlockTimeSec',
    flag: '--devnet-block-time-sec',
    env: 'BLOCKCAST_DEVNET_BLOCK_TIME_SEC',
    help: 'block time of the embedded devnet',
    range: [1, 3600],
  },
];

function checkRpcUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new GatewayError('BAD_CONFIG', `rpc: not a URL: ${JSON.stringify(url)}`);
  }
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(parsed.protocol)) {
    throw new GatewayError('BAD_CONFIG', `rpc: ${JSON.stringify(url)} must be http, https, ws or wss`);
  }
  return url;
}

function parseChain(raw: string, from: string): ChainConfig {
  const eq = raw.indexOf('=');
  const id = raw.slice(0, eq).trim();
  if (eq <= 0 || !/^\d{1,15}$/.test(id)) {
    throw new GatewayError('BAD_CONFIG', `chains: ${from} must be ID=URL[,URL...], got ${JSON.stringify(raw)}`);
  }
  const rpc = raw
    .slice(eq + 1)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(checkRpcUrl);
  if (rpc.length === 0) throw new GatewayError('BAD_CONFIG', `chains: ${from} names chain ${id} without an RPC URL`);
  return Object.freeze({ chainId: Number(id), rpc: Object.freeze(rpc) });
}

function setValue(values: Record<string, unknown>, option: Option, raw: string, from: string): void {
  if (option.key === 'chains') {
    const chains = raw
      .split(';')
      .filter((s) => s.trim().length > 0)
      .map((s) => parseChain(s, from));
    if (chains.length === 0) throw new GatewayError('BAD_CONFIG', `chains: ${from} is empty`);
    const all = [...((values['chains'] as ChainConfig[] | undefined) ?? []), ...chains];
    const ids = all.map((c) => c.chainId);
    const twice = ids.find((id, i) => ids.indexOf(id) !== i);
    if (twice !== undefined) throw new GatewayError('BAD_CONFIG', `chains: chain ${twice} is named twice`);
    values['chains'] = all;
    return;
  }
  if (option.key === 'trustedProxies') {
    const ips = raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    const bad = ips.find((ip) => isIP(ip) === 0);
    if (bad !== undefined || ips.length === 0) {
      throw new GatewayError('BAD_CONFIG', `trustedProxies: ${from} must be IP addresses, got ${JSON.stringify(raw)}`);
    }
    values['trustedProxies'] = [...((values['trustedProxies'] as string[] | undefined) ?? []), ...ips];
    return;
  }
  if (option.key === 'apiKeyHashes') {
    const keys = splitList(raw);
    const short = keys.find((k) => k.length < MIN_KEY_LENGTH);
    if (keys.length === 0 || short !== undefined) {
      // The key itself is never printed.
      throw new GatewayError('BAD_CONFIG', `apiKeys: ${from} must be keys of at least ${MIN_KEY_LENGTH} characters`);
    }
    const hashes = keys.map((k) => createHash('sha256').update(k, 'utf8').digest('hex'));
    values['apiKeyHashes'] = [...((values['apiKeyHashes'] as string[] | undefined) ?? []), ...hashes];
    return;
  }
  if (option.key === 'allowedOrigins') {
    const origins = splitList(raw);
    const bad = origins.find((o) => parseOriginPattern(o) === undefined);
    if (origins.length === 0 || bad !== undefined) {
      throw new GatewayError(
        'BAD_CONFIG',
        `allowedOrigins: ${from} must be origins like https://app.example or https://*.example, or *; got ${JSON.stringify(bad ?? raw)}`,
      );
    }
    values['allowedOrigins'] = [...((values['allowedOrigins'] as string[] | undefined) ?? []), ...origins];
    return;
  }
  const choices = CHOICES[option.key];
  if (choices !== undefined) {
    const allowed = choices;
    if (!allowed.includes(raw)) {
      throw new GatewayError(
        'BAD_CONFIG',
        `${option.key}: ${from} must be one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`,
      );
    }
    values[option.key] = raw;
    return;
  }
  if (option.key === 'forwardMethods') {
    const methods = splitList(raw);
    const bad = methods.find((m) => !/^[a-z][a-z0-9]*_[A-Za-z0-9_]+$/.test(m));
    if (methods.length === 0 || bad !== undefined) {
      throw new GatewayError(
        'BAD_CONFIG',
        `forwardMethods: ${from} must be JSON-RPC method names like eth_call, got ${JSON.stringify(bad ?? raw)}`,
      );
    }
    values['forwardMethods'] = methods;
    return;
  }
  if (option.key === 'redis') {
    values['redis'] = checkRedisUrl(raw, from);
    return;
  }
  if (option.key === 'rpc') {
    const urls = raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0)
      .map(checkRpcUrl);
    // An empty value would silently start the devnet instead of following a node.
    if (urls.length === 0) throw new GatewayError('BAD_CONFIG', `rpc: ${from} is empty`);
    values['rpc'] = [...((values['rpc'] as string[] | undefined) ?? []), ...urls];
    return;
  }
  if (option.range === undefined) {
    if (raw.length === 0) throw new GatewayError('BAD_CONFIG', `${option.key}: ${from} is empty`);
    values[option.key] = raw;
    return;
  }
  const n = Number(raw);
  const [min, max] = option.range;
  if (!/^\d{1,16}$/.test(raw) || n < min || n > max) {
    throw new GatewayError(
      'BAD_CONFIG',
      `${option.key}: ${from} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`,
    );
  }
  values[option.key] = n;
}

/** What `--role` accepts. */
const ROLES: readonly Config['role'][] = ['all', 'ingest', 'gateway'];

/** The options that take one of a few words, and those words. */
const CHOICES: Partial<Record<keyof Config, readonly string[]>> = {
  logLevel: LOG_LEVELS,
  logFormat: ['auto', 'json', 'pretty'],
  role: ROLES,
  traces: ['auto', 'off'],
  tokenMetadata: ['on', 'off'],
};

function checkRedisUrl(raw: string, from: string): string {
  let parsed: URL | undefined;
  try {
    parsed = new URL(raw);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || !['redis:', 'rediss:'].includes(parsed.protocol) || parsed.hostname === '') {
    // Not the value itself: it may hold a password.
    throw new GatewayError('BAD_CONFIG', `redis: ${from} must be a URL like redis://HOST:PORT (or rediss:// for TLS)`);
  }
  return raw;
}

function splitList(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Shortest API key accepted: anything shorter can be guessed. */
const MIN_KEY_LENGTH = 16;

/** The flag (and variable) naming a configuration file. */
const CONFIG_FLAG = '--config';
const CONFIG_ENV = 'BLOCKCAST_CONFIG';
/** Largest configuration file read, in bytes. */
const MAX_CONFIG_FILE_BYTES = 1_048_576;
/** Settings holding a path: in a file, relative to the file's folder. */
const PATH_KEYS: ReadonlySet<keyof Config> = new Set(['keysFile', 'tlsCert', 'tlsKey', 'jwtPublicKey']);

/** A setting's name in a configuration file: the key of {@link Config}, but `apiKeys` for the keys themselves. */
function fileKey(option: Option): string {
  return option.key === 'apiKeyHashes' ? 'apiKeys' : option.key;
}

/** The configuration file named by `--config FILE` (the last one) or `BLOCKCAST_CONFIG`. */
function configFileOf(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): string | undefined {
  let file = env[CONFIG_ENV];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === CONFIG_FLAG) file = argv[++i];
    else if (arg.startsWith(`${CONFIG_FLAG}=`)) file = arg.slice(CONFIG_FLAG.length + 1);
    else continue;
    if (file === undefined || file === '') throw new GatewayError('BAD_CONFIG', 'config: --config needs a file');
  }
  return file === '' ? undefined : file;
}

/**
 * Reads a configuration file (JSON, or YAML for .yaml/.yml) into the same values the flags give,
 * through the same checks: a mistake names the setting and the file.
 */
function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    const bytes = readFileSync(file);
    if (bytes.length > MAX_CONFIG_FILE_BYTES) throw new Error(`larger than ${MAX_CONFIG_FILE_BYTES} bytes`);
    text = bytes.toString('utf8');
  } catch (error) {
    throw new GatewayError('BAD_CONFIG', `config: cannot read ${file}: ${(error as Error).message}`, { cause: error });
  }
  let doc: unknown;
  try {
    // Aliases bounded: a small YAML file must not expand into a large value.
    doc = /\.ya?ml$/i.test(file) ? parseYaml(text, { maxAliasCount: 16 }) : JSON.parse(text);
  } catch (error) {
    throw new GatewayError('BAD_CONFIG', `config: ${file} cannot be read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new GatewayError('BAD_CONFIG', `config: ${file} must hold a map of settings`);
  }
  const values: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const option = OPTIONS.find((o) => fileKey(o) === key);
    if (option === undefined) {
      throw new GatewayError(
        'BAD_CONFIG',
        `${key}: ${file}: unknown setting (known: ${OPTIONS.map(fileKey).join(', ')})`,
      );
    }
    const from = `${file}: ${key}`;
    let raw = fileValue(option, value, from);
    if (PATH_KEYS.has(option.key) && raw !== '' && !isAbsolute(raw)) raw = resolve(dirname(file), raw);
    setValue(values, option, raw, from);
  }
  return values;
}

/** A file's value as the text a flag would give: numbers and strings as they are, lists joined. */
function fileValue(option: Option, value: unknown, from: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (option.key === 'chains' && typeof value === 'object' && value !== null && !Array.isArray(value)) {
    // chains: { 1: [url, url], 10: url }
    return Object.entries(value as Record<string, unknown>)
      .map(([id, urls]) => `${id}=${(Array.isArray(urls) ? urls : [urls]).map((u) => String(u)).join(',')}`)
      .join(';');
  }
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
    return value.join(option.key === 'chains' ? ';' : ',');
  }
  throw new GatewayError(
    'BAD_CONFIG',
    `${option.key}: ${from} must be ${option.range ? 'an integer' : 'a string or a list of strings'}, got ${JSON.stringify(value)?.slice(0, 80)}`,
  );
}

/** The usage text of `--help`. */
export function usage(): string {
  const lines = OPTIONS.map(
    (o) =>
      `  ${`${o.flag} ${o.value ?? (o.range ? 'N' : 'VALUE')}`.padEnd(32)}${o.help} (${o.env}; default ${JSON.stringify(DEFAULTS[o.key])})`,
  );
  return [
    'usage: npm start -- [options]',
    '',
    'Without --rpc, an embedded anvil devnet with traffic is started.',
    `  ${'--config FILE'.padEnd(32)}a JSON or YAML file of these settings by name (${CONFIG_ENV}); flags and variables override it`,
    '',
    ...lines,
  ].join('\n');
}

/**
 * Reads the configuration from command-line flags and environment variables (flags win),
 * validates it once and freezes it. A mistake throws a `BAD_CONFIG` error naming the key.
 */
export function loadConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Config {
  const configFile = configFileOf(argv, env);
  const fromFile: Record<string, unknown> = configFile === undefined ? {} : readConfigFile(configFile);
  const fromEnv: Record<string, unknown> = {};
  for (const option of OPTIONS) {
    const raw = env[option.env];
    if (raw !== undefined) setValue(fromEnv, option, raw, option.env);
  }
  const fromFlags: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (flag === CONFIG_FLAG) {
      if (eq < 0) i++; // read by configFileOf
      continue;
    }
    const option = OPTIONS.find((o) => o.flag === flag);
    if (option === undefined)
      // Only the flag: the value of a mistyped `--apikey=SECRET` must not be printed.
      throw new GatewayError('BAD_CONFIG', `unknown option ${JSON.stringify(flag)}\n\n${usage()}`);
    const raw = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (raw === undefined) throw new GatewayError('BAD_CONFIG', `${option.key}: ${flag} needs a value`);
    setValue(fromFlags, option, raw, flag);
  }
  const config = { ...DEFAULTS, ...fromFile, ...fromEnv, ...fromFlags } as Config;
  if ((config.tlsCert === '') !== (config.tlsKey === '')) {
    throw new GatewayError('BAD_CONFIG', 'tlsCert: --tls-cert and --tls-key go together: give both or neither');
  }
  const hostGiven = 'host' in fromFile || 'host' in fromEnv || 'host' in fromFlags;
  const guarded =
    config.apiKeyHashes.length > 0 || config.keysFile !== '' || config.jwtSecret !== '' || config.jwtPublicKey !== '';
  if (!hostGiven) (config as { host: string }).host = guarded ? '0.0.0.0' : DEFAULTS.host;
  if (config.redis === '' && config.role !== 'all') {
    throw new GatewayError(
      'BAD_CONFIG',
      `role: --role ${config.role} needs the chain log shared through Redis: give --redis redis://HOST:PORT`,
    );
  }
  if (config.redis === '' && config.workers > 1) {
    throw new GatewayError(
      'BAD_CONFIG',
      `workers: --workers ${config.workers} needs the chain log shared through Redis: give --redis redis://HOST:PORT`,
    );
  }
  if (config.workers > 1 && config.port === 0) {
    throw new GatewayError(
      'BAD_CONFIG',
      'workers: --workers shares one port between processes: give it with --port (not 0)',
    );
  }
  if (config.role === 'ingest' && config.workers > 1) {
    throw new GatewayError('BAD_CONFIG', 'workers: --workers runs gateway processes; --role ingest runs none');
  }
  if (config.role === 'gateway' && config.rpc.length > 0) {
    throw new GatewayError(
      'BAD_CONFIG',
      'rpc: a gateway (--role gateway) reads its chains from the log; name a node for /rpc calls and the mempool with --chain ID=URL',
    );
  }
  if (config.maxConfirmations >= config.historyWindowBlocks) {
    throw new GatewayError(
      'BAD_CONFIG',
      `maxConfirmations: must be below historyWindowBlocks (${config.historyWindowBlocks}), got ${config.maxConfirmations}`,
    );
  }
  return Object.freeze({
    ...config,
    rpc: Object.freeze([...config.rpc]),
    chains: Object.freeze([...config.chains]),
    trustedProxies: Object.freeze([...config.trustedProxies]),
    apiKeyHashes: Object.freeze([...config.apiKeyHashes]),
    allowedOrigins: Object.freeze([...config.allowedOrigins]),
    forwardMethods: Object.freeze([...config.forwardMethods]),
  });
}
