import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

/** A redis-server started by a test, on loopback, with its own data folder (append-only file on). */
export interface RedisServer {
  /** `redis://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** The server's data folder (`--dir`), removed by {@link RedisServer.close}. */
  readonly dir: string;
  /** Stops the server (SIGTERM, SIGKILL after 10 s) and waits for it to exit; the data stays. */
  readonly stop: () => Promise<void>;
  /** Starts the server again on the same port and folder (after {@link RedisServer.stop} or kill). */
  readonly start: () => Promise<void>;
  /** Kills the server at once (SIGKILL), as a crash would; resolves once it exited. */
  readonly kill: () => Promise<void>;
  /** Runs one command (arguments as strings) and resolves with its reply, parsed (errors reject). */
  readonly command: (...args: string[]) => Promise<RespValue>;
  /** Empties every database (FLUSHALL): Redis as it is after losing its data. */
  readonly flush: () => Promise<void>;
  /** Everything the process printed so far (its log). */
  readonly output: () => string;
  /** Stops the server and removes its folder. */
  readonly close: () => Promise<void>;
}

/** A reply of the Redis protocol (RESP2), as {@link RedisServer.command} gives it. */
export type RespValue = string | number | null | RespValue[];

const READY_LINE = 'Ready to accept connections';
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
const COMMAND_TIMEOUT_MS = 5_000;
const MAX_OUTPUT_CHARS = 1_000_000;
const ATTEMPTS = 3;

function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitForExit(child: ChildProcess, signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
  if (hasExited(child)) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill(signal);
  });
}

/** Encodes one command in RESP (an array of bulk strings). */
function encodeCommand(args: readonly string[]): Buffer {
  const parts = [`*${args.length}\r\n`];
  for (const arg of args) parts.push(`$${Buffer.byteLength(arg)}\r\n${arg}\r\n`);
  return Buffer.from(parts.join(''));
}

/**
 * Parses one RESP2 reply at `start` of `buffer`: the value and where it ends, or `undefined`
 * when the reply is not complete yet.
 */
function parseReply(buffer: Buffer, start: number): { value: RespValue | Error; end: number } | undefined {
  const lineEnd = buffer.indexOf('\r\n', start);
  if (lineEnd === -1) return undefined;
  const type = String.fromCharCode(buffer[start] as number);
  const line = buffer.toString('utf8', start + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, end: next };
      if (buffer.length < next + length + 2) return undefined;
      return { value: buffer.toString('utf8', next, next + length), end: next + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let end = next;
      for (let index = 0; index < count; index++) {
        const item = parseReply(buffer, end);
        if (item === undefined) return undefined;
        if (item.value instanceof Error) return item;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      return { value: new Error(`unexpected reply type ${JSON.stringify(type)}`), end: buffer.length };
  }
}

/** Sends one command to 127.0.0.1:`port` on a connection of its own and resolves with its reply. */
export function redisCommand(
  port: number,
  args: readonly string[],
  timeoutMs = COMMAND_TIMEOUT_MS,
): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let received = Buffer.alloc(0);
    const finish = (error: Error | undefined, value?: RespValue): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error === undefined) resolve(value ?? null);
      else reject(error);
    };
    const timer = setTimeout(
      () => finish(new Error(`redis ${args[0] ?? ''}: no reply within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once('connect', () => socket.write(encodeCommand(args)));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const reply = parseReply(received, 0);
      if (reply === undefined) return;
      if (reply.value instanceof Error) finish(new Error(`redis ${args[0] ?? ''}: ${reply.value.message}`));
      else finish(undefined, reply.value);
    });
    socket.once('error', (error) => finish(error));
    socket.once('close', () => finish(new Error(`redis ${args[0] ?? ''}: connection closed before the reply`)));
  });
}

/**
 * Starts Debian's `redis-server` (from PATH) on a free loopback port with a temporary data folder
 * (append-only file, fsync on every write, no snapshots), and resolves once it answers. A port
 * taken between picking it and binding it is retried on another one, a bounded number of times.
 */
export async function startRedis(): Promise<RedisServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'blockcast-redis-'));
    try {
      return await createServerHandle(await freePort(), dir);
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      lastError = error;
      if (error instanceof Error && error.message.includes('apt-get install redis-server')) throw error;
    }
  }
  throw lastError;
}

async function createServerHandle(port: number, dir: string): Promise<RedisServer> {
  let child: ChildProcess | undefined;
  let output = '';
  const append = (chunk: Buffer): void => {
    if (output.length < MAX_OUTPUT_CHARS) output += chunk.toString();
  };

  const start = async (): Promise<void> => {
    if (child !== undefined && !hasExited(child)) throw new Error(`redis-server on port ${port} is already running`);
    child = await spawnServer(port, dir, append, () => output);
  };
  const stop = async (): Promise<void> => {
    if (child !== undefined) await waitForExit(child, 'SIGTERM', STOP_TIMEOUT_MS);
  };
  const kill = async (): Promise<void> => {
    if (child !== undefined) await waitForExit(child, 'SIGKILL', STOP_TIMEOUT_MS);
  };
  const command = (...args: string[]): Promise<RespValue> => redisCommand(port, args);

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    stop,
    start,
    kill,
    command,
    flush: async () => {
      await command('FLUSHALL');
    },
    output: () => output,
    close: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function spawnServer(
  port: number,
  dir: string,
  append: (chunk: Buffer) => void,
  output: () => string,
): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'always',
      '--save',
      '',
      '--protected-mode',
      'no',
      '--daemonize',
      'no',
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout.on('data', append);
  child.stderr.on('data', append);
  return new Promise((resolve, reject) => {
    const finish = (error?: Error): void => {
      clearTimeout(timer);
      clearInterval(poll);
      child.off('exit', onExit);
      child.off('error', onError);
      if (error === undefined) resolve(child);
      else reject(error);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(new Error(`redis-server on port ${port} was not ready within ${START_TIMEOUT_MS} ms:\n${output()}`));
    }, START_TIMEOUT_MS);
    // Ready once it logs so and answers PING (the log line comes first; the PING proves the port).
    const poll = setInterval(() => {
      if (!output().includes(READY_LINE)) return;
      redisCommand(port, ['PING'], 1000).then(
        (reply) => {
          if (reply === 'PONG') finish();
        },
        () => undefined,
      );
    }, 20);
    const onExit = (code: number | null): void =>
      finish(new Error(`redis-server on port ${port} exited with ${code} before it was ready:\n${output()}`));
    const onError = (error: NodeJS.ErrnoException): void =>
      finish(
        new Error(
          error.code === 'ENOENT'
            ? "redis-server is not installed: install Debian's redis-server (apt-get install redis-server)"
            : `redis-server did not start: ${error.message}`,
        ),
      );
    child.once('exit', onExit);
    child.once('error', onError);
  });
}
