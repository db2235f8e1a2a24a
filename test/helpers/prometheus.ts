import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

/** One sample of an instant query: its labels and value (a float, NaN and ±Inf included). */
export interface Sample {
  readonly metric: Record<string, string>;
  readonly value: number;
}

/** A Prometheus server started by a test, on loopback, with its own config and data folder. */
export interface PrometheusProcess {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** Evaluates an instant query at now; throws on a query error. */
  readonly query: (expr: string) => Promise<Sample[]>;
  /** Values of a label over the series that match `selector`. */
  readonly labelValues: (label: string, selector: string) => Promise<string[]>;
  /** Everything the process printed so far. */
  readonly output: () => string;
  /** Stops the server (SIGTERM, SIGKILL after 10 s) and removes its folder. */
  readonly close: () => Promise<void>;
}

/** Options of {@link startPrometheus}. */
export interface StartPrometheusOptions {
  /** `host:port` targets of the scrape job `blockcast`. */
  readonly targets: readonly string[];
  /** @default 1 */
  readonly scrapeIntervalSec?: number;
  /** How long to wait for "ready", in ms. @default 30000 */
  readonly startTimeoutMs?: number;
}

function stopChild(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function toNumber(value: string): number {
  // Prometheus writes NaN, +Inf and -Inf as strings; Number() reads "NaN" but not "+Inf".
  if (value === '+Inf') return Number.POSITIVE_INFINITY;
  if (value === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(value);
}

const ATTEMPTS = 3;

/**
 * Starts Debian's `prometheus` (from PATH) on a free loopback port with a temporary config that
 * scrapes `targets`, and resolves once it logs that it is ready. A port taken between picking it
 * and binding it is retried on another one, a bounded number of times.
 */
export async function startPrometheus(options: StartPrometheusOptions): Promise<PrometheusProcess> {
  let lastError: unknown;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    try {
      return await startOnce(options, await freePort());
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

function startOnce(options: StartPrometheusOptions, port: number): Promise<PrometheusProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'blockcast-prometheus-'));
  const interval = `${options.scrapeIntervalSec ?? 1}s`;
  const config = [
    'global:',
    `  scrape_interval: ${interval}`,
    `  scrape_timeout: ${interval}`,
    `  evaluation_interval: ${interval}`,
    'scrape_configs:',
    '  - job_name: blockcast',
    '    static_configs:',
    `      - targets: [${options.targets.map((t) => `'${t}'`).join(', ')}]`,
    '',
  ].join('\n');
  const configPath = join(dir, 'prometheus.yml');
  writeFileSync(configPath, config);
  const child = spawn(
    'prometheus',
    [
      `--config.file=${configPath}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const url = `http://127.0.0.1:${port}`;
  const close = async (): Promise<void> => {
    await stopChild(child, 10_000);
    rmSync(dir, { recursive: true, force: true });
  };

  const api = async <T>(path: string): Promise<T> => {
    const response = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) });
    const body = (await response.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? response.status}`);
    return body.data;
  };

  const query = async (expr: string): Promise<Sample[]> => {
    const data = await api<{ resultType: string; result: unknown }>(`/api/v1/query?query=${encodeURIComponent(expr)}`);
    if (data.resultType === 'scalar') {
      const [, value] = data.result as [number, string];
      return [{ metric: {}, value: toNumber(value) }];
    }
    if (data.resultType !== 'vector') throw new Error(`${expr}: unexpected result type ${data.resultType}`);
    return (data.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((s) => ({
      metric: s.metric,
      value: toNumber(s.value[1]),
    }));
  };

  const labelValues = (label: string, selector: string): Promise<string[]> =>
    api<string[]>(`/api/v1/label/${encodeURIComponent(label)}/values?match[]=${encodeURIComponent(selector)}`);

  return new Promise((resolve, reject) => {
    const timeoutMs = options.startTimeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      void close();
      reject(new Error(`prometheus was not ready within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      if (output.length < 1_000_000) output += chunk.toString();
      if (!output.includes('Server is ready to receive web requests')) return;
      clearTimeout(timer);
      child.stderr.off('data', onData);
      child.stderr.on('data', (more: Buffer) => {
        if (output.length < 1_000_000) output += more.toString();
      });
      resolve({ url, query, labelValues, output: () => output, close });
    };
    child.stderr.on('data', onData);
    child.stdout.on('data', (chunk: Buffer) => {
      if (output.length < 1_000_000) output += chunk.toString();
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      reject(new Error(`prometheus did not start (is Debian's prometheus package installed?): ${error.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      reject(new Error(`prometheus exited with ${code} before it was ready:\n${output}`));
    });
  });
}
