import { Packr } from 'msgpackr';
import { type ClientOptions, WebSocket } from 'ws';

/** A server message, decoded. */
export type Message = Record<string, unknown> & { type: string };

/** Wire encoding of a test client. */
export type Encoding = 'msgpack' | 'json';

/**
 * A real WebSocket client of protocol v1 for tests: keeps every message it received, waits
 * for one matching a predicate with a bounded timeout, and records how the socket closed.
 */
export class TestClient {
  readonly encoding: Encoding;
  readonly messages: Message[] = [];
  readonly ws: WebSocket;
  #waiters: Array<{ predicate: (m: Message) => boolean; resolve: (m: Message) => void; from: number }> = [];
  #closeWaiters: Array<(c: { code: number; reason: string }) => void> = [];
  closed: { code: number; reason: string } | undefined;

  private constructor(ws: WebSocket, encoding: Encoding) {
    this.ws = ws;
    this.encoding = encoding;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const message = (isBinary ? packr.unpack(data) : JSON.parse(data.toString())) as Message;
      this.messages.push(message);
      const index = this.messages.length - 1;
      this.#waiters = this.#waiters.filter((w) => {
        if (index < w.from || !w.predicate(message)) return true;
        w.resolve(message);
        return false;
      });
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      for (const resolve of this.#closeWaiters) resolve(this.closed);
      this.#closeWaiters = [];
    });
    ws.on('error', () => {
      // Surfaced through `close` and the waits' timeouts.
    });
  }

  /**
   * Connects to `baseUrl` (`ws://HOST:PORT/v1`, perhaps with a query) and waits for `welcome`;
   * `options` go to the `ws` client (headers, a CA).
   */
  static async connect(
    baseUrl: string,
    encoding: Encoding,
    timeoutMs = 10_000,
    options: ClientOptions = {},
  ): Promise<TestClient> {
    const ws = new WebSocket(withEncoding(baseUrl, encoding), options);
    const client = new TestClient(ws, encoding);
    await client.next((m) => m.type === 'welcome', timeoutMs);
    return client;
  }

  /** Sends a message in the client's encoding. */
  send(message: unknown): void {
    this.ws.send(this.encoding === 'json' ? JSON.stringify(message) : encodeMsgpack(message));
  }

  /** Sends raw bytes (binary) or text, as they are. */
  sendRaw(data: Buffer | string, binary: boolean): void {
    this.ws.send(data, { binary });
  }

  /** The first message from index `from` on (default: all so far) that matches, within `timeoutMs`. */
  next(predicate: (m: Message) => boolean, timeoutMs = 10_000, from = 0): Promise<Message> {
    const found = this.messages.slice(from).find(predicate);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = {
        predicate,
        from,
        resolve: (m: Message) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(
          new Error(`no matching message within ${timeoutMs} ms; last: ${JSON.stringify(this.messages.slice(-3))}`),
        );
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** Sends a request with a fresh `id` and waits for the reply carrying that id. */
  async request(message: Record<string, unknown>, timeoutMs = 10_000): Promise<Message> {
    const id = `r${++requestCounter}`;
    const from = this.messages.length;
    this.send({ ...message, id });
    return this.next((m) => m['id'] === id, timeoutMs, from);
  }

  /**
   * Subscribes with `request` (a resume: `from` a cursor) and returns the reply and every message
   * of the new subscription sent before it (its catch-up).
   */
  async resume(request: Record<string, unknown>): Promise<{ reply: Message; before: Message[] }> {
    const from = this.messages.length;
    const reply = await this.request({ op: 'subscribe', ...request });
    const before = this.messages.slice(from, this.messages.indexOf(reply)).filter((m) => m['sub'] === reply['sub']);
    return { reply, before };
  }

  /** Subscribes and returns the `sub` id; throws if the server answered with an error. */
  async subscribe(message: Record<string, unknown>): Promise<string> {
    const reply = await this.request({ op: 'subscribe', ...message });
    if (reply.type !== 'subscribed') throw new Error(`subscribe failed: ${JSON.stringify(reply)}`);
    return reply['sub'] as string;
  }

  /** Resolves when the socket closes (bounded). */
  waitClose(timeoutMs = 10_000): Promise<{ code: number; reason: string }> {
    if (this.closed !== undefined) return Promise.resolve(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs);
      this.#closeWaiters.push((c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
  }

  /** Messages of one subscription and type. */
  of(sub: string, type: string): Message[] {
    return this.messages.filter((m) => m['sub'] === sub && m.type === type);
  }

  close(): void {
    this.ws.close();
  }
}

let requestCounter = 0;

// Standard MessagePack, as PROTOCOL.md asks of clients.
const packr = new Packr({ useRecords: false, variableMapSize: true });

function encodeMsgpack(message: unknown): Buffer {
  return packr.pack(message);
}

/** Outcome of one WebSocket upgrade: the HTTP status (101 when it opened) and, if open, the socket. */
export interface Upgrade {
  readonly status: number;
  readonly ws?: WebSocket;
  /** The first message, when it opened. */
  readonly welcome?: Message;
  /** The refusal's body, when it did not. */
  readonly body?: string;
}

/** `url` with `encoding=json` added to its query when the encoding is JSON. */
export function withEncoding(url: string, encoding: Encoding): string {
  if (encoding !== 'json') return url;
  const parsed = new URL(url);
  parsed.searchParams.set('encoding', 'json');
  return parsed.toString();
}

/**
 * Tries one upgrade to `url` (JSON encoding; bounded); an opened socket is returned open, after its
 * welcome, with the welcome. `options` go to the `ws` client (a CA).
 */
export function tryUpgrade(
  url: string,
  headers: Record<string, string> = {},
  timeoutMs = 10_000,
  options: ClientOptions = {},
): Promise<Upgrade> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(withEncoding(url, 'json'), { ...options, headers });
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no answer to the upgrade within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once('message', (data: Buffer) => {
      clearTimeout(timer);
      resolve({ status: 101, ws, welcome: JSON.parse(data.toString()) as Message });
    });
    ws.on('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      let body = '';
      const done = (): void => {
        resolve({ status: res.statusCode ?? 0, body });
        ws.terminate();
      };
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      // The gateway closes the connection after the body.
      res.once('end', done);
      res.once('close', done);
      res.once('error', done);
    });
    ws.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
