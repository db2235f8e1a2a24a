import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A gateway process started by a test, as `npm start` starts it. */
export interface GatewayProcess {
  readonly port: number;
  /** `ws://127.0.0.1:PORT/v1` */
  readonly url: string;
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

/** Runs `src/main.ts` with `args` on a free loopback port and waits for its URL (bounded). */
export function startGateway(
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<GatewayProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/main.ts', '--host', '127.0.0.1', '--port', '0', ...args],
    {
      cwd: ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
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
      const m = /listening on ws:\/\/127\.0\.0\.1:(\d+)\/v1/.exec(output);
      if (m === null) return;
      clearTimeout(timer);
      const port = Number(m[1]);
      const devnet = /devnet: anvil at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      resolve({
        port,
        url: `ws://127.0.0.1:${port}/v1`,
        httpUrl: `http://127.0.0.1:${port}`,
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
