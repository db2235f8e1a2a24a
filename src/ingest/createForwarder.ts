import { RpcFaultError } from '../domain/errors.ts';
import { createRpcClient, type RpcClient } from './createRpcClient.ts';

/** A forwarded call's outcome: the node's result, or its error as it gave it (or ours when it gave none). */
export type ForwardOutcome =
  | { readonly result: unknown }
  | { readonly error: { readonly code: number; readonly message: string; readonly data?: unknown } };

/** Sends clients' calls on to a chain's node (`/rpc`), on a connection of its own. */
export interface Forwarder {
  readonly forward: (method: string, params: readonly unknown[]) => Promise<ForwardOutcome>;
  readonly close: () => void;
}

/** Options of {@link createForwarder}. */
export interface ForwarderOptions {
  /** The endpoint ingest uses now: calls follow it when it fails over. */
  readonly currentUrl: () => string;
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
  /** Calls waiting for the node at once, over every connection; past it they are refused. */
  readonly maxInFlight: number;
  /** Every call and how long it took (metrics). */
  readonly onRequest?: (method: string, url: string, seconds: number, ok: boolean) => void;
}

/** JSON-RPC code of an answer the gateway gives for a node that did not answer. */
const UPSTREAM_FAILED = -32_603;
/** EIP-1474: limit exceeded. */
const LIMIT_EXCEEDED = -32_005;

/**
 * Forwards calls to the chain's node on a client of its own, so that a client's call never
 * counts as a fault of the endpoint ingest follows, and a node's error (a revert) reaches the
 * client as the node gave it.
 */
export function createForwarder(options: ForwarderOptions): Forwarder {
  let client: RpcClient | undefined;
  let inFlight = 0;
  const clientFor = (url: string): RpcClient => {
    if (client === undefined || client.url !== url || client.isClosed()) {
      client?.close();
      client = createRpcClient(url, { timeoutMs: options.timeoutMs, maxResponseBytes: options.maxResponseBytes });
    }
    return client;
  };
  return {
    forward: async (method, params) => {
      if (inFlight >= options.maxInFlight) {
        return {
          error: { code: LIMIT_EXCEEDED, message: 'the gateway has as many requests at the node as it may: try later' },
        };
      }
      inFlight++;
      const url = options.currentUrl();
      const started = performance.now();
      try {
        const result = await clientFor(url).request(method, params);
        options.onRequest?.(method, url, (performance.now() - started) / 1000, true);
        return { result };
      } catch (error) {
        options.onRequest?.(method, url, (performance.now() - started) / 1000, false);
        if (error instanceof RpcFaultError && error.fault === 'node_error' && error.rpcCode !== undefined) {
          return {
            error: {
              code: error.rpcCode,
              message: error.rpcMessage ?? 'error',
              ...(error.rpcData === undefined ? {} : { data: error.rpcData }),
            },
          };
        }
        const fault = error instanceof RpcFaultError ? error.fault : 'transport';
        return { error: { code: UPSTREAM_FAILED, message: `the node did not answer (${fault})` } };
      } finally {
        inFlight--;
      }
    },
    close: () => {
      client?.close();
      client = undefined;
    },
  };
}
