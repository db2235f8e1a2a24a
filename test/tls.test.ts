import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { type WebSocketLike, WebSocketProvider } from 'ethers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ClientOptions, WebSocket } from 'ws';
import {
  type Client,
  createClient,
  type StatusEvent,
  type WebSocketConstructor,
} from '../packages/client/src/index.ts';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { TestClient, tryUpgrade } from './helpers/client.ts';
import { freeFixedPort, type GatewayProcess, runGatewayToExit, startGateway } from './helpers/gateway.ts';

// TLS end to end: certificates made here by openssl, the real gateway serving them through uWS's
// SSLApp, and clients that trust only the certificate the test made.

const KEY = 'tls-test-key-0123456789abcdef';

/** Makes a self-signed P-256 certificate for localhost and 127.0.0.1 with openssl; returns its SHA-256 fingerprint. */
function makeCertificate(certFile: string, keyFile: string): string {
  // Written beside, then renamed over the files the gateway reads: a reload never sees half a file.
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout',
      `${keyFile}.new`,
      '-out',
      `${certFile}.new`,
    ],
    { stdio: 'ignore', timeout: 20_000 },
  );
  renameSync(`${keyFile}.new`, keyFile);
  renameSync(`${certFile}.new`, certFile);
  return new X509Certificate(readFileSync(certFile)).fingerprint256;
}

/** The fingerprint of the certificate the server presents to a new connection, trusting only `ca`. */
function servedFingerprint(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost', timeout: 10_000 }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once('error', reject);
    socket.once('timeout', () => {
      socket.destroy();
      reject(new Error('no TLS handshake within 10 s'));
    });
  });
}

/** `GET` over https, trusting only `ca`: the status and body. */
function httpsGet(url: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.once('error', reject);
    req.once('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.end();
  });
}

/** The `ws` WebSocket, trusting only `ca`: what the SDK is given on Node. */
function trusting(ca: Buffer): WebSocketConstructor {
  return class extends WebSocket {
    constructor(url: string) {
      super(url, { ca } satisfies ClientOptions);
    }
  } as unknown as WebSocketConstructor;
}

describe('tls', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let dir: string;
  let certFile: string;
  let keyFile: string;
  let firstFingerprint: string;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
    dir = mkdtempSync(join(tmpdir(), 'blockcast-tls-'));
    certFile = join(dir, 'tls.crt');
    keyFile = join(dir, 'tls.key');
    firstFingerprint = makeCertificate(certFile, keyFile);
    // A port given, as in production: the old listening socket closes and the new certificate's opens at once.
    gateway = await startGateway(
      ['--rpc', anvil.httpUrl, '--api-key', KEY, '--tls-cert', certFile, '--tls-key', keyFile],
      { port: await freeFixedPort() },
    );
  });

  afterAll(async () => {
    await gateway?.stop();
    await anvil?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('serves wss:// and https:// with the certificate it was given', async () => {
    expect(gateway.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/v1$/);
    const ca = readFileSync(certFile);
    expect(await servedFingerprint(gateway.port, ca)).toBe(firstFingerprint);
    expect(await httpsGet(`${gateway.httpUrl}/healthz`, ca)).toEqual({ status: 200, body: 'ok\n' });
    // Still behind its key: TLS changes nothing of who may connect.
    expect((await tryUpgrade(gateway.url, {}, 10_000, { ca })).status).toBe(401);
    // A client that does not trust the certificate gets no connection.
    await expect(tryUpgrade(`${gateway.url}?key=${KEY}`)).rejects.toThrow(/self-signed|certificate/);
  });

  it('works with ethers over wss:// (/rpc, the key in the path), trusting only the certificate', async () => {
    const ca = readFileSync(certFile);
    const rpcUrl = `${gateway.url.replace(/\/v1$/, '/rpc')}/${KEY}`;
    const provider = new WebSocketProvider(() => new WebSocket(rpcUrl, { ca }) as unknown as WebSocketLike);
    try {
      expect((await provider.getNetwork()).chainId).toBe(31_337n);
      const head = await provider.getBlockNumber();
      const next = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no block event within 15 s')), 15_000);
        void provider.on('block', (n: number) => {
          if (n <= head) return;
          clearTimeout(timer);
          resolve(n);
        });
      });
      expect(next).toBeGreaterThan(head);
      const block = await provider.getBlock(next);
      expect(block?.number).toBe(next);
      expect(await provider.getBalance('0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266')).toBeGreaterThan(0n);
    } finally {
      await provider.destroy();
    }
  });

  it('works with the SDK; a reload on SIGHUP serves the new certificate and keeps open connections', async () => {
    const firstCa = readFileSync(certFile);
    const statuses: StatusEvent[] = [];
    const blocks: number[] = [];
    const client: Client = createClient({
      url: gateway.url,
      apiKey: KEY,
      WebSocket: trusting(firstCa),
      onStatus: (e) => statuses.push(e),
    });
    let onBlock: (() => void) | undefined;
    client.subscribeBlocks({}, (m) => {
      if (m.type !== 'block') return;
      blocks.push(m.number);
      onBlock?.();
    });
    const raw = await TestClient.connect(`${gateway.url}?key=${KEY}`, 'json', 10_000, { ca: firstCa });
    await raw.subscribe({ channel: 'blocks' });
    try {
      const waitForBlocks = (count: number): Promise<void> =>
        new Promise((resolve, reject) => {
          const target = blocks.length + count;
          const timer = setTimeout(() => reject(new Error(`fewer than ${count} blocks in 15 s`)), 15_000);
          onBlock = () => {
            if (blocks.length < target) return;
            clearTimeout(timer);
            onBlock = undefined;
            resolve();
          };
        });
      await waitForBlocks(1);

      const secondFingerprint = makeCertificate(certFile, keyFile);
      expect(secondFingerprint).not.toBe(firstFingerprint);
      gateway.process.kill('SIGHUP');
      await gateway.waitForOutput(new RegExp(`reloaded the certificate \\(sha256 ${secondFingerprint}`));
      const secondCa = readFileSync(certFile);
      expect(await servedFingerprint(gateway.port, secondCa)).toBe(secondFingerprint);
      // A new client that trusts only the new certificate connects.
      const fresh = await TestClient.connect(`${gateway.url}?key=${KEY}`, 'json', 10_000, { ca: secondCa });
      fresh.close();

      // The connections opened before the reload stay open and keep receiving blocks.
      const rawFrom = raw.messages.length;
      await waitForBlocks(2);
      await raw.next((m) => m.type === 'block', 15_000, rawFrom);
      expect(raw.closed).toBeUndefined();
      expect(statuses.map((s) => s.status)).toEqual(['connecting', 'open']);

      // A bad certificate file is refused: the one in use stays.
      writeFileSync(certFile, 'not a certificate');
      gateway.process.kill('SIGHUP');
      await gateway.waitForOutput(/SIGHUP: kept the certificate in use: tlsCert: .* is not a readable PEM certificate/);
      expect(await servedFingerprint(gateway.port, secondCa)).toBe(secondFingerprint);
    } finally {
      client.close();
      raw.close();
    }
  });
});

describe('tls configuration', () => {
  it('reloads on SIGHUP on a port the kernel picked too (the old socket closes first)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'blockcast-tls-any-'));
    const certFile = join(dir, 'tls.crt');
    const keyFile = join(dir, 'tls.key');
    makeCertificate(certFile, keyFile);
    const gateway = await startGateway(['--tls-cert', certFile, '--tls-key', keyFile]);
    try {
      const second = makeCertificate(certFile, keyFile);
      gateway.process.kill('SIGHUP');
      await gateway.waitForOutput(new RegExp(`reloaded the certificate \\(sha256 ${second}`));
      expect(await servedFingerprint(gateway.port, readFileSync(certFile))).toBe(second);
    } finally {
      await gateway.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to start with a key that is not the certificate’s, naming the files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'blockcast-tls-bad-'));
    try {
      makeCertificate(join(dir, 'a.crt'), join(dir, 'a.key'));
      makeCertificate(join(dir, 'b.crt'), join(dir, 'b.key'));
      const result = await runGatewayToExit([
        '--rpc',
        'http://127.0.0.1:9',
        '--tls-cert',
        join(dir, 'a.crt'),
        '--tls-key',
        join(dir, 'b.key'),
      ]);
      expect(result.code).toBe(1);
      expect(result.output).toContain(`BAD_CONFIG: tlsKey: ${join(dir, 'b.key')} is not the key of the certificate`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
