import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { TestClient } from './helpers/client.ts';
import { startGateway } from './helpers/gateway.ts';
import { TcpProxy } from './helpers/proxy.ts';

// Logs as CI sees them (not a terminal): JSON lines, on a real run through a failover.

type Line = Record<string, unknown>;

describe('logs', () => {
  let anvil: Anvil;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
  });

  afterAll(async () => {
    await anvil?.close();
  });

  it('are JSON lines with level, time and msg, saying the chain and what they are about, through a failover', async () => {
    const first = await TcpProxy.start(anvil.port);
    const second = await TcpProxy.start(anvil.port);
    const gateway = await startGateway([
      '--rpc',
      first.httpUrl,
      '--rpc',
      second.httpUrl,
      '--poll-interval-ms',
      '200',
      '--rpc-timeout-ms',
      '1000',
    ]);
    let output = '';
    try {
      const client = await TestClient.connect(gateway.url, 'json');
      const sub = await client.subscribe({ channel: 'blocks' });
      await client.next((m) => m['sub'] === sub && m.type === 'block', 10_000);
      await first.cut();
      // The fault of the first endpoint is logged, with the chain and the endpoint.
      await gateway.waitForOutput(new RegExp(`"endpoint":"127\\.0\\.0\\.1:${first.port}"`), 15_000);
      const from = client.messages.length;
      await client.next((m) => m['sub'] === sub && m.type === 'block', 10_000, from);
      client.close();
    } finally {
      output = gateway.output();
      await gateway.stop();
      output = gateway.output();
      await first.close();
      await second.close();
    }
    const lines = output.split('\n').filter((l) => l.trim() !== '');
    expect(lines.length).toBeGreaterThan(4);
    const parsed = lines.map((line) => {
      let entry: Line;
      try {
        entry = JSON.parse(line) as Line;
      } catch {
        throw new Error(`not a JSON line: ${line}`);
      }
      expect(['debug', 'info', 'warn', 'error', 'fatal']).toContain(entry['level']);
      expect(entry['time']).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      expect(typeof entry['msg']).toBe('string');
      expect(typeof entry['component']).toBe('string');
      return entry;
    });
    const fault = parsed.find((e) => e['endpoint'] === `127.0.0.1:${first.port}` && e['level'] === 'warn');
    expect(fault).toMatchObject({ chain: 31_337, component: 'ingest' });
    expect(parsed.some((e) => String(e['msg']).includes('listening on ws://127.0.0.1:'))).toBe(true);
    expect(parsed.some((e) => e['signal'] === 'SIGTERM')).toBe(true);
    // No line per block at info.
    const infoLines = parsed.filter((e) => e['level'] === 'info');
    expect(infoLines.length).toBeLessThan(10);
  });
});
