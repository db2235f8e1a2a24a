import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { type Anvil, startAnvil } from '../src/devnet/startAnvil.ts';
import { tryUpgrade } from './helpers/client.ts';
import { type GatewayProcess, startGateway } from './helpers/gateway.ts';

// /rpc under bad input: the real gateway on real anvil, raw WebSocket clients sending what a
// broken or hostile client would. Each gets a JSON-RPC error; its socket stays open; another
// client's subscription keeps receiving.

type Json = Record<string, unknown>;

/** A raw JSON-RPC client: keeps every frame, waits (bounded) for one that matches. */
class RpcClient {
  readonly frames: unknown[] = [];
  readonly ws: WebSocket;
  closed: number | undefined;
  #waiters: Array<{ match: (f: unknown) => boolean; resolve: (f: unknown) => void }> = [];

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer) => {
      const frame = JSON.parse(data.toString()) as unknown;
      this.frames.push(frame);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(frame)) return true;
        w.resolve(frame);
        return false;
      });
    });
    ws.on('close', (code: number) => {
      this.closed = code;
    });
    ws.on('error', () => undefined);
  }

  static open(url: string): Promise<RpcClient> {
    const ws = new WebSocket(url);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no open within 10 s')), 10_000);
      ws.once('open', () => {
        clearTimeout(timer);
        resolve(new RpcClient(ws));
      });
      ws.once('error', reject);
    });
  }

  next(match: (f: unknown) => boolean, timeoutMs = 10_000): Promise<unknown> {
    const found = this.frames.find(match);
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (f: unknown) => {
          clearTimeout(timer);
          resolve(f);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`no matching frame within ${timeoutMs} ms; last ${JSON.stringify(this.frames.slice(-2))}`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** Sends raw text and waits for the answer with this id (or the one error answer of a frame with none). */
  ask(text: string, id: unknown = null): Promise<Json> {
    const from = this.frames.length;
    this.ws.send(text);
    return this.next(
      (f) => this.frames.indexOf(f) >= from && !Array.isArray(f) && (f as Json)['id'] === id,
    ) as Promise<Json>;
  }

  call(method: string, params: unknown[] = [], id: number | string = Math.floor(Math.random() * 1e9)): Promise<Json> {
    return this.ask(JSON.stringify({ jsonrpc: '2.0', id, method, params }), id);
  }
}

describe('/rpc bad input', () => {
  let anvil: Anvil;
  let gateway: GatewayProcess;
  let rpcUrl: string;
  let bystander: RpcClient;
  let bystanderSub: string;

  beforeAll(async () => {
    anvil = await startAnvil({ blockTimeSec: 1 });
    gateway = await startGateway(['--rpc', anvil.httpUrl, '--poll-interval-ms', '100']);
    rpcUrl = gateway.url.replace(/\/v1$/, '/rpc');
    bystander = await RpcClient.open(rpcUrl);
    bystanderSub = (await bystander.call('eth_subscribe', ['newHeads']))['result'] as string;
  });

  afterAll(async () => {
    bystander?.ws.close();
    await gateway?.stop();
    await anvil?.close();
  });

  /** Resolves once the bystander gets another head (it was not disturbed). */
  const bystanderStillReceives = async (): Promise<void> => {
    const seen = bystander.frames.length;
    await bystander.next(
      (f) =>
        bystander.frames.indexOf(f) >= seen &&
        (f as Json)['method'] === 'eth_subscription' &&
        ((f as Json)['params'] as Json)['subscription'] === bystanderSub,
      15_000,
    );
  };

  it.each([
    ['invalid JSON', '{"jsonrpc":"2.0","id":1,"method":', null, -32_700],
    ['a number', '42', null, -32_600],
    ['a string', '"eth_chainId"', null, -32_600],
    ['no jsonrpc', '{"id":7,"method":"eth_chainId"}', 7, -32_600],
    ['params not a list', '{"jsonrpc":"2.0","id":8,"method":"eth_chainId","params":{"a":1}}', 8, -32_602],
    ['an unknown method', '{"jsonrpc":"2.0","id":9,"method":"eth_doesNotExist","params":[]}', 9, -32_601],
    [
      'a disallowed method',
      '{"jsonrpc":"2.0","id":10,"method":"anvil_setBalance","params":["0x0000000000000000000000000000000000000001","0x1"]}',
      10,
      -32_601,
    ],
    ['evm_ methods', '{"jsonrpc":"2.0","id":11,"method":"evm_mine","params":[]}', 11, -32_601],
    [
      'debug_ methods',
      '{"jsonrpc":"2.0","id":12,"method":"debug_traceBlockByNumber","params":["latest"]}',
      12,
      -32_601,
    ],
    ['an unknown subscription', '{"jsonrpc":"2.0","id":13,"method":"eth_subscribe","params":["syncing"]}', 13, -32_602],
    [
      'a bad logs filter',
      '{"jsonrpc":"2.0","id":14,"method":"eth_subscribe","params":["logs",{"address":"0x12"}]}',
      14,
      -32_602,
    ],
    [
      'too many topics',
      `{"jsonrpc":"2.0","id":15,"method":"eth_subscribe","params":["logs",{"topics":[null,null,null,null,null]}]}`,
      15,
      -32_602,
    ],
    ['an empty batch', '[]', null, -32_600],
  ])(
    'answers %s with a JSON-RPC error; the socket stays open; others keep receiving',
    async (_what, text, id, code) => {
      const client = await RpcClient.open(rpcUrl);
      const answer = await client.ask(text, id);
      expect(answer).toMatchObject({ jsonrpc: '2.0', id, error: { code } });
      expect(typeof (answer['error'] as Json)['message']).toBe('string');
      // Still open and answering.
      expect(await client.call('eth_chainId', [], 'after')).toMatchObject({ result: '0x7a69' });
      expect(client.closed).toBeUndefined();
      client.ws.close();
      await bystanderStillReceives();
    },
  );

  it('answers a batch of 1,000 with one error and keeps the socket; a batch within the limit is answered in order', async () => {
    const client = await RpcClient.open(rpcUrl);
    const batch = Array.from({ length: 1000 }, (_, i) => ({
      jsonrpc: '2.0',
      id: i,
      method: 'eth_chainId',
      params: [],
    }));
    const answer = await client.ask(JSON.stringify(batch), null);
    expect(answer).toMatchObject({ error: { code: -32_005 } });
    expect((answer['error'] as Json)['message']).toMatch(/1000 requests: at most 100/);
    const from = client.frames.length;
    client.ws.send(
      JSON.stringify([
        { jsonrpc: '2.0', id: 'a', method: 'eth_chainId', params: [] },
        { jsonrpc: '2.0', id: 'b', method: 'no_such_method', params: [] },
        { jsonrpc: '2.0', method: 'eth_chainId', params: [] },
        { jsonrpc: '2.0', id: 'c', method: 'net_version', params: [] },
        7,
      ]),
    );
    const answers = (await client.next((f) => client.frames.indexOf(f) >= from && Array.isArray(f))) as Json[];
    expect(answers.map((a) => a['id'])).toEqual(['a', 'b', 'c', null]);
    expect(answers[0]).toMatchObject({ result: '0x7a69' });
    expect(answers[1]).toMatchObject({ error: { code: -32_601 } });
    expect(answers[2]).toMatchObject({ result: '31337' });
    expect(answers[3]).toMatchObject({ error: { code: -32_600 } });
    client.ws.close();
    await bystanderStillReceives();
  });

  it('answers eth_unsubscribe of an id that does not exist (or is another connection’s) with an error, as geth does', async () => {
    const notFound = { error: { code: -32_000, message: 'subscription not found' } };
    const client = await RpcClient.open(rpcUrl);
    expect(await client.call('eth_unsubscribe', ['0x0123456789abcdef0123456789abcdef'])).toMatchObject(notFound);
    expect(await client.call('eth_unsubscribe', [bystanderSub])).toMatchObject(notFound);
    const own = (await client.call('eth_subscribe', ['newHeads']))['result'] as string;
    expect(await client.call('eth_unsubscribe', [own])).toMatchObject({ result: true });
    expect(await client.call('eth_unsubscribe', [own])).toMatchObject(notFound);
    expect(await client.call('eth_unsubscribe', [])).toMatchObject({ error: { code: -32_602 } });
    client.ws.close();
    await bystanderStillReceives();
  });

  it('refuses a chain it does not serve at upgrade with 404', async () => {
    const refused = await tryUpgrade(`${rpcUrl}/1`);
    expect(refused.status).toBe(404);
    expect(refused.body).toMatch(/chain 1 is not served here; chains are 31337/);
    const client = await RpcClient.open(`${rpcUrl}/31337`);
    expect(await client.call('eth_chainId')).toMatchObject({ result: '0x7a69' });
    client.ws.close();
  });

  it('closes a frame past the message limit with 1009, and the bystander is not disturbed', async () => {
    const client = await RpcClient.open(rpcUrl);
    const closed = new Promise<number>((resolve) => client.ws.once('close', resolve));
    client.ws.send(`{"jsonrpc":"2.0","id":1,"method":"eth_call","params":["${'a'.repeat(1_100_000)}"]}`);
    expect(await closed).toBe(1009);
    await bystanderStillReceives();
  });
});
