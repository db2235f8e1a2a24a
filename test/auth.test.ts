import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  type BlocksSubscriptionMessage,
  type ClientError,
  createClient,
  type StatusEvent,
} from '../packages/client/src/index.ts';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { TestClient, tryUpgrade } from './helpers/client.ts';
import { type GatewayProcess, scrapeMetrics, seriesValue, startGateway } from './helpers/gateway.ts';

// Auth end to end: real anvil, the real gateway process with a keys file and an HS256 secret, real
// WebSocket clients and the SDK; tokens signed with jose as a wallet backend would.

const SECRET = 'a-secret-of-the-wallet-backend-with-32+bytes';
const SECRET_BYTES = new TextEncoder().encode(SECRET);
const ORIGIN = 'https://wallet.example';
const KEYS = {
  open: 'open-key-0123456789abcdef',
  web: 'web-key-0123456789abcdef',
  narrow: 'narrow-key-0123456789abcdef',
  feed: 'feed-key-0123456789abcdef',
  listed: 'listed-key-0123456789abcdef',
};
const ALICE = '0x00000000000000000000000000000000000a11ce';
const BOB = '0x0000000000000000000000000000000000000b0b';
const CAROL = '0x00000000000000000000000000000000000ca201';

/** A token of the wallet backend: HS256 with the gateway's secret, unless `alg` says otherwise. */
async function token(
  claims: Record<string, unknown>,
  expiresInSec: number,
  alg = 'HS256',
  key: Uint8Array = SECRET_BYTES,
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSec)
    .sign(key);
}

/** A token with `alg: none`: no signature at all. */
function unsignedToken(claims: Record<string, unknown>): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ ...claims, exp: Math.floor(Date.now() / 1000) + 60 })}.`;
}

describe('auth', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let dir: string;
  const url = (credential: string): string => `${gateway.url}?key=${encodeURIComponent(credential)}`;
  const metric = async (series: string): Promise<number> => seriesValue(await scrapeMetrics(gateway), series) ?? 0;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
    dir = mkdtempSync(join(tmpdir(), 'blockcast-auth-'));
    const keysFile = join(dir, 'keys.json');
    writeFileSync(
      keysFile,
      JSON.stringify({
        keys: [
          {
            name: 'open',
            key: KEYS.open,
            limits: { maxConnections: 3, maxSubscriptions: 2, maxAddresses: 3, maxRequestsPerSecond: 5 },
          },
          { name: 'web', key: KEYS.web, origins: [ORIGIN] },
          { name: 'narrow', key: KEYS.narrow, chains: [1] },
          { name: 'feed', key: KEYS.feed, channels: ['blocks'] },
          { name: 'listed', key: KEYS.listed, addresses: [ALICE, BOB] },
        ],
        tokens: { limits: { maxConnections: 2 } },
      }),
    );
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--keys-file', keysFile, '--jwt-secret', SECRET]);
  });

  afterAll(async () => {
    await gateway?.stop();
    await anvil?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('says at start that a key or token is needed', () => {
    expect(gateway.output()).toMatch(
      /auth: a key or token is needed to connect \(open, web, narrow, feed, listed, tokens\)/,
    );
  });

  it.each([
    ['no credential', 401, 'missing', async () => ({ url: gateway.url, headers: {} })],
    ['a wrong key', 401, 'bad_key', async () => ({ url: url('not-a-key-0123456789abcdef'), headers: {} })],
    [
      'a wrong key as a bearer',
      401,
      'bad_key',
      async () => ({ url: gateway.url, headers: { authorization: 'Bearer not-a-key-0123456789' } }),
    ],
    ['an expired token', 401, 'expired_token', async () => ({ url: url(await token({ sub: 'a' }, -60)), headers: {} })],
    [
      'a token signed with another algorithm (HS512)',
      401,
      'bad_token',
      async () => ({ url: url(await token({ sub: 'a' }, 60, 'HS512')), headers: {} }),
    ],
    [
      'an unsigned token (alg none)',
      401,
      'bad_token',
      async () => ({ url: url(unsignedToken({ sub: 'a' })), headers: {} }),
    ],
    [
      'a token signed with another secret',
      401,
      'bad_token',
      async () => ({
        url: url(await token({ sub: 'a' }, 60, 'HS256', new TextEncoder().encode('x'.repeat(40)))),
        headers: {},
      }),
    ],
    [
      'a good key from an origin it does not allow',
      403,
      'origin',
      async () => ({ url: url(KEYS.web), headers: { origin: 'https://evil.example' } }),
    ],
  ])('refuses %s at upgrade with %i, and no socket opens', async (_what, status, reason, make) => {
    const { url: target, headers } = await make();
    const key = reason === 'origin' ? 'web' : 'none';
    const series = `blockcast_auth_refusals_total{key="${key}",reason="${reason}"}`;
    const before = await metric(series);
    const opened = await metric('blockcast_transport_connections_opened_total{endpoint="v1"}');
    const upgrade = await tryUpgrade(target, headers);
    expect(upgrade.status).toBe(status);
    expect(upgrade.ws).toBeUndefined();
    expect(upgrade.body?.length).toBeGreaterThan(0);
    expect(await metric(series)).toBe(before + 1);
    expect(await metric('blockcast_transport_connections_opened_total{endpoint="v1"}')).toBe(opened);
  });

  it('takes a key as ?key=, as a bearer, or as the last part of the path, and a token as ?token=', async () => {
    const ways = [
      await tryUpgrade(url(KEYS.open)),
      await tryUpgrade(gateway.url, { authorization: `Bearer ${KEYS.open}` }),
      await tryUpgrade(`${gateway.url}/${KEYS.open}`),
      await tryUpgrade(`${gateway.url}?token=${await token({ sub: 'ways' }, 60)}`),
      await tryUpgrade(url(KEYS.web), { origin: ORIGIN }),
    ];
    expect(ways.map((w) => w.status)).toEqual([101, 101, 101, 101, 101]);
    expect(ways.map((w) => (w.welcome?.['auth'] as { key: string } | undefined)?.key)).toEqual([
      'open',
      'open',
      'open',
      'token',
      'web',
    ]);
    for (const w of ways) w.ws?.close();
  });

  it("reports the key's own quotas in welcome and enforces each with its documented code", async () => {
    const clients = await Promise.all([0, 1, 2].map(() => TestClient.connect(url(KEYS.open), 'json')));
    const [first] = clients as [TestClient, TestClient, TestClient];
    expect(first.messages[0]).toMatchObject({
      type: 'welcome',
      limits: { maxSubscriptions: 2, maxAddresses: 3, maxRequestsPerSecond: 5, maxConnectionsPerKey: 3 },
      auth: { key: 'open' },
    });
    expect(await metric('blockcast_auth_connections{key="open"}')).toBe(3);

    // Connections: the fourth is refused at upgrade with 429; nothing opens.
    const fourth = await tryUpgrade(url(KEYS.open));
    expect(fourth.status).toBe(429);
    expect(fourth.body).toMatch(/holds its 3 connections/);
    expect(await metric('blockcast_auth_quota_hits_total{key="open",quota="connections"}')).toBe(1);

    // Addresses per connection.
    const tooMany = await first.request({
      op: 'subscribe',
      channel: 'activity',
      addresses: [ALICE, BOB, CAROL, `0x${'d'.repeat(40)}`],
    });
    expect(tooMany).toMatchObject({ type: 'error', code: 'TOO_MANY_ADDRESSES' });

    // Subscriptions per connection.
    await first.subscribe({ channel: 'blocks' });
    await first.subscribe({ channel: 'activity', addresses: [ALICE] });
    const third = await first.request({ op: 'subscribe', channel: 'blocks' });
    expect(third).toMatchObject({ type: 'error', code: 'TOO_MANY_SUBSCRIPTIONS' });

    // Messages per second: a burst past 5 is answered RATE_LIMITED.
    const second = clients[1] as TestClient;
    const from = second.messages.length;
    for (let i = 0; i < 8; i++) second.send({ op: 'ping', id: `burst${i}` });
    await second.next((m) => m.type === 'error' && m['code'] === 'RATE_LIMITED', 10_000, from);

    expect(await metric('blockcast_auth_quota_hits_total{key="open",quota="addresses"}')).toBe(1);
    expect(await metric('blockcast_auth_quota_hits_total{key="open",quota="subscriptions"}')).toBe(1);
    expect(await metric('blockcast_auth_quota_hits_total{key="open",quota="requests_per_second"}')).toBeGreaterThan(0);

    // Another key is not counted against this one's connections.
    const other = await tryUpgrade(url(KEYS.listed));
    expect(other.status).toBe(101);
    other.ws?.close();
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.waitClose()));
  });

  it('refuses chains and channels a key does not allow with FORBIDDEN, and serves those it does', async () => {
    const narrow = await TestClient.connect(url(KEYS.narrow), 'json');
    const chain = await narrow.request({ op: 'subscribe', channel: 'blocks' });
    expect(chain).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    expect(chain['message']).toMatch(/chain 31337/);
    narrow.close();
    const feed = await TestClient.connect(url(KEYS.feed), 'json');
    const channel = await feed.request({ op: 'subscribe', channel: 'activity', addresses: [ALICE] });
    expect(channel).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    expect(channel['message']).toMatch(/channel activity/);
    await feed.subscribe({ channel: 'blocks' });
    feed.close();
  });

  it('refuses addresses a key or token does not name with FORBIDDEN, in subscribe and update', async () => {
    const keyed = await TestClient.connect(url(KEYS.listed), 'json');
    expect(keyed.messages[0]).toMatchObject({ auth: { key: 'listed', addresses: 2 } });
    const sub = await keyed.subscribe({ channel: 'activity', addresses: [ALICE, BOB] });
    const added = await keyed.request({ op: 'update', sub, add: [CAROL] });
    expect(added).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    expect(added['message']).toContain(CAROL);
    keyed.close();

    const jwt = await token({ sub: 'user-1', addresses: [ALICE] }, 120);
    const holder = await TestClient.connect(url(jwt), 'json');
    expect(holder.messages[0]).toMatchObject({ auth: { key: 'token', subject: 'user-1', addresses: 1 } });
    const refused = await holder.request({ op: 'subscribe', channel: 'activity', addresses: [ALICE, BOB] });
    expect(refused).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    expect(refused['message']).toContain(BOB);
    await holder.subscribe({ channel: 'activity', addresses: [ALICE] });
    // Blocks carry no addresses: a token that names addresses may still follow them.
    await holder.subscribe({ channel: 'blocks' });
    holder.close();
    expect(await metric('blockcast_auth_quota_hits_total{key="token",quota="allowed"}')).toBeGreaterThan(0);
  });

  it('guards /rpc as /v1: 401 without a key, the key in the path, 403 for a chain the key may not use, FORBIDDEN addresses', async () => {
    const rpcUrl = gateway.url.replace(/\/v1$/, '/rpc');
    expect((await tryUpgrade(rpcUrl)).status).toBe(401);
    expect((await tryUpgrade(`${rpcUrl}/not-a-key-0123456789abcdef`)).status).toBe(401);
    expect((await tryUpgrade(`${rpcUrl}/31337/${KEYS.narrow}`)).status).toBe(403);
    const call = (ws: WebSocket, method: string, params: unknown[]): Promise<Record<string, unknown>> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer to ${method} within 10 s`)), 10_000);
        ws.once('message', (data: Buffer) => {
          clearTimeout(timer);
          resolve(JSON.parse(data.toString()) as Record<string, unknown>);
        });
        ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }));
      });
    const opened = (url: string): Promise<WebSocket> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
      });
    for (const url of [`${rpcUrl}/${KEYS.open}`, `${rpcUrl}/31337/${KEYS.open}`, `${rpcUrl}?key=${KEYS.open}`]) {
      const ws = await opened(url);
      expect(await call(ws, 'eth_chainId', [])).toMatchObject({ result: '0x7a69' });
      ws.close();
    }
    const holder = await opened(`${rpcUrl}?token=${await token({ sub: 'rpc-user', addresses: [ALICE] }, 120)}`);
    expect(await call(holder, 'eth_subscribe', ['logs', { address: ALICE }])).toMatchObject({
      result: expect.any(String),
    });
    expect(await call(holder, 'eth_subscribe', ['logs', { address: [ALICE, BOB] }])).toMatchObject({
      error: { code: -32_003 },
    });
    expect(await call(holder, 'eth_subscribe', ['logs', {}])).toMatchObject({ error: { code: -32_003 } });
    holder.close();
  });

  it('counts token connections per subject', async () => {
    const alice = await token({ sub: 'alice' }, 120);
    const held = [await tryUpgrade(url(alice)), await tryUpgrade(url(alice))];
    expect(held.map((u) => u.status)).toEqual([101, 101]);
    const third = await tryUpgrade(url(await token({ sub: 'alice' }, 120)));
    expect(third.status).toBe(429);
    const bob = await tryUpgrade(url(await token({ sub: 'bob' }, 120)));
    expect(bob.status).toBe(101);
    for (const u of [...held, bob]) u.ws?.close();
  });

  it('closes a connection with 4401 when its token expires, and a refresh in-band keeps another open', async () => {
    const expiresIn = 3;
    const expiring = await TestClient.connect(url(await token({ sub: 'carol' }, expiresIn)), 'json');
    const refreshed = await TestClient.connect(url(await token({ sub: 'carol' }, expiresIn)), 'json');
    const firstDeadline = (refreshed.messages[0]?.['auth'] as { expiresAt: number } | undefined)?.expiresAt ?? 0;
    expect(firstDeadline).toBeGreaterThan(Date.now() / 1000);
    await refreshed.subscribe({ channel: 'blocks' });

    // Another subject's token, a token that is not valid and garbage are refused; the connection stays.
    const otherSubject = await refreshed.request({ op: 'auth', token: await token({ sub: 'mallory' }, 60) });
    expect(otherSubject).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    const invalid = await refreshed.request({ op: 'auth', token: await token({ sub: 'carol' }, 60, 'HS512') });
    expect(invalid).toMatchObject({ type: 'error', code: 'UNAUTHORIZED' });
    const notJwt = await refreshed.request({ op: 'auth', token: 'hello' });
    expect(notJwt).toMatchObject({ type: 'error', code: 'BAD_REQUEST' });

    const authed = await refreshed.request({ op: 'auth', token: await token({ sub: 'carol' }, 600) });
    expect(authed).toMatchObject({ type: 'authed', key: 'token', subject: 'carol' });
    expect(authed['expiresAt']).toBeGreaterThan(firstDeadline + 500);

    const closed = await expiring.waitClose(15_000);
    expect(closed).toEqual({ code: 4401, reason: 'token expired' });
    // Blocks keep coming to the refreshed connection after its first token's deadline has passed.
    await refreshed.next((m) => m.type === 'block' && Date.now() > firstDeadline * 1000 + 1500, 15_000);
    expect(refreshed.closed).toBeUndefined();
    expect(await metric('blockcast_auth_token_expiries_total')).toBeGreaterThan(0);
    refreshed.close();
  });

  it('a refresh that would not allow what the connection watches changes nothing', async () => {
    const client = await TestClient.connect(url(await token({ sub: 'dave', addresses: [ALICE, BOB] }, 120)), 'json');
    await client.subscribe({ channel: 'activity', addresses: [ALICE, BOB] });
    const narrower = await client.request({ op: 'auth', token: await token({ sub: 'dave', addresses: [ALICE] }, 600) });
    expect(narrower).toMatchObject({ type: 'error', code: 'FORBIDDEN' });
    const same = await client.request({
      op: 'auth',
      token: await token({ sub: 'dave', addresses: [ALICE, BOB] }, 600),
    });
    expect(same).toMatchObject({ type: 'authed', addresses: 2 });
    client.close();
  });

  it('the SDK takes a key, and a token function that it asks again before the token expires', async () => {
    const keyed = createClient({ url: gateway.url, apiKey: KEYS.open, WebSocket });
    const block = await new Promise<BlocksSubscriptionMessage>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no block within 15 s')), 15_000);
      keyed.subscribeBlocks({}, (m) => {
        if (m.type !== 'block') return;
        clearTimeout(timer);
        resolve(m);
      });
    });
    expect(block.type === 'block' && block.number > 0).toBe(true);
    keyed.close();

    const issued: number[] = [];
    const statuses: StatusEvent[] = [];
    const errors: ClientError[] = [];
    const client = createClient({
      url: gateway.url,
      WebSocket,
      token: async () => {
        const exp = Math.floor(Date.now() / 1000) + 4;
        issued.push(exp);
        return token({ sub: 'sdk-user' }, 4);
      },
      tokenRefreshMarginMs: 2000,
      onStatus: (e) => statuses.push(e),
      onError: (e) => errors.push(e),
    });
    try {
      // Blocks still arrive on the first connection well after its first token's expiry.
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no block past the first expiry; issued ${issued}`)), 20_000);
        client.subscribeBlocks({}, (m) => {
          const firstExpiry = issued[0];
          if (m.type === 'block' && firstExpiry !== undefined && Date.now() > firstExpiry * 1000 + 1500) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      expect(issued.length).toBeGreaterThanOrEqual(2);
      expect(statuses.filter((s) => s.status === 'closed')).toEqual([]);
      expect(errors).toEqual([]);
    } finally {
      client.close();
    }
  });
});

describe('auth defaults', () => {
  let anvil: Anvil;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
  });

  afterAll(async () => {
    await anvil?.close();
  });

  it('without keys, listens on loopback only unless a host is given, and says so', async () => {
    const gateway = await startGateway(['--rpc', anvil.httpUrl], { host: null });
    try {
      expect(gateway.output()).toMatch(/auth: no API keys or tokens configured: listening on 127\.0\.0\.1 only/);
      const client = await TestClient.connect(gateway.url, 'json');
      client.close();
      // Another interface of this machine, when it has one, finds nothing listening.
      const external = Object.values(networkInterfaces())
        .flat()
        .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal);
      if (external !== undefined) {
        const upgrade = await tryUpgrade(`ws://${external.address}:${gateway.port}/v1`).catch((e: Error) => e);
        expect(upgrade).toBeInstanceOf(Error);
        expect((upgrade as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
      }
    } finally {
      await gateway.stop();
    }
  });

  it('without keys but with a host given, warns that anyone who reaches it may connect', async () => {
    const gateway = await startGateway(['--rpc', anvil.httpUrl, '--host', '0.0.0.0']);
    try {
      expect(gateway.output()).toMatch(/anyone who reaches 0\.0\.0\.0:\d+ may connect/);
    } finally {
      await gateway.stop();
    }
  });
});
