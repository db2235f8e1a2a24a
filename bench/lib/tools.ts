/**
 * What the benchmark scripts share before a run: the tools they need, the C load generator built
 * once into `bench/.build`, and the rotation that interleaves targets round by round.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root folder. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Where the benchmarks build the load generator and write their subscription files. */
export const BUILD_DIR = join(ROOT, 'bench', '.build');

/** Throws, naming `script`, when one of `tools` (each run with its version arguments) is missing. */
export function requireTools(script: string, tools: ReadonlyArray<readonly [string, readonly string[]]>): void {
  for (const [tool, args] of tools) {
    const result = spawnSync(tool, args, { stdio: 'ignore' });
    if (result.error !== undefined) throw new Error(`${script}: ${tool} is needed (${result.error.message})`);
  }
}

/** Compiles bench/loadgen/wsload.c into {@link BUILD_DIR}; returns the binary's path. */
export function buildLoadgen(): string {
  mkdirSync(BUILD_DIR, { recursive: true });
  const out = join(BUILD_DIR, 'wsload');
  execFileSync('cc', ['-O2', '-Wall', '-o', out, join(ROOT, 'bench', 'loadgen', 'wsload.c')], { stdio: 'inherit' });
  return out;
}

/** `items` turned by `by` places: round `by` starts with a different target. */
export function rotate<T>(items: readonly T[], by: number): T[] {
  return items.map((_, i) => items[(i + by) % items.length] as T);
}
