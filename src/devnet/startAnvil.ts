import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { GatewayError } from '../domain/errors.ts';

/** Options of {@link startAnvil}. */
export interface StartAnvilOptions {
  /** Seconds between blocks; `undefined` mines one block per transaction. */
  readonly blockTimeSec?: number;
  /**
   * Slots per epoch: anvil answers the `safe` tag one epoch and `finalized` two epochs behind its
   * head. @default 32 (anvil's own)
   */
  readonly slotsInAnEpoch?: number;
  /** Mine only on `evm_mine` (deterministic tests). @default false */
  readonly noMining?: boolean;
  /** @default 31337 */
  readonly chainId?: number;
  /** Loopback port; 0 picks a free one. @default 0 */
  readonly port?: number;
  /** How long to wait for anvil to listen, in ms. @default 20000 */
  readonly startTimeoutMs?: number;
}

/** A running anvil node on loopback. */
export interface Anvil {
  readonly httpUrl: string;
  readonly wsUrl: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** Stops the node (SIGTERM, then SIGKILL after 3 s) and waits for it to exit. */
  readonly close: () => Promise<void>;
}

const PLATFORM_PACKAGES: Record<string, string> = {
  'linux-x64': '@foundry-rs/anvil-linux-amd64',
  'linux-arm64': '@foundry-rs/anvil-linux-arm64',
  'darwin-x64': '@foundry-rs/anvil-darwin-amd64',
  'darwin-arm64': '@foundry-rs/anvil-darwin-arm64',
};

/** Path of the anvil binary shipped by `@foundry-rs/anvil` for this platform. */
export function anvilBinaryPath(): string {
  const pkg = PLATFORM_PACKAGES[`${process.platform}-${process.arch}`];
  if (pkg === undefined) {
    throw new GatewayError('BAD_CONFIG', `no anvil binary for ${process.platform}-${process.arch}`);
  }
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve(`${pkg}/package.json`)), 'bin', 'anvil');
}

/** Spawns anvil on a loopback port and resolves once it listens. */
export function startAnvil(options: StartAnvilOptions = {}): Promise<Anvil> {
  const args = [
    '--host',
    '127.0.0.1',
    '--port',
    String(options.port ?? 0),
    '--chain-id',
    String(options.chainId ?? 31_337),
  ];
  if (options.blockTimeSec !== undefined) args.push('--block-time', String(options.blockTimeSec));
  if (options.noMining === true) args.push('--no-mining');
  if (options.slotsInAnEpoch !== undefined) args.push('--slots-in-an-epoch', String(options.slotsInAnEpoch));
  const child = spawn(anvilBinaryPath(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const close = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };

  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => {
      void close();
      reject(
        new GatewayError('RPC_FAILED', `anvil did not start within ${options.startTimeoutMs ?? 20_000} ms: ${output}`),
      );
    }, options.startTimeoutMs ?? 20_000);
    const onData = (chunk: Buffer): void => {
      if (output.length < 65_536) output += chunk.toString();
      const m = /Listening on 127\.0\.0\.1:(\d+)/.exec(output);
      if (m === null) return;
      clearTimeout(timer);
      child.stdout.off('data', onData);
      // Keep draining anvil's block log so its pipe never fills and stalls it.
      child.stdout.resume();
      const port = Number(m[1]);
      resolve({ httpUrl: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}`, port, process: child, close });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk: Buffer) => {
      if (output.length < 65_536) output += chunk.toString();
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new GatewayError('RPC_FAILED', `anvil failed to start: ${error.message}`, { cause: error }));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new GatewayError('RPC_FAILED', `anvil exited with ${code}: ${output}`));
    });
  });
}
