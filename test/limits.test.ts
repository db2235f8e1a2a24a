import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpuDelta, cpuTime } from '../bench/lib/proc.ts';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { type Message, TestClient, tryUpgrade, type Upgrade } from './helpers/client.ts';
import { freeFixedPort, type GatewayProcess, scrapeMetrics, seriesValue, startGateway } from './helpers/gateway.ts';

/** 0x-prefixed addresses `from` … `from + count - 1`, all distinct. */
function addresses(from: number, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `0x${(from + i).toString(16).padStart(40, '0')}`);
}

describe('limits', () => {
  let anvil: Anvil;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
  });

  afterAll(async () => {
    await anvil?.close();
  });

  it('limits connections per address by default, and reports the limit in welcome', async () => {
    const gateway = await startGateway(['--rpc', anvil.httpUrl]);
    try {
      const client = await TestClient.connect(gateway.url, 'json');
      expect(client.messages[0]).toMatchObject({ type: 'welcome', limits: { maxConnectionsPerIp: 500 } });
      client.close();
    } finally {
      await gateway.stop();
    }
  });

  it('refuses an upgrade past the bound on all connections with HTTP 503, opens nothing, and admits again once one closes', async () => {
    const gateway = await startGateway(['--rpc', anvil.httpUrl, '--max-connections', '3']);
    try {
      const held = await Promise.all([0, 1, 2].map(() => tryUpgrade(gateway.url)));
      expect(held.map((u) => u.status)).toEqual([101, 101, 101]);
      expect((await tryUpgrade(gateway.url)).status).toBe(503);
      const text = await scrapeMetrics(gateway);
      expect(seriesValue(text, 'blockcast_transport_refused_total{reason="capacity"}') ?? 0).toBe(1);
      expect(seriesValue(text, 'blockcast_transport_connections{endpoint="v1"}') ?? 0).toBe(3);
      held[0]?.ws?.close();
      // The server handles the close on its own turn: try again until it has (bounded).
      let status = 0;
      for (let attempt = 0; attempt < 50 && status !== 101; attempt++) {
        const upgrade = await tryUpgrade(gateway.url);
        status = upgrade.status;
        upgrade.ws?.close();
      }
      expect(status).toBe(101);
      for (const u of held) u.ws?.close();
    } finally {
      await gateway.stop();
    }
  });

  it('counts clients behind a trusted proxy by X-Forwarded-For, and others by their own address', async () => {
    const gateway = await startGateway([
      '--rpc',
      anvil.httpUrl,
      '--max-connections-per-ip',
      '1',
      '--trusted-proxy',
      '127.0.0.1',
    ]);
    try {
      const first = await tryUpgrade(gateway.url, { 'x-forwarded-for': '203.0.113.1' });
      const second = await tryUpgrade(gateway.url, { 'x-forwarded-for': '198.51.100.7, 203.0.113.2' });
      expect([first.status, second.status]).toEqual([101, 101]);
      expect((await tryUpgrade(gateway.url, { 'x-forwarded-for': '203.0.113.1' })).status).toBe(429);
      // The left part of the header is the client's own word: only the right-most untrusted hop counts.
      expect((await tryUpgrade(gateway.url, { 'x-forwarded-for': '203.0.113.9, 203.0.113.2' })).status).toBe(429);
      const text = await scrapeMetrics(gateway);
      expect(seriesValue(text, 'blockcast_transport_refused_total{reason="per_ip"}') ?? 0).toBe(2);
      first.ws?.close();
      second.ws?.close();
    } finally {
      await gateway.stop();
    }
  });

  it('refuses a flood of watched addresses with OVERLOADED past the bound on all of them, stays up, and frees them on close', async () => {
    const PER_CONNECTION = 10_000;
    const BOUND = 5 * PER_CONNECTION;
    const gateway = await startGateway([
      '--rpc',
      anvil.httpUrl,
      '--max-watched-addresses',
      String(BOUND),
      '--max-addresses',
      String(2 * PER_CONNECTION),
    ]);
    try {
      const observer = await TestClient.connect(gateway.url, 'msgpack');
      const blocks = await observer.subscribe({ channel: 'blocks' });
      const flood: TestClient[] = [];
      const replies: Message[] = [];
      for (let i = 0; i < 20; i++) {
        const client = await TestClient.connect(gateway.url, 'msgpack');
        flood.push(client);
        replies.push(
          await client.request(
            { op: 'subscribe', channel: 'activity', addresses: addresses(1 + i * PER_CONNECTION, PER_CONNECTION) },
            20_000,
          ),
        );
      }
      expect(replies.slice(0, 5).map((r) => r.type)).toEqual(Array(5).fill('subscribed'));
      expect(replies.slice(5).map((r) => r['code'])).toEqual(Array(15).fill('OVERLOADED'));
      // An update that would pass the bound is refused the same way and changes nothing.
      const sub = replies[0]?.['sub'] as string;
      const update = await (flood[0] as TestClient).request({ op: 'update', sub, add: addresses(900_000, 1) });
      expect(update).toMatchObject({ type: 'error', code: 'OVERLOADED' });
      let text = await scrapeMetrics(gateway);
      expect(seriesValue(text, 'blockcast_index_watched_addresses') ?? 0).toBe(BOUND);
      expect(seriesValue(text, 'blockcast_transport_errors_total{endpoint="v1",code="OVERLOADED"}') ?? 0).toBe(16);
      // The observer was served throughout and still is.
      const from = observer.messages.length;
      await observer.next((m) => m['sub'] === blocks && m.type === 'block', 10_000, from);
      for (const client of flood) client.close();
      await Promise.all(flood.map((c) => c.waitClose()));
      // Freed: a new connection watches as many again (bounded retries while the closes are handled).
      let again: Message | undefined;
      const late = await TestClient.connect(gateway.url, 'msgpack');
      for (let attempt = 0; attempt < 50 && again?.type !== 'subscribed'; attempt++) {
        again = await late.request({ op: 'subscribe', channel: 'activity', addresses: addresses(1, PER_CONNECTION) });
      }
      expect(again?.type).toBe('subscribed');
      text = await scrapeMetrics(gateway);
      expect(seriesValue(text, 'blockcast_index_watched_addresses') ?? 0).toBe(PER_CONNECTION);
      late.close();
      observer.close();
    } finally {
      await gateway.stop();
    }
  });

  it('drops a text frame that is not UTF-8 at once and counts it; the others see nothing', async () => {
    const gateway = await startGateway(['--rpc', anvil.httpUrl]);
    try {
      const observer = await TestClient.connect(gateway.url, 'json');
      const bad = await TestClient.connect(gateway.url, 'json');
      bad.sendRaw(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), false);
      // uWebSockets.js closes such a connection itself, without a close frame.
      expect((await bad.waitClose()).code).toBe(1006);
      expect((await observer.request({ op: 'ping' })).type).toBe('pong');
      const text = await scrapeMetrics(gateway);
      expect(
        seriesValue(text, 'blockcast_transport_server_closes_total{endpoint="v1",reason="invalid_utf8"}') ?? 0,
      ).toBe(1);
      observer.close();
    } finally {
      await gateway.stop();
    }
  });

  it('closes 2,000 slow handshakes within the handshake timeout while other clients connect throughout', {
    timeout: 60_000,
  }, async () => {
    const SLOW = 2000;
    // uWebSockets.js closes an HTTP connection that has not finished its request after 10 s; its
    // timer ticks every 4 s.
    const HANDSHAKE_TIMEOUT_MS = 10_000 + 4000 + 1000;
    const gateway = await startGateway(['--rpc', anvil.httpUrl]);
    const slow: Array<{ socket: Socket; openedAt: number; closedAt?: number }> = [];
    const trickle = setInterval(() => {
      for (const s of slow) if (s.closedAt === undefined) s.socket.write('X');
    }, 2000);
    try {
      for (let i = 0; i < SLOW; i++) {
        const socket = connect(gateway.port, '127.0.0.1');
        const entry: { socket: Socket; openedAt: number; closedAt?: number } = { socket, openedAt: Date.now() };
        socket.on('error', () => undefined);
        socket.on('close', () => {
          entry.closedAt = Date.now();
        });
        socket.write('GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
        slow.push(entry);
      }
      // Legitimate clients keep connecting while the slow ones hang on, until all are closed (bounded).
      let legit = 0;
      const deadline = Date.now() + HANDSHAKE_TIMEOUT_MS + 5000;
      while (slow.some((s) => s.closedAt === undefined) && Date.now() < deadline) {
        const client = await TestClient.connect(gateway.url, 'json', 2000);
        expect((await client.request({ op: 'ping' }, 2000)).type).toBe('pong');
        client.close();
        legit++;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(slow.every((s) => s.closedAt !== undefined)).toBe(true);
      const longest = Math.max(...slow.map((s) => (s.closedAt as number) - s.openedAt));
      const shortest = Math.min(...slow.map((s) => (s.closedAt as number) - s.openedAt));
      console.log(
        `slow handshakes: ${SLOW} closed ${shortest}-${longest} ms after opening; ${legit} clients connected meanwhile`,
      );
      expect(longest).toBeLessThanOrEqual(HANDSHAKE_TIMEOUT_MS);
      expect(legit).toBeGreaterThanOrEqual(20);
    } finally {
      clearInterval(trickle);
      for (const s of slow) s.socket.destroy();
      await gateway.stop();
    }
  });
});

describe('an open-files limit of 1024', () => {
  const LIMIT = 1024;
  const ATTEMPTS = 1100;
  let anvil: Anvil;
  let gateway: GatewayProcess;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
    // A fixed port below the ephemeral range: while accepting is paused the port is free, and an
    // outgoing connection of this machine must not be handed it.
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--max-connections-per-ip', '0'], {
      openFiles: LIMIT,
      port: await freeFixedPort(),
    });
  });

  afterAll(async () => {
    await gateway?.stop();
    await anvil?.close();
  });

  /** Polls /healthz every 200 ms until stopped; resolves with each answer's status (0: no answer within 1 s). */
  function watchHealth(): { stop: () => Promise<number[]> } {
    const statuses: number[] = [];
    let running = true;
    const loop = (async () => {
      for (let i = 0; i < 1000 && running; i++) {
        try {
          const res = await fetch(`${gateway.httpUrl}/healthz`, { signal: AbortSignal.timeout(1000) });
          statuses.push(res.status);
        } catch {
          statuses.push(0);
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();
    return {
      stop: async () => {
        running = false;
        await loop;
        return statuses;
      },
    };
  }

  it('refuses what it cannot hold, stays below 20 % CPU, keeps /healthz answering, and recovers', {
    timeout: 90_000,
  }, async () => {
    const health = watchHealth();
    const upgrades: Upgrade[] = [];
    for (let i = 0; i < ATTEMPTS; i += 100) {
      // A connection the kernel queued and reset as accepting paused is refused too (status 0);
      // any other failure fails the test.
      const batch = Array.from({ length: Math.min(100, ATTEMPTS - i) }, () =>
        tryUpgrade(gateway.url).catch((error: NodeJS.ErrnoException) => {
          if (error.code === 'ECONNRESET' || error.code === 'ECONNREFUSED') return { status: 0 };
          throw error;
        }),
      );
      upgrades.push(...(await Promise.all(batch)));
    }
    const opened = upgrades.filter((u) => u.status === 101);
    const refused = upgrades.filter((u) => u.status === 503);
    const reset = upgrades.filter((u) => u.status === 0);
    expect(opened.length + refused.length + reset.length).toBe(ATTEMPTS);
    // Past what it can hold, each attempt is refused: with the documented 503, or, when a burst
    // of refusals itself runs the descriptors short and accepting pauses, by the kernel's reset of
    // what waited in the backlog.
    expect(refused.length + reset.length).toBeGreaterThan(0);
    // Held: the gateway's CPU over three seconds of it.
    const pid = gateway.process.pid as number;
    const before = cpuTime(pid);
    const startedAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const used = cpuDelta(before, cpuTime(pid));
    const share = (used.userUs + used.systemUs) / ((performance.now() - startedAt) * 1000);
    expect(share).toBeLessThan(0.2);
    for (const u of opened) u.ws?.close();
    const statuses = await health.stop();
    console.log(
      `ulimit -n ${LIMIT}: ${ATTEMPTS} upgrades, ${opened.length} opened, ${refused.length} refused with 503, ${reset.length} reset; CPU ${(share * 100).toFixed(1)} % while held; /healthz ${statuses.filter((s) => s === 200).length} of ${statuses.length} answered 200`,
    );
    expect(statuses.length).toBeGreaterThan(5);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const text = await scrapeMetrics(gateway);
    expect(seriesValue(text, 'blockcast_transport_refused_total{reason="capacity"}') ?? 0).toBe(refused.length);
    // Recovered: a new client connects and gets the next block.
    let client: TestClient | undefined;
    for (let attempt = 0; attempt < 50 && client === undefined; attempt++) {
      const upgrade = await tryUpgrade(gateway.url);
      upgrade.ws?.close();
      if (upgrade.status === 101) client = await TestClient.connect(gateway.url, 'json');
    }
    const sub = await (client as TestClient).subscribe({ channel: 'blocks' });
    await (client as TestClient).next((m) => m['sub'] === sub && m.type === 'block', 10_000);
    client?.close();
  });

  it('pauses accepting instead of spinning when raw connections take every descriptor, and accepts again once they go', {
    timeout: 90_000,
  }, async () => {
    const pid = gateway.process.pid as number;
    const sockets: Socket[] = [];
    for (let i = 0; i < ATTEMPTS; i++) {
      const socket = connect(gateway.port, '127.0.0.1');
      socket.on('error', () => undefined);
      sockets.push(socket);
    }
    // Wait (bounded) until the gateway has paused accepting.
    let paused = false;
    for (let attempt = 0; attempt < 100 && !paused; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const res = await fetch(`${gateway.httpUrl}/metrics`, { signal: AbortSignal.timeout(1000) }).catch(
        () => undefined,
      );
      // While paused the port refuses; the metric says so once it answers again.
      paused = res === undefined;
    }
    const before = cpuTime(pid);
    const startedAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const used = cpuDelta(before, cpuTime(pid));
    const share = (used.userUs + used.systemUs) / ((performance.now() - startedAt) * 1000);
    console.log(
      `ulimit -n ${LIMIT}: ${ATTEMPTS} raw connections, accepting paused: ${paused}; CPU ${(share * 100).toFixed(1)} %`,
    );
    expect(share).toBeLessThan(0.2);
    for (const socket of sockets) socket.destroy();
    // Accepting again (bounded): /healthz answers, and the pause was counted.
    let status = 0;
    for (let attempt = 0; attempt < 100 && status !== 200; attempt++) {
      status = await fetch(`${gateway.httpUrl}/healthz`, { signal: AbortSignal.timeout(1000) })
        .then((r) => r.status)
        .catch(() => 0);
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(status).toBe(200);
    const text = await scrapeMetrics(gateway);
    expect(seriesValue(text, 'blockcast_transport_accept_pauses_total') ?? 0).toBeGreaterThanOrEqual(1);
    expect(seriesValue(text, 'blockcast_transport_accepting') ?? 0).toBe(1);
  });
});
