import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayError } from '../domain/errors.ts';
import { claimPort } from './claimPort.ts';

/** A real listener on a free loopback port, and that port. */
function listen(): Promise<{ server: NetServer; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        reject(new Error('no port'));
        return;
      }
      resolve({ server, port: address.port });
    });
  });
}

function close(server: NetServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('claimPort', () => {
  const servers: NetServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map(close));
  });

  it('resolves on a free port and leaves it free', async () => {
    const { server, port } = await listen();
    await close(server);
    await claimPort('127.0.0.1', port);
    // The probe closed its socket: the port can be taken again at once.
    await claimPort('127.0.0.1', port);
  });

  it('rejects a port another program listens on with BAD_CONFIG saying what to do', async () => {
    const { server, port } = await listen();
    servers.push(server);
    const error = await claimPort('127.0.0.1', port).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).code).toBe('BAD_CONFIG');
    expect((error as GatewayError).message).toBe(
      `port: 127.0.0.1:${port} is in use (another gateway or program listens on it): stop it, choose another --port, or run several gateways on one port with --redis and --workers N`,
    );
  });

  it('finds a listener on every address when asked for one address', async () => {
    const { server, port } = await listen();
    servers.push(server);
    await expect(claimPort('0.0.0.0', port)).rejects.toThrow(`port: 0.0.0.0:${port} is in use`);
  });

  it('names a host that is not an address of this machine', async () => {
    // 192.0.2.0/24 is TEST-NET-1: never an address of a test machine.
    await expect(claimPort('192.0.2.1', 0)).rejects.toThrow('host: 192.0.2.1 is not an address of this machine');
  });
});
