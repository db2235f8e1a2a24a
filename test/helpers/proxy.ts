import { createServer, type Server, type Socket } from 'node:net';

/**
 * A loopback TCP proxy in front of a node, to make it go away and come back: `cut()` drops
 * every connection and refuses new ones, `stall()` accepts but forwards nothing (a half-dead
 * link), `restore()` forwards again on the same port.
 */
export class TcpProxy {
  readonly port: number;
  readonly #targetPort: number;
  #server: Server;
  readonly #sockets = new Set<Socket>();
  #stalled = false;

  private constructor(server: Server, port: number, targetPort: number) {
    this.#server = server;
    this.port = port;
    this.#targetPort = targetPort;
  }

  /** Starts a proxy on a free loopback port forwarding to `targetPort`. */
  static async start(targetPort: number, port = 0): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => proxy?.accept(client));
    const listening = await listen(server, port);
    proxy = new TcpProxy(server, listening, targetPort);
    return proxy;
  }

  get httpUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  accept(client: Socket): void {
    this.#sockets.add(client);
    client.on('close', () => this.#sockets.delete(client));
    client.on('error', () => client.destroy());
    if (this.#stalled) return;
    const upstream = new (client.constructor as typeof Socket)();
    this.#sockets.add(upstream);
    upstream.on('close', () => {
      this.#sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    upstream.connect(this.#targetPort, '127.0.0.1', () => {
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  #dropAll(): void {
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
  }

  /** Drops every connection and stops listening: new connections are refused. */
  async cut(): Promise<void> {
    this.#dropAll();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Drops every connection; new ones are accepted but nothing is forwarded. */
  stall(): void {
    this.#stalled = true;
    this.#dropAll();
  }

  /** Forwards again, on the same port. */
  async restore(): Promise<void> {
    this.#stalled = false;
    if (!this.#server.listening) {
      const server = createServer((client) => this.accept(client));
      await listen(server, this.port);
      this.#server = server;
    }
  }

  async close(): Promise<void> {
    this.#dropAll();
    if (this.#server.listening) await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}
