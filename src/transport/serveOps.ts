/**
 * The HTTP routes of a process that serves no subscribers (`--role ingest`): `/metrics`,
 * `/healthz` and `/readyz`, so that operators watch ingest as they watch gateways. Plain
 * `node:http`: a few scrapes a minute need nothing faster.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { GatewayError } from '../domain/errors.ts';
import type { Metrics } from '../metrics/metrics.ts';

/** Options of {@link serveOps}. */
export interface OpsOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly metrics: Metrics;
  /** Why the process is not ready, or `undefined` when it is. */
  readonly ready: () => string | undefined;
}

/** A listening operations server. */
export interface Ops {
  readonly port: number;
  readonly close: () => Promise<void>;
}

/** Listens (exclusively) and answers the operations routes; anything else is 404, any method but GET 405. */
export async function serveOps(options: OpsOptions): Promise<Ops> {
  const server: HttpServer = createHttpServer((req, res) => {
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-cache' }).end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'only GET\n');
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return reply(200, 'ok\n');
    if (path === '/readyz') {
      const unready = options.ready();
      return unready === undefined ? reply(200, 'ready\n') : reply(503, `${unready}\n`);
    }
    if (path === '/metrics') {
      options.metrics.registry.metrics().then(
        (text) => reply(200, text, options.metrics.registry.contentType),
        (error: unknown) => reply(500, `${String(error)}\n`),
      );
      return;
    }
    reply(404, 'not found\n');
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        new GatewayError(
          'BAD_CONFIG',
          error.code === 'EADDRINUSE'
            ? `port: ${options.host}:${options.port} is in use (another gateway or program listens on it): stop it or choose another --port`
            : `port: cannot listen on ${options.host}:${options.port}: ${error.message}`,
        ),
      );
    });
    server.listen({ host: options.host, port: options.port, exclusive: true }, resolve);
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : options.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
