import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { SubscriptionIndex } from '../src/index/SubscriptionIndex.ts';
import { createMetrics } from '../src/metrics/metrics.ts';
import { checkTls, type TlsFiles } from '../src/transport/checkTls.ts';
import { type Connection, createServer, type Server } from '../src/transport/createServer.ts';
import { TestClient, tryUpgrade } from './helpers/client.ts';
import { freeFixedPort, type GatewayProcess, runGatewayToExit, startGateway } from './helpers/gateway.ts';

// A gateway's port is its own: a second gateway (or any program) already on it makes the start
// fail with a message saying so, instead of the kernel splitting new connections between two
// processes (SO_REUSEPORT) that may follow different chains.

/** What a gateway says when the port it was given is taken. */
function inUse(port: number): string {
  return `port: 127.0.0.1:${port} is in use (another gateway or program listens on it): stop it, choose another --port, or run several gateways on one port with --redis and --workers N`;
}

/** A plain Node `net` server on a free loopback port, and that port. */
function plainListener(): Promise<{ server: NetServer; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createNetServer((socket) => socket.destroy());
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('the listener has no port'));
      else resolve({ server, port: address.port });
    });
  });
}

/** Subscribes a new client to blocks and waits (bounded) for one. */
async function receivesABlock(url: string): Promise<void> {
  const client = await TestClient.connect(url, 'json');
  try {
    await client.subscribe({ channel: 'blocks' });
    await client.next((m) => m.type === 'block', 15_000);
  } finally {
    client.close();
  }
}

describe('port', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
    gateway = await startGateway(['--rpc', anvil.httpUrl], { port: await freeFixedPort() });
  });

  afterAll(async () => {
    await gateway?.stop();
    await anvil?.close();
  });

  it('a second gateway on the same port exits with a message saying it is in use; the first keeps serving', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    try {
      await client.subscribe({ channel: 'blocks' });
      await client.next((m) => m.type === 'block', 15_000);

      const startedAt = performance.now();
      const second = await runGatewayToExit([
        '--host',
        '127.0.0.1',
        '--port',
        String(gateway.port),
        '--rpc',
        anvil.httpUrl,
      ]);
      // runGatewayToExit kills it after 20 s: it must have ended by itself well before.
      expect(performance.now() - startedAt).toBeLessThan(20_000);
      expect(second.code).toBe(1);
      expect(second.output).toContain(`BAD_CONFIG: ${inUse(gateway.port)}`);

      // The first keeps its connections and its port: every new connection reaches it.
      const from = client.messages.length;
      await client.next((m) => m.type === 'block', 15_000, from);
      expect(client.closed).toBeUndefined();
      for (let i = 0; i < 3; i++) await receivesABlock(gateway.url);
    } finally {
      client.close();
    }
  });

  it('refuses a port that another program listens on, saying so', async () => {
    const { server, port } = await plainListener();
    try {
      const result = await runGatewayToExit(['--host', '127.0.0.1', '--port', String(port), '--rpc', anvil.httpUrl]);
      expect(result.code).toBe(1);
      expect(result.output).toContain(`BAD_CONFIG: ${inUse(port)}`);
      expect(result.output).not.toMatch(/listening on ws:\/\//);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

/** The gateway's server alone, in this process, on `port` (no chain behind it). */
function serverOn(port: number, sharedPort: boolean, tls?: TlsFiles): Promise<Server> {
  return createServer({
    host: '127.0.0.1',
    port,
    ...(sharedPort ? { sharedPort } : {}),
    ...(tls === undefined ? {} : { tls }),
    idleTimeoutSec: 120,
    maxConfirmations: 64,
    limits: {
      maxAddresses: 100,
      maxSubscriptions: 10,
      maxMessageBytes: 65_536,
      maxBackpressureBytes: 262_144,
      maxRequestsPerSecond: 100,
      maxConnectionsPerIp: 0,
    },
    capacity: { maxConnections: 100, maxWatchedAddresses: 100 },
    index: new SubscriptionIndex<Connection>(),
    metrics: createMetrics(),
    chains: {
      chainIds: () => [31_337],
      head: () => undefined,
      unready: () => undefined,
      resume: (_sub, _cursor, _maxBytes, onDone) => {
        onDone(false);
        return { status: 'done', cancel: () => undefined };
      },
      release: () => undefined,
      features: () => ({ finality: undefined, internal: undefined }),
      retryAfterMs: () => 1000,
      position: () => undefined,
    },
  });
}

describe('createServer sharedPort', () => {
  const servers: Server[] = [];
  afterAll(() => {
    for (const server of servers.splice(0)) server.close();
  });

  it('lets servers that all ask for it share a port, and refuses one that does not', async () => {
    const port = await freeFixedPort();
    servers.push(await serverOn(port, true));
    servers.push(await serverOn(port, true));
    await expect(serverOn(port, false)).rejects.toThrow(inUse(port));
    expect((await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(5000) })).status).toBe(200);
  });

  it('refuses to share a port that a server holds alone', async () => {
    const port = await freeFixedPort();
    servers.push(await serverOn(port, false));
    await expect(serverOn(port, true)).rejects.toThrow(inUse(port));
    await expect(serverOn(port, false)).rejects.toMatchObject({ code: 'BAD_CONFIG' });
  });
});

/** A new self-signed certificate for 127.0.0.1 in `dir` (openssl), checked as the gateway checks it. */
function makeCertificate(dir: string, name: string): TlsFiles {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'],
      ...['-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile],
    ],
    { stdio: 'ignore', timeout: 20_000 },
  );
  return checkTls(certFile, keyFile);
}

describe('createServer certificate reload', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'blockcast-port-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ['a port the kernel picked', false, false],
    ['a port of its own', true, false],
    ['a shared port', true, true],
  ])('serves the new certificate on %s and keeps the connections open', async (_where, fixed, shared) => {
    const first = makeCertificate(dir, `first-${String(fixed)}-${String(shared)}`);
    const server = await serverOn(fixed ? await freeFixedPort() : 0, shared, first);
    const url = `wss://127.0.0.1:${server.port}/v1`;
    const clients: TestClient[] = [];
    try {
      const before = await TestClient.connect(url, 'json', 10_000, { ca: readFileSync(first.certFile) });
      clients.push(before);
      const second = makeCertificate(dir, `second-${String(fixed)}-${String(shared)}`);
      await server.reloadTls(second);
      // Only the new certificate is served to new connections.
      const after = await TestClient.connect(url, 'json', 10_000, { ca: readFileSync(second.certFile) });
      clients.push(after);
      await expect(tryUpgrade(url, {}, 10_000, { ca: readFileSync(first.certFile) })).rejects.toThrow(/certificate/);
      // The connection from before the reload still answers.
      await before.subscribe({ channel: 'blocks' });
      expect(before.closed).toBeUndefined();
      // And the port is still this server's alone unless shared.
      if (!shared) await expect(serverOn(server.port, false)).rejects.toThrow(inUse(server.port));
    } finally {
      for (const client of clients) client.close();
      server.close();
    }
  });
});
