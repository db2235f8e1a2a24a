/**
 * The common approach: the `ws` library, one JavaScript loop over the clients per block, and
 * `JSON.stringify` of each client's message (as mempool.space's backend does). For activity,
 * each client's watched addresses are checked against every event of the block.
 */
import { type WebSocket, WebSocketServer } from 'ws';
import { toCursor } from '../../src/domain/cursor.ts';
import { blockActivity } from '../../src/domain/events.ts';
import type { ChainBlock, ChainTx, Hex } from '../../src/domain/types.ts';
import { toBlockHeader } from '../../src/fanout/Fanout.ts';
import { serveBenchControl, serverArgs } from '../lib/benchServer.ts';
import { BENCH_CHAIN_ID } from '../lib/synthetic.ts';

interface Client {
  readonly ws: WebSocket;
  sub: string | undefined;
  /** `blocks` with their transactions. */
  full: boolean;
  addresses: Set<string> | undefined;
}

const args = serverArgs();
const clients = new Set<Client>();
const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, clientTracking: false });

server.on('connection', (ws) => {
  const client: Client = { ws, sub: undefined, full: false, addresses: undefined };
  clients.add(client);
  ws.send(JSON.stringify({ type: 'welcome', protocol: 1, chains: [{ chainId: BENCH_CHAIN_ID, head: null }] }));
  ws.on('message', (data) => {
    const request = JSON.parse(String(data)) as { id?: number; channel: string; full?: boolean; addresses?: Hex[] };
    client.sub = 's1';
    client.full = request.full === true;
    if (request.addresses !== undefined) client.addresses = new Set(request.addresses.map((a) => a.toLowerCase()));
    ws.send(
      JSON.stringify({
        type: 'subscribed',
        id: request.id,
        sub: client.sub,
        channel: request.channel,
        chainId: BENCH_CHAIN_ID,
      }),
    );
  });
  ws.on('close', () => clients.delete(client));
  ws.on('error', () => clients.delete(client));
});

await new Promise<void>((resolve) => server.once('listening', () => resolve()));
const address = server.address();
const port = typeof address === 'object' && address !== null ? address.port : 0;

/** A transaction of a `full` block message, as the protocol gives it (input cut to its selector). */
function toTx(tx: ChainTx): Record<string, unknown> {
  const { hash, index, transfers: _transfers, input, ...rest } = tx;
  return { txHash: hash, txIndex: index, ...rest, input: input.slice(0, 10) };
}

function publishBlocks(block: ChainBlock): { frames: number; bytes: number } {
  const header = toBlockHeader(block);
  let frames = 0;
  let bytes = 0;
  for (const client of clients) {
    if (client.sub === undefined) continue;
    const text = JSON.stringify(
      client.full
        ? { type: 'block', sub: client.sub, ...header, transactions: block.transactions.map(toTx) }
        : { type: 'block', sub: client.sub, ...header },
    );
    client.ws.send(text);
    frames++;
    bytes += text.length;
  }
  return { frames, bytes };
}

function publishActivity(block: ChainBlock): { frames: number; bytes: number } {
  const entries = blockActivity(block);
  const blockRef = { number: block.number, hash: block.hash, timestamp: block.timestamp };
  const cursor = toCursor(block.chainId, block);
  let frames = 0;
  let bytes = 0;
  for (const client of clients) {
    const watched = client.addresses;
    if (client.sub === undefined || watched === undefined) continue;
    const events = entries.filter((entry) => entry.addresses.some((a) => watched.has(a))).map((entry) => entry.event);
    if (events.length === 0) continue;
    const text = JSON.stringify({
      type: 'activity',
      sub: client.sub,
      chainId: block.chainId,
      block: blockRef,
      cursor,
      events,
    });
    client.ws.send(text);
    frames++;
    bytes += text.length;
  }
  return { frames, bytes };
}

serveBenchControl(
  {
    port,
    publish: args.workload.channel === 'blocks' ? publishBlocks : publishActivity,
    stats: () => ({ connections: clients.size }),
    close: () => server.close(),
  },
  args.workload,
);
