/**
 * Sends fuzz frames (test/helpers/fuzzFrames.ts) to a gateway over several connections, both
 * encodings, and prints one JSON line with what happened. Run as its own process so that the
 * process measuring the gateway is not the one loading it:
 *
 *   node --import tsx test/helpers/fuzzer.ts --url ws://127.0.0.1:PORT/v1 --frames 100000 --seed 1
 *
 * Pacing: after every `--batch` frames (default 200) a connection sends a ping and waits for its pong (or the
 * close). "Steady" connections also send a ping before the server would count 16 malformed
 * frames in a row; "reckless" ones do not, and are closed with 1008 now and then. A connection
 * the server closed is opened again. Progress lines (`{"progress":…}`) come every 5,000 frames;
 * the last line is `{"result":…}`. Bounded by `--frames` and `--max-seconds`.
 */
import { parseArgs } from 'node:util';
import { Packr } from 'msgpackr';
import { WebSocket } from 'ws';
import { createFrameGenerator, type FuzzFrame } from './fuzzFrames.ts';

/** What one fuzzer run did, as printed in its `result` line. */
export interface FuzzerResult {
  readonly seed: number;
  readonly connections: number;
  readonly framesSent: number;
  readonly bytesSent: number;
  readonly durationMs: number;
  readonly framesPerSecond: number;
  readonly framesByKind: Record<string, number>;
  /** Server messages by `type` (replies, and blocks of the subscriptions it made), `error:<code>` for errors. */
  readonly replies: Record<string, number>;
  /** Connections the server ended, by close code. */
  readonly closes: Record<string, number>;
  /** Closes that no frame sent on the connection explains (a steady connection closed with 1008, …). */
  readonly unexpectedCloses: readonly string[];
  readonly reconnects: number;
  /** Upgrades refused (HTTP 429 and the like) and tried again. */
  readonly refusedUpgrades: number;
  /** Pings whose pong did not come within the bound while the socket stayed open. */
  readonly pingTimeouts: number;
  readonly pings: number;
}

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    frames: { type: 'string', default: '100000' },
    seed: { type: 'string', default: '1' },
    connections: { type: 'string', default: '6' },
    reckless: { type: 'string', default: '1' },
    batch: { type: 'string', default: '200' },
    'max-seconds': { type: 'string', default: '60' },
    'max-message-bytes': { type: 'string', default: '1048576' },
    'rare-rate': { type: 'string', default: '0.0002' },
  },
});
if (values.url === undefined) throw new TypeError('--url is required');
const URL_BASE = values.url;
const FRAMES = Number(values.frames);
const SEED = Number(values.seed);
const CONNECTIONS = Number(values.connections);
const RECKLESS = Number(values.reckless);
const BATCH = Number(values.batch);
const MAX_MS = Number(values['max-seconds']) * 1000;
const MAX_MESSAGE_BYTES = Number(values['max-message-bytes']);
const RARE_RATE = Number(values['rare-rate']);
/** The server closes at the 17th malformed frame in a row; steady connections ping well before. */
const STEADY_RUN = 12;
const PONG_TIMEOUT_MS = 10_000;
const PROGRESS_EVERY = 5_000;

const packr = new Packr({ useRecords: false, variableMapSize: true });
const started = performance.now();
let framesSent = 0;
let bytesSent = 0;
let reconnects = 0;
let refusedUpgrades = 0;
let pingTimeouts = 0;
let pings = 0;
let nextProgress = PROGRESS_EVERY;
const framesByKind: Record<string, number> = {};
const replies: Record<string, number> = {};
const closes: Record<string, number> = {};
const unexpectedCloses: string[] = [];

function add(counts: Record<string, number>, key: string, n = 1): void {
  counts[key] = (counts[key] ?? 0) + n;
}

function done(): boolean {
  return framesSent >= FRAMES || performance.now() - started > MAX_MS;
}

/** One open connection: its replies are counted; `pong` and `close` wake whoever waits. */
class FuzzConnection {
  readonly ws: WebSocket;
  closed: { code: number; reason: string } | undefined;
  #wake: (() => void) | undefined;
  #pongs = new Set<string>();

  constructor(ws: WebSocket, binary: boolean) {
    this.ws = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const message = (binary && isBinary ? packr.unpack(data) : JSON.parse(data.toString())) as Record<
        string,
        unknown
      >;
      const type = String(message['type']);
      add(replies, type === 'error' ? `error:${String(message['code'])}` : type);
      if (type === 'pong' && typeof message['id'] === 'string') {
        this.#pongs.add(message['id']);
        this.#wake?.();
      }
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      this.#wake?.();
    });
    ws.on('error', () => {
      // Surfaced through `close`.
    });
  }

  /** Resolves with true once the pong `id` came, false when the socket closed or time ran out. */
  async waitPong(id: string): Promise<boolean> {
    const deadline = performance.now() + PONG_TIMEOUT_MS;
    while (!this.#pongs.delete(id)) {
      if (this.closed !== undefined) return false;
      const left = deadline - performance.now();
      if (left <= 0) {
        pingTimeouts++;
        return false;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    return true;
  }

  /** Resolves once the socket closed (bounded; terminates it past the bound). */
  async waitClose(): Promise<void> {
    const deadline = performance.now() + PONG_TIMEOUT_MS;
    while (this.closed === undefined && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - performance.now());
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
    if (this.closed === undefined) {
      unexpectedCloses.push('socket still open 10 s after a frame that must end it');
      this.ws.terminate();
    }
  }
}

/** Opens a connection (tries again for a while when the upgrade is refused). */
async function connect(binary: boolean): Promise<FuzzConnection> {
  for (let attempt = 0; ; attempt++) {
    const ws = new WebSocket(binary ? URL_BASE : `${URL_BASE}?encoding=json`);
    const opened = await new Promise<boolean>((resolve) => {
      ws.once('open', () => resolve(true));
      ws.once('error', () => resolve(false));
      ws.once('unexpected-response', () => resolve(false));
    });
    if (opened) return new FuzzConnection(ws, binary);
    ws.terminate();
    refusedUpgrades++;
    if (attempt >= 100) throw new Error('the gateway refused 100 upgrades in a row');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

let pingCounter = 0;

function sendPing(conn: FuzzConnection, binary: boolean): string {
  const id = `fz${++pingCounter}`;
  const message = { op: 'ping', id };
  conn.ws.send(binary ? packr.pack(message) : JSON.stringify(message), { binary });
  pings++;
  return id;
}

function sendFrame(conn: FuzzConnection, frame: FuzzFrame): void {
  conn.ws.send(frame.data, { binary: frame.binary });
  framesSent++;
  bytesSent += typeof frame.data === 'string' ? Buffer.byteLength(frame.data) : frame.data.byteLength;
  add(framesByKind, frame.kind);
  if (framesSent >= nextProgress) {
    nextProgress += PROGRESS_EVERY;
    process.stdout.write(
      `${JSON.stringify({ progress: { frames: framesSent, elapsedMs: Math.round(performance.now() - started) } })}\n`,
    );
  }
}

/** Explains a close by what the connection sent last; records it when nothing does. */
function recordClose(conn: FuzzConnection, expected: FuzzFrame['outcome'] | undefined, reckless: boolean): void {
  const code = conn.closed?.code ?? 0;
  add(closes, String(code));
  const explained =
    (code === 1009 && expected === 'close1009') ||
    (code === 1006 && expected === 'dropUtf8') ||
    // A reckless connection may pass 16 malformed frames in a row before its ending frame is read.
    (code === 1008 && reckless);
  if (!explained) {
    unexpectedCloses.push(`close ${code} "${conn.closed?.reason ?? ''}" after ${expected ?? 'ordinary frames'}`);
  }
}

async function runConnection(index: number): Promise<void> {
  const binary = index % 2 === 0;
  const reckless = index < RECKLESS;
  const generate = createFrameGenerator(SEED * 1_000 + index, {
    maxMessageBytes: MAX_MESSAGE_BYTES,
    rareRate: RARE_RATE,
  });
  let first = true;
  while (!done()) {
    if (!first) reconnects++;
    first = false;
    const conn = await connect(binary);
    let malformedRun = 0;
    let ending: FuzzFrame['outcome'] | undefined;
    while (!done() && conn.closed === undefined && ending === undefined) {
      for (let i = 0; i < BATCH && !done() && conn.closed === undefined; i++) {
        const frame = generate();
        if (!reckless && frame.outcome !== 'valid' && malformedRun >= STEADY_RUN) {
          // A valid message resets the server's count of malformed frames in a row.
          if (!(await conn.waitPong(sendPing(conn, binary)))) break;
          malformedRun = 0;
        }
        sendFrame(conn, frame);
        if (frame.outcome === 'close1009' || frame.outcome === 'dropUtf8') {
          ending = frame.outcome;
          break;
        }
        malformedRun = frame.outcome === 'valid' ? 0 : malformedRun + 1;
      }
      if (ending !== undefined) break;
      if (conn.closed === undefined && (await conn.waitPong(sendPing(conn, binary)))) malformedRun = 0;
    }
    if (ending !== undefined) await conn.waitClose();
    if (conn.closed !== undefined) {
      recordClose(conn, ending, reckless);
    } else {
      conn.ws.close();
      await conn.waitClose();
    }
  }
}

await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => runConnection(i)));
const durationMs = performance.now() - started;
const result: FuzzerResult = {
  seed: SEED,
  connections: CONNECTIONS,
  framesSent,
  bytesSent,
  durationMs: Math.round(durationMs),
  framesPerSecond: Math.round(framesSent / (durationMs / 1000)),
  framesByKind,
  replies,
  closes,
  unexpectedCloses: unexpectedCloses.slice(0, 20),
  reconnects,
  refusedUpgrades,
  pingTimeouts,
  pings,
};
process.stdout.write(`${JSON.stringify({ result })}\n`);
