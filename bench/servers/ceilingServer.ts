/**
 * The ceiling: a bare uWebSockets.js server that does no work per subscriber. For `blocks` it
 * publishes one pre-encoded frame per block shape (the bytes the gateway sends) to a topic the
 * sockets of that shape joined; for `activity` it writes frames built before the block's publish
 * time to exactly the sockets the gateway would write, one corked write each.
 */
import uWS from 'uWebSockets.js';
import { type ChainBlock, EVENT_KINDS, type Hex } from '../../src/domain/types.ts';
import { DeliveryLedger } from '../../src/fanout/DeliveryLedger.ts';
import { type Frame, pack } from '../../src/fanout/encode.ts';
import { Fanout } from '../../src/fanout/Fanout.ts';
import { SubscriptionIndex } from '../../src/index/SubscriptionIndex.ts';
import { serveBenchControl, serverArgs } from '../lib/benchServer.ts';
import { BENCH_CHAIN_ID } from '../lib/synthetic.ts';

interface Peer {
  readonly encoding: 'msgpack';
  ws: uWS.WebSocket<Peer> | undefined;
}

/** Topics of the two block shapes: the header only, and the header with the transactions. */
const HEADER_TOPIC = 'blocks';
const FULL_TOPIC = 'blocks-full';

const args = serverArgs();
const activity = args.workload.channel === 'activity';
const index = new SubscriptionIndex<Peer>();
const kinds = new Set(EVENT_KINDS);
let connections = 0;

const welcome = pack({ type: 'welcome', protocol: 1, chains: [{ chainId: BENCH_CHAIN_ID, head: null }] });
const subscribed = pack({
  type: 'subscribed',
  id: 1,
  sub: 's1',
  channel: args.workload.channel,
  chainId: BENCH_CHAIN_ID,
});

// Frames come from the gateway's own encoder, so the ceiling writes the same bytes: for blocks,
// two stand-in subscribers (one per shape); for activity, the real subscribers' index.
const headerPeer: Peer = { encoding: 'msgpack', ws: undefined };
const fullPeer: Peer = { encoding: 'msgpack', ws: undefined };
const shapes = new SubscriptionIndex<Peer>();
shapes.add(headerPeer, 's1', BENCH_CHAIN_ID, { channel: 'blocks', full: false, fullInput: false });
shapes.add(fullPeer, 's1', BENCH_CHAIN_ID, { channel: 'blocks', full: true, fullInput: false });
let recorded: Array<[Peer, readonly Frame[]]> = [];
const record = (peer: Peer, frames: readonly Frame[]): void => {
  recorded.push([peer, frames]);
};
const blockEncoder = new Fanout<Peer>(shapes, record);
const activityEncoder = new Fanout<Peer>(index, record);

/** What to write for each block, made before its publish time. */
const ready = new Map<ChainBlock, Array<[Peer, readonly Frame[]]>>();

const app = uWS.App().ws<Peer>('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 1_048_576,
  maxBackpressure: args.maxBackpressureBytes,
  closeOnBackpressureLimit: 1,
  idleTimeout: 960,
  sendPingsAutomatically: true,
  upgrade: (res, req, context) => {
    res.upgrade<Peer>(
      { encoding: 'msgpack', ws: undefined },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    ws.getUserData().ws = ws;
    connections++;
    ws.send(welcome, true);
  },
  message: (ws, data) => {
    const peer = ws.getUserData();
    const request = JSON.parse(Buffer.from(data).toString()) as { addresses?: Hex[]; full?: boolean };
    if (activity) {
      index.add(peer, 's1', BENCH_CHAIN_ID, { channel: 'activity', kinds }, request.addresses ?? []);
    } else {
      ws.subscribe(request.full === true ? FULL_TOPIC : HEADER_TOPIC);
    }
    ws.send(subscribed, true);
  },
  close: (ws) => {
    connections--;
    ws.getUserData().ws = undefined;
  },
});

const listenSocket = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
  app.listen('127.0.0.1', 0, (token) => {
    if (token === false) reject(new Error('ceiling: cannot listen'));
    else resolve(token);
  });
});

const sizeOf = (frame: Frame): number => (typeof frame === 'string' ? frame.length : frame.byteLength);

serveBenchControl(
  {
    port: uWS.us_socket_local_port(listenSocket),
    prepare: (block) => {
      recorded = [];
      (activity ? activityEncoder : blockEncoder).publishBlock(block, 0, new DeliveryLedger());
      ready.set(block, recorded);
    },
    publish: (block) => {
      const writes = ready.get(block) ?? [];
      ready.delete(block);
      let frames = 0;
      let bytes = 0;
      if (!activity) {
        for (const [peer, list] of writes) {
          const frame = list[0] as Frame;
          const topic = peer === fullPeer ? FULL_TOPIC : HEADER_TOPIC;
          const subscribers = app.numSubscribers(topic);
          if (subscribers === 0) continue;
          app.publish(topic, frame, true);
          frames += subscribers;
          bytes += subscribers * sizeOf(frame);
        }
        return { frames, bytes };
      }
      for (const [peer, list] of writes) {
        const ws = peer.ws;
        if (ws === undefined) continue;
        ws.cork(() => {
          for (const frame of list) {
            ws.send(frame, true);
            frames++;
            bytes += sizeOf(frame);
          }
        });
      }
      return { frames, bytes };
    },
    stats: () => ({ connections }),
    close: () => uWS.us_listen_socket_close(listenSocket),
  },
  args.workload,
);
