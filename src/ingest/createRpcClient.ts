import { type RawData, WebSocket } from 'ws';
import { RpcFaultError } from '../domain/errors.ts';
import { excerpt } from './excerpt.ts';

/** Options of {@link createRpcClient}. */
export interface RpcClientOptions {
  /** Timeout of one request, in ms: connecting, sending and reading the whole answer. @default 10000 */
  readonly timeoutMs?: number;
  /** Largest answer read, in bytes; a larger one is refused with fault `too_large`. @default 134217728 */
  readonly maxResponseBytes?: number;
  /** ws: a fault not tied to a request (a message that is not JSON, or not JSON-RPC). Never throws into the socket. */
  readonly onFault?: (fault: RpcFaultError) => void;
  /** ws: the socket closed by itself (the node, the link or an oversized message), not by `close()`. */
  readonly onClose?: (fault: RpcFaultError) => void;
}

interface RpcClientBase {
  /** The endpoint, as configured (it may carry credentials: never log it). */
  readonly url: string;
  /**
   * Sends one request and resolves with its `result`, unchecked: the caller validates its shape.
   * Rejects with an {@link RpcFaultError}: `timeout`, `transport`, `http_status`, `too_large`,
   * `invalid_json`, `bad_response` or `node_error` (with the node's code and message).
   */
  request(method: string, params: readonly unknown[]): Promise<unknown>;
  /** Whether `close()` was called or (ws) the socket is gone: every request now fails with `transport`. */
  isClosed(): boolean;
  /** Rejects every request in flight with fault `transport` and drops the connection. */
  close(): void;
}

/** A client over http(s): one POST per request. */
export interface HttpRpcClient extends RpcClientBase {
  readonly transport: 'http';
}

/** A client over ws(s): one socket, requests matched by id, subscriptions routed by id. */
export interface WsRpcClient extends RpcClientBase {
  readonly transport: 'ws';
  /**
   * Sends `eth_subscribe` with `params` and resolves with the subscription id; from the answer
   * on, each `eth_subscription` notification of that id calls `onNotification` with its `result`
   * (notifications of other ids are dropped).
   */
  subscribe(params: readonly unknown[], onNotification: (result: unknown) => void): Promise<string>;
}

/** A JSON-RPC client of one endpoint (see {@link createRpcClient}). */
export type RpcClient = HttpRpcClient | WsRpcClient;

const DEFAULTS = { timeoutMs: 10_000, maxResponseBytes: 134_217_728 } as const;

/** Whether an endpoint URL is a WebSocket one (ws, wss). */
export function isWebSocketUrl(url: string): boolean {
  return url.startsWith('ws://') || url.startsWith('wss://');
}

/**
 * A JSON-RPC client of one endpoint: over http(s) with `fetch`, over ws(s) with one socket.
 * Every request has a timeout; an answer is read in time linear in its size and refused past
 * `maxResponseBytes` (reading stops there); whatever the node sends, a fault is an
 * {@link RpcFaultError} with its reason, never an exception in an event handler.
 */
export function createRpcClient(url: string, options: RpcClientOptions = {}): RpcClient {
  const timeoutMs = options.timeoutMs ?? DEFAULTS.timeoutMs;
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULTS.maxResponseBytes;
  if (!(timeoutMs > 0)) throw new TypeError(`timeoutMs must be positive, got ${timeoutMs}`);
  if (!(maxResponseBytes > 0)) throw new TypeError(`maxResponseBytes must be positive, got ${maxResponseBytes}`);
  if (isWebSocketUrl(url)) return createWsClient(url, timeoutMs, maxResponseBytes, options);
  if (url.startsWith('http://') || url.startsWith('https://')) {
    return createHttpClient(url, timeoutMs, maxResponseBytes);
  }
  throw new TypeError('an RPC URL must be http, https, ws or wss');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Characters of a node error's `data` kept (revert data of about 64 KB). */
const MAX_ERROR_DATA_CHARS = 131_072;

/** The fault of a JSON-RPC error object, or `undefined` when it is not one. */
function nodeError(error: unknown, method: string): RpcFaultError | undefined {
  if (!isObject(error) || !Number.isInteger(error['code']) || typeof error['message'] !== 'string') return undefined;
  const code = error['code'] as number;
  const message = excerpt(error['message'], 160);
  // Revert data and the like, passed on by /rpc: hex or short text only, never a large structure.
  const data = error['data'];
  const keptData =
    (typeof data === 'string' && data.length <= MAX_ERROR_DATA_CHARS) || typeof data === 'number' ? data : undefined;
  return new RpcFaultError('node_error', `${method}: the node answered error ${code}: ${message}`, {
    method,
    rpcCode: code,
    rpcMessage: typeof error['message'] === 'string' ? error['message'].slice(0, 1000) : message,
    ...(keptData === undefined ? {} : { rpcData: keptData }),
  });
}

/** The `result` of an answer to request `id`; throws `bad_response` or `node_error`. */
function readAnswer(answer: unknown, id: number, method: string): unknown {
  if (!isObject(answer)) {
    throw new RpcFaultError('bad_response', `${method}: the answer is not a JSON-RPC object`, { method });
  }
  if (answer['id'] !== id) {
    throw new RpcFaultError('bad_response', `${method}: the answer has id ${excerpt(answer['id'], 40)}, not ${id}`, {
      method,
    });
  }
  if (answer['error'] !== undefined && answer['error'] !== null) {
    throw (
      nodeError(answer['error'], method) ??
      new RpcFaultError('bad_response', `${method}: the answer has an error that is not a JSON-RPC error object`, {
        method,
      })
    );
  }
  if (!('result' in answer)) {
    throw new RpcFaultError('bad_response', `${method}: the answer has neither result nor error`, { method });
  }
  return answer['result'];
}

function parseJson(text: string, method: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new RpcFaultError(
      'invalid_json',
      `${method}: the answer is not JSON (${text.length} characters: "${excerpt(text, 40)}")`,
      { method },
    );
  }
}

function tooLarge(method: string, bytes: number, max: number): RpcFaultError {
  return new RpcFaultError('too_large', `${method}: the answer passed ${bytes} bytes, over the cap of ${max}`, {
    method,
  });
}

function createHttpClient(url: string, timeoutMs: number, maxResponseBytes: number): HttpRpcClient {
  // fetch refuses URLs with credentials: they become an Authorization header.
  const target = new URL(url);
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (target.username !== '' || target.password !== '') {
    const credentials = `${decodeURIComponent(target.username)}:${decodeURIComponent(target.password)}`;
    headers['authorization'] = `Basic ${Buffer.from(credentials).toString('base64')}`;
    target.username = '';
    target.password = '';
  }
  const endpoint = target.toString();
  const inFlight = new Set<AbortController>();
  let closed = false;
  let nextId = 0;

  /** The body as text, read chunk by chunk and decoded once; stops at the cap. */
  async function readBody(response: Response, method: string, controller: AbortController): Promise<string> {
    const declared = Number(response.headers.get('content-length') ?? Number.NaN);
    if (declared > maxResponseBytes) {
      controller.abort();
      throw tooLarge(method, declared, maxResponseBytes);
    }
    if (response.body === null) return '';
    const reader = response.body.getReader();
    // With a declared length, each chunk is copied into place as it arrives (and freed); without
    // one, the chunks are joined once at the end. Either way every byte is copied once.
    let joined = Number.isSafeInteger(declared) && declared >= 0 ? Buffer.allocUnsafe(declared) : undefined;
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (total + value.byteLength > maxResponseBytes) {
        controller.abort();
        throw tooLarge(method, total + value.byteLength, maxResponseBytes);
      }
      if (joined !== undefined && total + value.byteLength <= joined.length) joined.set(value, total);
      else {
        // More than declared (or no declaration): from here on, collect.
        if (joined !== undefined) chunks.push(joined.subarray(0, total));
        joined = undefined;
        chunks.push(value);
      }
      total += value.byteLength;
    }
    const body = joined === undefined ? Buffer.concat(chunks, total) : joined.subarray(0, total);
    return body.toString('utf8');
  }

  async function request(method: string, params: readonly unknown[]): Promise<unknown> {
    if (closed) throw new RpcFaultError('transport', `${method}: the client is closed`, { method });
    const id = ++nextId;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    inFlight.add(controller);
    try {
      const response = await fetch(endpoint, {
        method: 'POST',
        headers,
        body: JSON.stringify({ jsonrpc: '2.0', id, method, params }),
        signal: controller.signal,
      });
      const text = await readBody(response, method, controller);
      if (!response.ok) {
        // Some nodes send their JSON-RPC error with a 4xx or 5xx status: it is still the node's answer.
        let answer: unknown;
        try {
          answer = JSON.parse(text);
        } catch {
          answer = undefined;
        }
        const fromNode = isObject(answer) && answer['id'] === id ? nodeError(answer['error'], method) : undefined;
        if (fromNode !== undefined) throw fromNode;
        throw new RpcFaultError(
          'http_status',
          `${method}: HTTP ${response.status} ${excerpt(response.statusText, 40)}`,
          {
            method,
          },
        );
      }
      return readAnswer(parseJson(text, method), id, method);
    } catch (error) {
      if (error instanceof RpcFaultError) throw error;
      if (timedOut) {
        throw new RpcFaultError('timeout', `${method}: no whole answer within ${timeoutMs} ms`, { method });
      }
      if (closed) throw new RpcFaultError('transport', `${method}: the client was closed`, { method });
      throw new RpcFaultError('transport', `${method}: ${linkError(error)}`, { method, cause: error });
    } finally {
      clearTimeout(timer);
      inFlight.delete(controller);
    }
  }

  return {
    transport: 'http',
    url,
    request,
    isClosed: () => closed,
    close: () => {
      closed = true;
      for (const controller of inFlight) controller.abort();
      inFlight.clear();
    },
  };
}

/** What went wrong on the link, from fetch's error and its cause (ECONNREFUSED, ...). */
function linkError(error: unknown): string {
  const cause = error instanceof Error ? (error.cause as { code?: unknown; message?: unknown } | undefined) : undefined;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : '';
  const message = error instanceof Error ? error.message : String(error);
  return excerpt(detail === '' ? message : `${message} (${detail})`);
}

interface PendingRequest {
  readonly method: string;
  readonly timer: NodeJS.Timeout;
  readonly resolve: (result: unknown) => void;
  readonly reject: (error: RpcFaultError) => void;
  /** Runs in the same turn as the answer arrives, before any later message is handled. */
  readonly onResult?: (result: unknown) => void;
}

function createWsClient(
  url: string,
  timeoutMs: number,
  maxResponseBytes: number,
  options: RpcClientOptions,
): WsRpcClient {
  const socket = new WebSocket(url, { maxPayload: maxResponseBytes, handshakeTimeout: timeoutMs });
  const pending = new Map<number, PendingRequest>();
  const subscriptions = new Map<string, (result: unknown) => void>();
  const queued: string[] = [];
  let nextId = 0;
  let closedByUs = false;
  /** Why the socket is gone; set once. */
  let gone: { fault: 'transport' | 'too_large'; reason: string } | undefined;
  let socketError: (Error & { code?: string }) | undefined;
  /** Whether this side wrote to the socket since the last message arrived (the write carried its ACK). */
  let sentSinceMessage = false;
  let acknowledgeScheduled = false;

  /**
   * Acknowledges at once what the node sent, when nothing else is about to be written. A node
   * that leaves Nagle's algorithm on (anvil sets no TCP_NODELAY) holds a small message, such as
   * the next `newHeads` notification, while its last one is unacknowledged; and this side's
   * kernel, seeing requests answered, delays the ACK of an answer it does not reply to by up to
   * 40 ms. So a notification that follows the last answer of a round by less than that waits
   * for the delayed ACK (bench/ingestLatency.ts, blocks a few ms apart on anvil: 35 ms from
   * mining to the subscriber's frame, 5 ms with this). An unsolicited
   * pong (RFC 6455 §5.5.3: no reply expected; 6 bytes) carries the ACK instead. It is sent only
   * after the handlers of the message have run (their requests carry the ACK themselves), at
   * most once per turn of the event loop.
   */
  function acknowledgeWhenIdle(): void {
    sentSinceMessage = false;
    if (acknowledgeScheduled) return;
    acknowledgeScheduled = true;
    setImmediate(() => {
      acknowledgeScheduled = false;
      if (sentSinceMessage || socket.readyState !== WebSocket.OPEN) return;
      socket.pong();
    });
  }

  const report = (fault: RpcFaultError): void => {
    try {
      options.onFault?.(fault);
    } catch {
      // A listener's mistake must not become an exception in the socket's event handler.
    }
  };

  /** The fault of a request (or, without `method`, of the socket) once the socket is gone. */
  const goneFault = (method?: string): RpcFaultError => {
    const reason = gone?.reason ?? 'the socket is closed';
    return new RpcFaultError(
      gone?.fault ?? 'transport',
      method === undefined ? reason : `${method}: ${reason}`,
      method === undefined ? {} : { method },
    );
  };

  function failAll(): void {
    for (const [id, entry] of pending) {
      clearTimeout(entry.timer);
      pending.delete(id);
      entry.reject(goneFault(entry.method));
    }
    subscriptions.clear();
    queued.length = 0;
  }

  socket.on('open', () => {
    for (const text of queued) socket.send(text);
    queued.length = 0;
  });
  socket.on('error', (error: Error & { code?: string }) => {
    // Always followed by 'close', which fails what is pending.
    socketError = error;
  });
  socket.on('close', (code: number) => {
    if (gone === undefined) {
      gone =
        code === 1009 || socketError?.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
          ? {
              fault: 'too_large',
              reason: `a message passed the cap of ${maxResponseBytes} bytes (socket closed, 1009)`,
            }
          : {
              fault: 'transport',
              reason: `the socket closed (${code}${socketError === undefined ? '' : `, ${excerpt(socketError.message, 80)}`})`,
            };
    }
    failAll();
    if (!closedByUs) {
      try {
        options.onClose?.(goneFault());
      } catch {
        // As in report().
      }
    }
  });
  socket.on('message', (data: RawData) => {
    acknowledgeWhenIdle();
    // One decode of the whole message (ws has already joined its fragments, once).
    const bytes = Array.isArray(data)
      ? Buffer.concat(data)
      : Buffer.isBuffer(data)
        ? data
        : Buffer.from(data as ArrayBuffer);
    const text = bytes.toString('utf8');
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      report(
        new RpcFaultError(
          'invalid_json',
          `a message that is not JSON (${text.length} characters: "${excerpt(text, 40)}")`,
        ),
      );
      return;
    }
    if (!isObject(message)) {
      report(new RpcFaultError('bad_response', 'a message that is not a JSON-RPC object'));
      return;
    }
    if (message['method'] === 'eth_subscription') {
      const params = message['params'];
      if (!isObject(params) || typeof params['subscription'] !== 'string' || !('result' in params)) {
        report(new RpcFaultError('bad_response', 'a notification without subscription id or result'));
        return;
      }
      // Unknown ids (a subscription of an earlier session, or one never made) are dropped, never kept.
      const handler = subscriptions.get(params['subscription']);
      if (handler === undefined) return;
      try {
        handler(params['result']);
      } catch (error) {
        report(
          new RpcFaultError(
            'malformed',
            `eth_subscription: ${error instanceof Error ? error.message : String(error)}`,
            {
              method: 'eth_subscription',
            },
          ),
        );
      }
      return;
    }
    const id = message['id'];
    if (typeof id !== 'number') {
      report(new RpcFaultError('bad_response', 'a message that is neither an answer nor a notification'));
      return;
    }
    const entry = pending.get(id);
    // An answer to a request that timed out (or never was) is dropped.
    if (entry === undefined) return;
    pending.delete(id);
    clearTimeout(entry.timer);
    let result: unknown;
    try {
      result = readAnswer(message, id, entry.method);
    } catch (error) {
      entry.reject(error as RpcFaultError);
      return;
    }
    entry.onResult?.(result);
    entry.resolve(result);
  });

  function send(method: string, params: readonly unknown[], onResult?: (result: unknown) => void): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (closedByUs || gone !== undefined) {
        reject(
          closedByUs
            ? new RpcFaultError('transport', `${method}: the client is closed`, { method })
            : goneFault(method),
        );
        return;
      }
      const id = ++nextId;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new RpcFaultError('timeout', `${method}: no answer within ${timeoutMs} ms`, { method }));
      }, timeoutMs);
      pending.set(id, { method, timer, resolve, reject, ...(onResult === undefined ? {} : { onResult }) });
      const text = JSON.stringify({ jsonrpc: '2.0', id, method, params });
      if (socket.readyState === WebSocket.OPEN) {
        sentSinceMessage = true;
        socket.send(text);
      } else queued.push(text);
    });
  }

  return {
    transport: 'ws',
    url,
    request: (method, params) => send(method, params),
    subscribe: async (params, onNotification) => {
      const id = await send('eth_subscribe', params, (result) => {
        // Registered before any later message is read, so no notification of it is missed.
        if (typeof result === 'string') subscriptions.set(result, onNotification);
      });
      if (typeof id !== 'string') {
        throw new RpcFaultError('malformed', 'eth_subscribe: the subscription id is not a string', {
          method: 'eth_subscribe',
        });
      }
      return id;
    },
    isClosed: () => closedByUs || gone !== undefined,
    close: () => {
      if (closedByUs) return;
      closedByUs = true;
      gone ??= { fault: 'transport', reason: 'the client was closed' };
      failAll();
      socket.terminate();
    },
  };
}
