import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A gateway process started by a test, as `npm start` starts it. */
export interface GatewayProcess {
  readonly port: number;
  /** `ws://127.0.0.1:PORT/v1` (`wss://` with TLS) */
  readonly url: string;
  /** `http://127.0.0.1:PORT` (`https://` with TLS) */
  readonly httpUrl: string;
  /** The devnet's anvil URL when the gateway runs its embedded devnet. */
  readonly devnetRpc?: string;
  readonly process: ChildProcess;
  /** Everything the process printed so far. */
  readonly output: () => string;
  /** Resolves once the process has printed a line matching `pattern` (bounded). */
  readonly waitForOutput: (pattern: RegExp, timeoutMs?: number) => Promise<void>;
  /** Sends SIGTERM and resolves with the exit code (SIGKILL after `timeoutMs`). */
  readonly stop: (timeoutMs?: number) => Promise<number | null>;
}

/**
 * Runs `src/main.ts` with `args` on a free loopback port (or `port`) and waits for its URL
 * (bounded); its output is also kept. `openFiles` runs it under that limit of open files (`ulimit -n`); its pid is still
 * the gateway's.
 */
export function startGateway(
  args: readonly string[],
  options: {
    env?: Record<string, string>;
    timeoutMs?: number;
    openFiles?: number;
    port?: number;
    /** `null`: no `--host` at all (the gateway's own default). @default '127.0.0.1' */
    host?: string | null;
    /** What the process prints once it serves, its port in the first group. @default the gateway's URL */
    ready?: RegExp;
  } = {},
): Promise<GatewayProcess> {
  const port = String(options.port ?? 0);
  const host =
    options.host === undefined ? ['--host', '127.0.0.1'] : options.host === null ? [] : ['--host', options.host];
  const nodeArgs = ['--import', 'tsx', 'src/main.ts', ...host, '--port', port, ...args];
  const [command, commandArgs] =
    options.openFiles === undefined
      ? [process.execPath, nodeArgs]
      : ['/bin/sh', ['-c', `ulimit -n ${options.openFiles} && exec "$0" "$@"`, process.execPath, ...nodeArgs]];
  const child = spawn(command, commandArgs, {
    cwd: ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stop = async (timeoutMs = 15_000): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };
  return new Promise((resolve, reject) => {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`gateway printed no URL within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      const ready = options.ready?.exec(output);
      const m = options.ready === undefined ? /listening on ws(s?):\/\/127\.0\.0\.1:(\d+)\/v1/.exec(output) : null;
      if (m === null && (ready === null || ready === undefined)) return;
      clearTimeout(timer);
      const secure = m?.[1] ?? '';
      const port = Number(m?.[2] ?? ready?.[1]);
      const devnet = /devnet: anvil at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      resolve({
        port,
        url: `ws${secure}://127.0.0.1:${port}/v1`,
        httpUrl: `http${secure}://127.0.0.1:${port}`,
        ...(devnet?.[1] === undefined ? {} : { devnetRpc: devnet[1] }),
        process: child,
        output: () => output,
        waitForOutput: (pattern, waitMs = 15_000) =>
          new Promise<void>((done, fail) => {
            if (pattern.test(output)) {
              done();
              return;
            }
            let timer: NodeJS.Timeout | undefined;
            const check = (): void => {
              if (!pattern.test(output)) return;
              clearTimeout(timer);
              child.stdout.off('data', check);
              child.stderr.off('data', check);
              done();
            };
            timer = setTimeout(() => {
              child.stdout.off('data', check);
              child.stderr.off('data', check);
              fail(new Error(`no output matching ${pattern} within ${waitMs} ms`));
            }, waitMs);
            child.stdout.on('data', check);
            child.stderr.on('data', check);
          }),
        stop,
      });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gateway exited with ${code} before listening:\n${output}`));
    });
  });
}

/** Runs the gateway to its exit (for start-up failures); resolves with the code and output. */
export function runGatewayToExit(
  args: readonly string[],
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    output += c.toString();
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/**
 * A free loopback port below the kernel's range of ephemeral ports, so that no outgoing
 * connection can be given it while the gateway does not listen (bounded tries).
 */
export async function freeFixedPort(): Promise<number> {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32_768;
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * Math.max(1, Math.min(low, 32_768) - 20_000));
    const free = await new Promise<boolean>((resolve) => {
      const server = createNetServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port below the ephemeral range');
}

/** The gateway's /metrics, as text (bounded wait). */
export async function scrapeMetrics(gateway: GatewayProcess): Promise<string> {
  return (await fetch(`${gateway.httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
}

/** The value of one series of a scrape, named as Prometheus writes it (`name{labels}`); `undefined` when absent. */
export function seriesValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
