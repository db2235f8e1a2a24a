import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every metric of the gateway, in one registry. Names are `blockcast_<stage>_<what>_<unit>`;
 * labels are bounded (chain, channel, code, endpoint, method), never an address or a connection.
 */
export function createMetrics() {
  const registry = new Registry();
  // The event-loop delay histogram samples every 10 ms by default, which alone costs an idle
  // gateway about 6 ms of CPU a second; 100 ms still shows every stall that matters here.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
  // Only counters may end in _total (promtool checks it): drop prom-client's three gauges that do.
  // Their per-type gauges nodejs_active_{handles,requests,resources} sum to the same numbers.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  const registers = [registry];
  return {
    registry,
    buildInfo: new Gauge({
      name: 'blockcast_build_info',
      help: 'Always 1; labels name the running build: version (package.json), commit (short git hash or unknown), node (Node.js version).',
      labelNames: ['version', 'commit', 'node'] as const,
      registers,
    }),
    connections: new Gauge({
      name: 'blockcast_transport_connections',
      help: 'Open WebSocket connections, by endpoint (v1, rpc).',
      labelNames: ['endpoint'] as const,
      registers,
    }),
    connectionsOpened: new Counter({
      name: 'blockcast_transport_connections_opened_total',
      help: 'WebSocket connections accepted, by endpoint (v1, rpc).',
      labelNames: ['endpoint'] as const,
      registers,
    }),
    subscriptions: new Gauge({
      name: 'blockcast_index_subscriptions',
      help: 'Live subscriptions by channel.',
      labelNames: ['channel'] as const,
      registers,
    }),
    watchedAddresses: new Gauge({
      name: 'blockcast_index_watched_addresses',
      help: 'Watched (subscription, address) pairs.',
      registers,
    }),
    blocksIngested: new Counter({
      name: 'blockcast_ingest_blocks_total',
      help: 'Canonical blocks ingested.',
      labelNames: ['chain'] as const,
      registers,
    }),
    headNumber: new Gauge({
      name: 'blockcast_ingest_head_block_number',
      help: 'Number of the newest ingested block.',
      labelNames: ['chain'] as const,
      registers,
    }),
    headTimestamp: new Gauge({
      name: 'blockcast_ingest_head_timestamp_seconds',
      help: 'Timestamp of the newest ingested block (head lag is time() minus this).',
      labelNames: ['chain'] as const,
      registers,
    }),
    rpcDuration: new Histogram({
      name: 'blockcast_ingest_rpc_request_duration_seconds',
      help: 'JSON-RPC request duration by endpoint and method.',
      labelNames: ['endpoint', 'method'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    rpcErrors: new Counter({
      name: 'blockcast_ingest_rpc_errors_total',
      help: 'Failed JSON-RPC requests by endpoint and method.',
      labelNames: ['endpoint', 'method'] as const,
      registers,
    }),
    messagesSent: new Counter({
      name: 'blockcast_fanout_messages_sent_total',
      help: 'Block-scoped messages sent, by channel.',
      labelNames: ['channel'] as const,
      registers,
    }),
    bytesSent: new Counter({
      name: 'blockcast_fanout_sent_bytes_total',
      help: 'Bytes of block-scoped messages sent, by channel.',
      labelNames: ['channel'] as const,
      registers,
    }),
    fanoutDuration: new Histogram({
      name: 'blockcast_fanout_block_duration_seconds',
      help: 'Time to match, encode and write one block to every subscriber.',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
    blockToWrite: new Histogram({
      name: 'blockcast_fanout_block_to_write_latency_seconds',
      help: 'From ingest having a whole block (with receipts) to fan-out handing its last frame to a socket.',
      labelNames: ['chain'] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    reorgs: new Counter({
      name: 'blockcast_ingest_reorgs_total',
      help: 'Reorgs applied (blocks retracted and replaced), by chain.',
      labelNames: ['chain'] as const,
      registers,
    }),
    reorgDepth: new Histogram({
      name: 'blockcast_ingest_reorg_depth_blocks',
      help: 'Blocks orphaned per reorg.',
      labelNames: ['chain'] as const,
      buckets: [1, 2, 3, 5, 10, 20, 50, 100, 200],
      registers,
    }),
    deepReorgs: new Counter({
      name: 'blockcast_ingest_deep_reorgs_total',
      help: 'Reorgs with no common ancestor among the blocks held (the reorg window, fewer after a start): all of them were retracted.',
      labelNames: ['chain'] as const,
      registers,
    }),
    backfilled: new Counter({
      name: 'blockcast_ingest_backfilled_blocks_total',
      help: 'Blocks fetched to close a gap, beyond the head that revealed it.',
      labelNames: ['chain'] as const,
      registers,
    }),
    headLag: new Gauge({
      name: 'blockcast_ingest_head_lag_seconds',
      help: 'Seconds between now and the timestamp of the newest ingested block.',
      labelNames: ['chain'] as const,
      registers,
    }),
    endpointUp: new Gauge({
      name: 'blockcast_ingest_endpoint_up',
      help: '1 while the last request to an RPC endpoint succeeded, 0 after a failure.',
      labelNames: ['chain', 'endpoint'] as const,
      registers,
    }),
    errors: new Counter({
      name: 'blockcast_transport_errors_total',
      help: 'Error messages sent to clients, by endpoint (v1, rpc) and code (on rpc: RPC_*, a node error as RPC_NODE_ERROR).',
      labelNames: ['endpoint', 'code'] as const,
      registers,
    }),
    resumes: new Counter({
      name: 'blockcast_transport_resumes_total',
      help: 'Subscriptions resumed from a cursor, by whether what was missed could be replayed.',
      labelNames: ['recovered'] as const,
      registers,
    }),
    closes: new Counter({
      name: 'blockcast_transport_server_closes_total',
      help: 'Connections the server closed, by endpoint (v1, rpc) and reason (slow_consumer, rate_limited, message_too_big, malformed, invalid_utf8, shutdown, token_expired).',
      labelNames: ['endpoint', 'reason'] as const,
      registers,
    }),
    refusals: new Counter({
      name: 'blockcast_transport_refused_total',
      help: 'WebSocket upgrades refused before a socket opened, by reason (per_ip, capacity, bad_request, shutdown, unauthorized, forbidden, key_quota).',
      labelNames: ['reason'] as const,
      registers,
    }),
    accepting: new Gauge({
      name: 'blockcast_transport_accepting',
      help: '1 while the listening socket accepts connections, 0 while paused because open files ran short.',
      registers,
    }),
    acceptPauses: new Counter({
      name: 'blockcast_transport_accept_pauses_total',
      help: 'Times accepting was paused because the process neared its open-files limit.',
      registers,
    }),
    replayQueue: new Gauge({
      name: 'blockcast_fanout_replay_queue',
      help: 'Resumes waiting for or in their replay.',
      registers,
    }),
    replaySeconds: new Counter({
      name: 'blockcast_fanout_replay_seconds_total',
      help: 'Time spent replaying missed messages to resuming subscriptions.',
      registers,
    }),
    keyConnections: new Gauge({
      name: 'blockcast_auth_connections',
      help: 'Open connections per API key (by its configured name; `token` for tokens).',
      labelNames: ['key'] as const,
      registers,
    }),
    authRefusals: new Counter({
      name: 'blockcast_auth_refusals_total',
      help: 'Upgrades refused by auth, by key (`none` when no configured key was presented) and reason (missing, bad_key, bad_token, expired_token, origin).',
      labelNames: ['key', 'reason'] as const,
      registers,
    }),
    quotaHits: new Counter({
      name: 'blockcast_auth_quota_hits_total',
      help: "Requests refused by a key's quota, by key and quota (connections, subscriptions, addresses, requests_per_second, allowed).",
      labelNames: ['key', 'quota'] as const,
      registers,
    }),
    tokenExpiries: new Counter({
      name: 'blockcast_auth_token_expiries_total',
      help: 'Connections closed because their token expired before a refresh (4401).',
      registers,
    }),
    rpcFaults: new Counter({
      name: 'blockcast_ingest_rpc_faults_total',
      help: 'JSON-RPC answers not used, by chain, endpoint and reason (timeout, transport, http_status, too_large, invalid_json, bad_response, node_error, malformed, inconsistent, wrong_chain, behind).',
      labelNames: ['chain', 'endpoint', 'reason'] as const,
      registers,
    }),
    fanoutErrors: new Counter({
      name: 'blockcast_fanout_errors_total',
      help: 'Chain log entries whose fan-out threw (a bug: the entry is in the history, some subscribers may have missed it), by chain.',
      labelNames: ['chain'] as const,
      registers,
    }),
    logAppends: new Counter({
      name: 'blockcast_log_appends_total',
      help: 'Entries this process appended to the chain log as its leader, by chain and kind (add, retract).',
      labelNames: ['chain', 'kind'] as const,
      registers,
    }),
    logLeading: new Gauge({
      name: 'blockcast_log_leading',
      help: 'Whether this process leads the chain (writes its log): 1, or 0 as a standby.',
      labelNames: ['chain'] as const,
      registers,
    }),
    logLeader: new Gauge({
      name: 'blockcast_log_leader_fence',
      help: "The fencing epoch of the chain log's leader, labelled with its owner (one series per chain: the current leader).",
      labelNames: ['chain', 'owner'] as const,
      registers,
    }),
    logConnected: new Gauge({
      name: 'blockcast_log_connected',
      help: 'Whether this gateway reads the chain log (1), or lost it (0: Redis unreachable; it catches up when back).',
      labelNames: ['chain'] as const,
      registers,
    }),
    logOffset: new Gauge({
      name: 'blockcast_log_offset',
      help: "The offset of the last chain log entry this gateway read (within the log's epoch).",
      labelNames: ['chain'] as const,
      registers,
    }),
    logResets: new Counter({
      name: 'blockcast_log_resets_total',
      help: 'Times the chain log was found reset (a new epoch: Redis lost it) or trimmed past this gateway, which then started over from it.',
      labelNames: ['chain'] as const,
      registers,
    }),
    traceDuration: new Histogram({
      name: 'blockcast_ingest_trace_duration_seconds',
      help: "Time to fetch one block's call traces (internal transfers), by chain, method and outcome (ok, error).",
      labelNames: ['chain', 'method', 'outcome'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    tracedBlocks: new Counter({
      name: 'blockcast_ingest_traced_blocks_total',
      help: 'Blocks by what ingest did about their traces: traced, skipped (no transaction ran code), refused (the node answered an error).',
      labelNames: ['chain', 'outcome'] as const,
      registers,
    }),
    tokenLookups: new Counter({
      name: 'blockcast_ingest_token_lookups_total',
      help: 'Token metadata lookups (three eth_calls each) by outcome: ok (some metadata), none (the contract has none), failed (tried again later).',
      labelNames: ['chain', 'outcome'] as const,
      registers,
    }),
    finalizedNumber: new Gauge({
      name: 'blockcast_finalized_block_number',
      help: "Number of the node's finalized block as this gateway last read it from the log (absent where the node has no finality tags).",
      labelNames: ['chain'] as const,
      registers,
    }),
    trackedTransactions: new Gauge({
      name: 'blockcast_lifecycle_tracked_transactions',
      help: 'Pending transactions of watched addresses followed until mined, replaced or dropped.',
      labelNames: ['chain'] as const,
      registers,
    }),
    transactionFates: new Counter({
      name: 'blockcast_lifecycle_fates_total',
      help: 'Pending transactions of watched addresses replaced or dropped (told to their subscriptions).',
      labelNames: ['chain', 'fate'] as const,
      registers,
    }),
    logDelay: new Histogram({
      name: 'blockcast_log_delay_seconds',
      help: "Time from an entry's append by ingest to its reading by this gateway (the log's share of block-to-write latency; writer's clock).",
      labelNames: ['chain'] as const,
      buckets: [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
  };
}

/** The gateway's metrics (see {@link createMetrics}). */
export type Metrics = ReturnType<typeof createMetrics>;

/** The WebSocket endpoints (label `endpoint`): protocol v1 and JSON-RPC. */
export const ENDPOINTS = ['v1', 'rpc'] as const;

/** Reasons of `blockcast_transport_server_closes_total`. */
export const CLOSE_REASONS = [
  'slow_consumer',
  'rate_limited',
  'message_too_big',
  'malformed',
  'invalid_utf8',
  'shutdown',
  'token_expired',
] as const;

/** Reasons of `blockcast_transport_refused_total`. */
export const REFUSAL_REASONS = [
  'per_ip',
  'capacity',
  'bad_request',
  'shutdown',
  'unauthorized',
  'forbidden',
  'key_quota',
] as const;

/** Quotas of `blockcast_auth_quota_hits_total`. */
export const QUOTAS = ['connections', 'subscriptions', 'addresses', 'requests_per_second', 'allowed'] as const;

/** Label values known before the first event (see {@link zeroSeries}). */
export interface KnownLabels {
  /** Chain ids the gateway follows. */
  readonly chains: readonly number[];
  /** Every error code a client can receive. */
  readonly errorCodes: readonly string[];
  /** Names of the configured API keys (and `token` when tokens are accepted). */
  readonly keys?: readonly string[];
  /** Reasons of auth refusals. */
  readonly authRefusals?: readonly string[];
}

/**
 * Creates the series of every known label value at zero, so that Prometheus sees a zero (and
 * `rate()` a rate) from the first scrape instead of a missing series until the first event.
 */
export function zeroSeries(metrics: Metrics, known: KnownLabels): void {
  for (const channel of ['blocks', 'activity']) {
    metrics.messagesSent.inc({ channel }, 0);
    metrics.bytesSent.inc({ channel }, 0);
    metrics.subscriptions.set({ channel }, 0);
  }
  metrics.messagesSent.inc({ channel: 'rpc' }, 0);
  metrics.bytesSent.inc({ channel: 'rpc' }, 0);
  for (const endpoint of ENDPOINTS) {
    metrics.connections.set({ endpoint }, 0);
    metrics.connectionsOpened.inc({ endpoint }, 0);
    for (const reason of CLOSE_REASONS) metrics.closes.inc({ endpoint, reason }, 0);
  }
  for (const code of known.errorCodes) metrics.errors.inc({ endpoint: 'v1', code }, 0);
  for (const reason of REFUSAL_REASONS) metrics.refusals.inc({ reason }, 0);
  metrics.tokenExpiries.inc(0);
  for (const key of known.keys ?? []) {
    metrics.keyConnections.set({ key }, 0);
    for (const quota of QUOTAS) metrics.quotaHits.inc({ key, quota }, 0);
  }
  if ((known.keys ?? []).length > 0) {
    for (const key of [...(known.keys ?? []), 'none']) {
      for (const reason of known.authRefusals ?? []) metrics.authRefusals.inc({ key, reason }, 0);
    }
  }
  metrics.acceptPauses.inc(0);
  metrics.accepting.set(1);
  metrics.replayQueue.set(0);
  metrics.replaySeconds.inc(0);
  for (const recovered of ['true', 'false']) metrics.resumes.inc({ recovered }, 0);
  for (const chainId of known.chains) {
    const chain = String(chainId);
    metrics.blocksIngested.inc({ chain }, 0);
    metrics.blockToWrite.zero({ chain });
    metrics.reorgs.inc({ chain }, 0);
    metrics.reorgDepth.zero({ chain });
    metrics.deepReorgs.inc({ chain }, 0);
    metrics.backfilled.inc({ chain }, 0);
  }
}
