import { readdirSync, readFileSync, statSync } from 'node:fs';

/** The soft limit of open files of this process (`ulimit -n`); `undefined` where it is not known or unlimited. */
export function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = Number(line?.slice('Max open files'.length).trim().split(/\s+/)[0]);
    return Number.isSafeInteger(soft) && soft > 0 ? soft : undefined;
  } catch {
    return undefined;
  }
}

/**
 * How to count this process's open files: cheap on Linux 6.2 and later (the size of
 * /proc/self/fd is the count), a listing of /proc/self/fd before that; `undefined` where there is
 * no /proc.
 */
export function openFilesCounter(): { readonly count: () => number; readonly cheap: boolean } | undefined {
  try {
    if (statSync('/proc/self/fd').size > 0) return { count: () => statSync('/proc/self/fd').size, cheap: true };
    readdirSync('/proc/self/fd');
    return { count: () => readdirSync('/proc/self/fd').length, cheap: false };
  } catch {
    return undefined;
  }
}

/**
 * Connections the process may hold when no limit is configured: its open-files limit less a
 * reserve (a tenth, at least 128) for the node's links, files, and handshakes in progress.
 */
export function connectionsFor(openFiles: number): number {
  return Math.max(1, openFiles - Math.max(128, Math.ceil(openFiles / 10)));
}
