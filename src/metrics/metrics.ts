import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every metric of the gateway, in one registry. Names are `blockcast_<stage>_<what>_<unit>`;
 * labels are bounded (chain, channel, code, endpoint, method), never an address or a connection.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    connections: new Gauge({
      name: 'blockcast_transport_connections',
      help: 'Open WebSocket connections.',
      registers,
    }),
    connectionsOpened: new Counter({
      name: 'blockcast_transport_connections_opened_total',
      help: 'WebSocket connections accepted.',
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
    errors: new Counter({
      name: 'blockcast_transport_errors_total',
      help: 'Error messages sent to clients, by code.',
      labelNames: ['code'] as const,
      registers,
    }),
    closes: new Counter({
      name: 'blockcast_transport_server_closes_total',
      help: 'Connections the server closed, by reason (slow_consumer, rate_limited, shutdown).',
      labelNames: ['reason'] as const,
      registers,
    }),
  };
}

/** The gateway's metrics (see {@link createMetrics}). */
export type Metrics = ReturnType<typeof createMetrics>;
