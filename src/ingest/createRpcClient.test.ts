import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type WebSocket, WebSocketServer } from 'ws';
import { FakeChain, FakeNode } from '../../test/helpers/fakeNode.ts';
import { RpcFaultError } from '../domain/errors.ts';
import { isMethodUnsupported } from './Capabilities.ts';
import { createRpcClient, type RpcClient, type WsRpcClient } from './createRpcClient.ts';

/** The fault a promise rejects with; fails the test when it resolves. */
async function faultOf(promise: Promise<unknown>): Promise<RpcFaultError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof RpcFaultError) return error;
    throw error;
  }
  throw new Error('resolved instead of failing');
}

describe('createRpcClient', () => {
  let chain: FakeChain;
  let node: FakeNode;
  const clients: RpcClient[] = [];

  beforeAll(async () => {
    chain = new FakeChain({ chainId: 1337, height: 5 });
    node = await FakeNode.start(chain);
  });

  afterEach(() => {
    node.clear();
    for (const client of clients.splice(0)) client.close();
  });

  afterAll(async () => {
    await node?.close();
  });

  function client(url: string, options: Parameters<typeof createRpcClient>[1] = {}): RpcClient {
    const made = createRpcClient(url, { timeoutMs: 2000, ...options });
    clients.push(made);
    return made;
  }

  it('refuses impossible options at construction', () => {
    expect(() => createRpcClient('ftp://127.0.0.1', {})).toThrow(TypeError);
    expect(() => createRpcClient(node.url, { timeoutMs: 0 })).toThrow(TypeError);
    expect(() => createRpcClient(node.url, { maxResponseBytes: -1 })).toThrow(TypeError);
  });

  describe.each(['http', 'ws'] as const)('over %s', (transport) => {
    const url = (): string => (transport === 'http' ? node.url : node.wsUrl);

    it('resolves with the result of each request', async () => {
      const c = client(url());
      const [id, head] = await Promise.all([
        c.request('eth_chainId', []),
        c.request('eth_getBlockByNumber', ['latest', false]),
      ]);
      expect(id).toBe('0x539');
      expect(head).toMatchObject({ number: '0x5', hash: chain.head.hash });
    });

    it('rejects with node_error, the code and message of the node', async () => {
      node.inject({ method: 'eth_chainId', fault: { kind: 'error', code: -32000, message: 'header not found' } });
      const fault = await faultOf(client(url()).request('eth_chainId', []));
      expect(fault).toMatchObject({ fault: 'node_error', rpcCode: -32000, rpcMessage: 'header not found' });
      expect(isMethodUnsupported(fault)).toBe(false);
      const missing = await faultOf(client(url()).request('eth_noSuchMethod', []));
      expect(missing).toMatchObject({ fault: 'node_error', rpcCode: -32601 });
      expect(isMethodUnsupported(missing)).toBe(true);
    });

    it('rejects an answer with another id as bad_response', async () => {
      node.inject({ method: 'eth_chainId', fault: { kind: 'badEnvelope' } });
      const c = client(url(), { timeoutMs: 500 });
      const fault = await faultOf(c.request('eth_chainId', []));
      // Over ws an answer with an unknown id is not the request's: the request times out.
      expect(fault.fault).toBe(transport === 'http' ? 'bad_response' : 'timeout');
    });

    it('times out a request the node does not answer in time', async () => {
      node.inject({ method: 'eth_chainId', fault: { kind: 'delay', ms: 5000 } });
      const started = performance.now();
      const fault = await faultOf(client(url(), { timeoutMs: 300 }).request('eth_chainId', []));
      expect(fault.fault).toBe('timeout');
      expect(performance.now() - started).toBeLessThan(2000);
    });

    it('refuses an answer past the cap with too_large', async () => {
      node.inject({ method: 'eth_chainId', fault: { kind: 'oversize', bytes: 1_000_000 } });
      const fault = await faultOf(client(url(), { maxResponseBytes: 65_536 }).request('eth_chainId', []));
      expect(fault.fault).toBe('too_large');
    });

    it('rejects what is in flight with transport when closed, never as an unsupported method', async () => {
      node.inject({ method: 'eth_chainId', fault: { kind: 'delay', ms: 5000 } });
      const c = client(url());
      const before = node.calls('eth_chainId');
      const pending = c.request('eth_chainId', []);
      await node.waitForCalls('eth_chainId', before + 1);
      c.close();
      const fault = await faultOf(pending);
      expect(fault.fault).toBe('transport');
      expect(isMethodUnsupported(fault)).toBe(false);
      expect((await faultOf(c.request('eth_chainId', []))).fault).toBe('transport');
    });

    it('rejects with transport when the node drops the connection', async () => {
      node.inject({ method: 'eth_chainId', fault: { kind: 'hangUp' } });
      const fault = await faultOf(client(url()).request('eth_chainId', []));
      expect(fault.fault).toBe('transport');
    });

    it('reads a block of 100,000 transactions (68 MB) within the request timeout', async () => {
      const big = new FakeChain({ chainId: 1337, height: 0 });
      const bigNode = await FakeNode.start(big);
      try {
        const block = big.mine(1, { txCount: 100_000 });
        // Rendered before the clock starts: the node's own JSON encoding is not under test.
        const bytes = big.fullBlockBytes(block).length;
        const c = client(transport === 'http' ? bigNode.url : bigNode.wsUrl, { timeoutMs: 10_000 });
        const started = performance.now();
        const result = (await c.request('eth_getBlockByNumber', ['0x1', true])) as { transactions: unknown[] };
        const seconds = (performance.now() - started) / 1000;
        expect(result.transactions).toHaveLength(100_000);
        console.log(`${transport}: ${(bytes / 1e6).toFixed(1)} MB block read in ${seconds.toFixed(2)} s`);
        // Read in linear time: copied once, decoded once (the quadratic copy of old took minutes).
        expect(seconds).toBeLessThan(10);
      } finally {
        await bigNode.close();
      }
    });
  });

  describe('over http', () => {
    it('rejects an HTTP error status with http_status', async () => {
      node.inject({ method: 'eth_chainId', fault: { kind: 'status', status: 500 } });
      expect((await faultOf(client(node.url).request('eth_chainId', []))).fault).toBe('http_status');
    });

    it('takes a JSON-RPC error sent with an error status as the node’s error', async () => {
      const server = createServer((req, res) => {
        let body = '';
        req.on('data', (c: Buffer) => {
          body += c.toString();
        });
        req.on('end', () => {
          const { id } = JSON.parse(body) as { id: number };
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32601, message: 'method not found' } }));
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const port = (server.address() as AddressInfo).port;
        const fault = await faultOf(client(`http://127.0.0.1:${port}`).request('eth_getBlockReceipts', ['0x1']));
        expect(fault).toMatchObject({ fault: 'node_error', rpcCode: -32601 });
      } finally {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    });

    it('rejects a body that is not JSON with invalid_json', async () => {
      node.inject({ method: 'eth_chainId', fault: { kind: 'invalidJson' } });
      const fault = await faultOf(client(node.url).request('eth_chainId', []));
      expect(fault.fault).toBe('invalid_json');
      expect(fault.message).toContain('502 Bad Gateway');
    });

    it('refuses a declared length past the cap before reading the body', async () => {
      const server = createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '999999999' });
        res.write('{');
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const port = (server.address() as AddressInfo).port;
        const c = client(`http://127.0.0.1:${port}`, { maxResponseBytes: 65_536 });
        const fault = await faultOf(c.request('eth_chainId', []));
        expect(fault.fault).toBe('too_large');
        expect(fault.message).toContain('999999999');
      } finally {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    });

    it('rejects with transport when nothing listens', async () => {
      const server = createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = (server.address() as AddressInfo).port;
      await new Promise<void>((resolve) => server.close(() => resolve()));
      const fault = await faultOf(client(`http://127.0.0.1:${port}`).request('eth_chainId', []));
      expect(fault.fault).toBe('transport');
      expect(fault.message).toContain('ECONNREFUSED');
    });
  });

  describe('over ws', () => {
    function wsClient(options: Parameters<typeof createRpcClient>[1] = {}): WsRpcClient {
      const c = client(node.wsUrl, options);
      if (c.transport !== 'ws') throw new Error('not a ws client');
      return c;
    }

    it('routes notifications to their subscription and drops those of unknown ids', async () => {
      const faults: RpcFaultError[] = [];
      const c = wsClient({ onFault: (f) => faults.push(f) });
      const heads: unknown[] = [];
      let arrived: () => void = () => undefined;
      const next = new Promise<void>((resolve) => {
        arrived = resolve;
      });
      await c.subscribe(['newHeads'], (head) => {
        heads.push(head);
        arrived();
      });
      for (let i = 0; i < 1000; i++) {
        node.broadcast(
          JSON.stringify({ jsonrpc: '2.0', method: 'eth_subscription', params: { subscription: `0x${i}`, result: i } }),
        );
      }
      const mined = chain.mine();
      await Promise.race([next, new Promise((_, reject) => setTimeout(() => reject(new Error('no head')), 5000))]);
      expect(heads).toEqual([expect.objectContaining({ hash: mined.hash })]);
      expect(faults).toEqual([]);
      // The socket still answers.
      expect(await c.request('eth_chainId', [])).toBe('0x539');
    });

    it('acknowledges a message with a pong when it writes nothing else, and not when a request carries the ACK', async () => {
      // A node that keeps Nagle's algorithm on waits for the ACK of its last message before it
      // sends a small next one: the client acknowledges at once rather than by the kernel's timer.
      const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
      await new Promise((resolve) => server.once('listening', resolve));
      let pongs = 0;
      let sockets: WebSocket[] = [];
      const pongSeen: Array<() => void> = [];
      server.on('connection', (socket) => {
        sockets.push(socket);
        socket.on('pong', () => {
          pongs++;
          for (const seen of pongSeen.splice(0)) seen();
        });
        socket.on('message', (data) => {
          const { id } = JSON.parse(String(data)) as { id: number };
          socket.send(JSON.stringify({ jsonrpc: '2.0', id, result: '0x1' }));
        });
      });
      try {
        const c = client(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
        const pong = new Promise<void>((resolve, reject) => {
          pongSeen.push(resolve);
          setTimeout(() => reject(new Error('no pong within 2 s')), 2000);
        });
        expect(await c.request('eth_chainId', [])).toBe('0x1');
        await pong;
        expect(pongs).toBe(1);
        // Answers to requests sent back to back: each next request carries the ACK of the answer
        // before it; only the last answer, followed by nothing, is acknowledged with a pong.
        const last = new Promise<void>((resolve, reject) => {
          pongSeen.push(resolve);
          setTimeout(() => reject(new Error('no pong within 2 s')), 2000);
        });
        for (let i = 0; i < 5; i++) await c.request('eth_chainId', []);
        await last;
        expect(pongs).toBe(2);
      } finally {
        for (const socket of sockets) socket.terminate();
        sockets = [];
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it('counts a message that is not JSON, or not JSON-RPC, and keeps the socket', async () => {
      const faults: RpcFaultError[] = [];
      const c = wsClient({ onFault: (f) => faults.push(f) });
      await c.request('eth_chainId', []);
      node.broadcast('this is not json');
      node.broadcast('[1,2,3]');
      node.broadcast('{"jsonrpc":"2.0","method":"eth_subscription","params":5}');
      expect(await c.request('eth_chainId', [])).toBe('0x539');
      expect(faults.map((f) => f.fault)).toEqual(['invalid_json', 'bad_response', 'bad_response']);
    });

    it('fails what is pending with too_large when a message passes the cap, and says the socket closed', async () => {
      const closes: RpcFaultError[] = [];
      const c = wsClient({ maxResponseBytes: 65_536, onClose: (f) => closes.push(f) });
      await c.request('eth_chainId', []);
      node.inject({ method: 'eth_blockNumber', fault: { kind: 'oversize', bytes: 200_000 } });
      const fault = await faultOf(c.request('eth_blockNumber', []));
      expect(fault.fault).toBe('too_large');
      expect(closes.map((f) => f.fault)).toEqual(['too_large']);
      expect(c.isClosed()).toBe(true);
    });

    it('fails what is pending with transport when the node drops the socket', async () => {
      const c = wsClient();
      await c.request('eth_chainId', []);
      node.inject({ method: 'eth_chainId', fault: { kind: 'delay', ms: 5000 } });
      const before = node.calls('eth_chainId');
      const pending = c.request('eth_chainId', []);
      await node.waitForCalls('eth_chainId', before + 1);
      node.dropConnections();
      expect((await faultOf(pending)).fault).toBe('transport');
    });
  });
});
