import { FetchRequest, JsonRpcProvider, Network, WebSocketProvider } from 'ethers';
import { WebSocket } from 'ws';
import { errorMessage, GatewayError } from '../domain/errors.ts';

/** An ethers provider for one endpoint: polled over http(s), a socket over ws(s). */
export type Provider = JsonRpcProvider | WebSocketProvider;

// Ingest sends raw JSON-RPC only, so the network object never matters; a static one keeps
// ethers from probing (and retrying forever, with console noise) when a node is down.
const STATIC_NETWORK = Network.from(1);
const PROVIDER_OPTIONS = { staticNetwork: STATIC_NETWORK, batchMaxCount: 1 };

/** Whether an endpoint URL is a WebSocket one (ws, wss). */
export function isWebSocketUrl(url: string): boolean {
  return url.startsWith('ws://') || url.startsWith('wss://');
}

/** An http(s) provider whose requests time out after `timeoutMs`. */
export function httpProvider(url: string, timeoutMs: number): JsonRpcProvider {
  const request = new FetchRequest(url);
  request.timeout = timeoutMs;
  return new JsonRpcProvider(request, STATIC_NETWORK, PROVIDER_OPTIONS);
}

/**
 * A ws(s) provider over a socket this module makes, so that a refused or dropped socket is
 * reported to `onSocket` (for its error and close events) instead of going unhandled.
 */
export function socketProvider(url: string, onSocket: (socket: WebSocket) => void): WebSocketProvider {
  const create = (): WebSocket => {
    const socket = new WebSocket(url);
    onSocket(socket);
    return socket;
  };
  return new WebSocketProvider(create as never, STATIC_NETWORK, PROVIDER_OPTIONS);
}

/** Sends one raw request; rejects with RPC_FAILED once `timeoutMs` passes without an answer. */
export function sendWithTimeout<T>(
  provider: Provider,
  method: string,
  params: unknown[],
  timeoutMs: number,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new GatewayError('RPC_FAILED', `${method} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  return (Promise.race([provider.send(method, params), timeout]) as Promise<T>).finally(() => clearTimeout(timer));
}

/** Whether a node refused a request because it does not offer the method. */
export function isUnsupportedMethod(error: unknown): boolean {
  return /method|not (found|supported|available)|-32601|unsupported/i.test(errorMessage(error));
}
