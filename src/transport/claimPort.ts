import { createServer as createNetServer } from 'node:net';
import { GatewayError } from '../domain/errors.ts';

/** `host:port` as a person types it (an IPv6 host in brackets). */
function endpoint(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The error of a port another process listens on: what happened and what to do. A second
 * gateway must not share a port by accident (the kernel would split new connections between
 * them); sharing is for `--workers N`, on purpose.
 */
export function portInUseError(host: string, port: number, cause?: unknown): GatewayError {
  return new GatewayError(
    'BAD_CONFIG',
    `port: ${endpoint(host, port)} is in use (another gateway or program listens on it): stop it, choose another --port, or run several gateways on one port with --redis and --workers N`,
    cause === undefined ? undefined : { cause },
  );
}

/** Why `host:port` cannot be listened on, from the code of Node's listen error. */
function listenError(host: string, port: number, error: NodeJS.ErrnoException): GatewayError {
  switch (error.code) {
    case 'EADDRINUSE':
      return portInUseError(host, port, error);
    case 'EACCES':
      return new GatewayError(
        'BAD_CONFIG',
        `port: not allowed to listen on ${endpoint(host, port)} (ports below 1024 need privileges): choose --port 1024 or above, or grant CAP_NET_BIND_SERVICE`,
        { cause: error },
      );
    case 'EADDRNOTAVAIL':
      return new GatewayError(
        'BAD_CONFIG',
        `host: ${host} is not an address of this machine: give --host one of its addresses, 127.0.0.1 or 0.0.0.0`,
        { cause: error },
      );
    default:
      return new GatewayError('BAD_CONFIG', `port: cannot listen on ${endpoint(host, port)}: ${error.message}`, {
        cause: error,
      });
  }
}

/**
 * Makes sure `host:port` is free: binds it with Node's `net` (without SO_REUSEPORT, so any
 * listener there is found, a gateway's or another program's), closes it and resolves. A
 * supervisor calls it before it starts workers that share the port with SO_REUSEPORT, which
 * would otherwise join a gateway already there. Rejects with a {@link GatewayError}
 * (`BAD_CONFIG`) saying what is wrong and what to do (`is in use` when another process listens).
 */
export function claimPort(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', (error: NodeJS.ErrnoException) => reject(listenError(host, port, error)));
    probe.listen({ host, port, exclusive: true }, () => {
      probe.close(() => resolve());
    });
  });
}
