import { createServer as createNetServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { rpc } from './helpers/chain.ts';
import { type Message, TestClient } from './helpers/client.ts';
import { type GatewayProcess, runGatewayToExit, startGateway } from './helpers/gateway.ts';

// `npm start` with no RPC: the gateway spawns anvil (block time 1 s) and test traffic.
describe('npm start on the embedded devnet', () => {
  let gateway: GatewayProcess;

  beforeAll(async () => {
    gateway = await startGateway([], { timeoutMs: 30_000 });
  });

  afterAll(async () => {
    await gateway?.stop();
  });

  it('prints the URL and a paste-able example', () => {
    expect(gateway.devnetRpc).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(gateway.output()).toContain(`${gateway.url}?encoding=json`);
    expect(gateway.output()).toContain("op:'subscribe',channel:'blocks'");
  });

  it('streams every new block in order, equal to the node', async () => {
    const client = await TestClient.connect(gateway.url, 'json');
    const sub = await client.subscribe({ channel: 'blocks' });
    const blocks: Message[] = [];
    for (let i = 0; i < 4; i++) {
      blocks.push(await client.next((m) => m.type === 'block' && m['sub'] === sub && !blocks.includes(m), 10_000));
    }
    const numbers = blocks.map((b) => b['number'] as number);
    for (let i = 1; i < numbers.length; i++) expect(numbers[i]).toBe((numbers[i - 1] as number) + 1);
    for (const block of blocks) {
      const node = await rpc<{ number: string; hash: string; parentHash: string }>(
        gateway.devnetRpc as string,
        'eth_getBlockByNumber',
        [`0x${(block['number'] as number).toString(16)}`, false],
      );
      expect({ number: block['number'], hash: block['hash'], parentHash: block['parentHash'] }).toEqual({
        number: Number(node.number),
        hash: node.hash,
        parentHash: node.parentHash,
      });
      expect(block['cursor']).toBeTypeOf('string');
    }
    // The devnet's traffic generator sends transfers: some block carries transactions.
    const busy = await client.next((m) => m.type === 'block' && (m['txCount'] as number) > 0, 10_000);
    expect(busy['txCount']).toBeGreaterThan(0);
    client.close();
  });

  it('serves /healthz, /readyz and /metrics on the same port', async () => {
    expect((await fetch(`${gateway.httpUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${gateway.httpUrl}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/^blockcast_ingest_blocks_total\{chain="31337"\} [1-9]\d*$/m);
    expect(metrics).toMatch(/^blockcast_fanout_messages_sent_total\{channel="blocks"\} [1-9]\d*$/m);
    expect(metrics).toMatch(/^blockcast_transport_connections_opened_total\{endpoint="v1"\} [1-9]\d*$/m);
    expect((await fetch(`${gateway.httpUrl}/nothing-here`)).status).toBe(404);
    const refused = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`${gateway.url}?encoding=xml`);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => reject(new Error('upgrade with encoding=xml was accepted')));
      ws.on('error', () => undefined);
    });
    expect(refused).toBe(400);
  });

  it('on SIGTERM closes sockets with 1001, stops anvil and exits 0', async () => {
    const client = await TestClient.connect(gateway.url, 'msgpack');
    await client.subscribe({ channel: 'blocks' });
    const closed = client.waitClose(15_000);
    const code = await gateway.stop();
    expect(code).toBe(0);
    expect((await closed).code).toBe(1001);
    await expect(rpc(gateway.devnetRpc as string, 'eth_blockNumber')).rejects.toThrow();
  });
});

describe('a gateway that cannot start', () => {
  it('exits 1 naming the problem, and leaves no devnet behind', async () => {
    const busy = createNetServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      const { code, output } = await runGatewayToExit(['--host', '127.0.0.1', '--port', String(port)], {}, 40_000);
      expect(code).toBe(1);
      expect(output).toContain(`BAD_CONFIG: port: 127.0.0.1:${port} is in use`);
      const devnet = /devnet: anvil at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
      expect(devnet).toBeDefined();
      await expect(rpc(devnet as string, 'eth_blockNumber')).rejects.toThrow();
    } finally {
      busy.close();
    }
  });
});
