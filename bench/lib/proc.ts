/**
 * What the kernel says of a process: CPU time from /proc/<pid>/stat (utime + stime, in clock
 * ticks) and resident memory from /proc/<pid>/status. Covers every thread of the process.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { openFilesLimit } from '../../src/transport/descriptors.ts';

let ticksPerSecond: number | undefined;

function clockTicksPerSecond(): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  return ticksPerSecond;
}

/** CPU time a process used so far, user and system, in µs. */
export interface CpuTime {
  readonly userUs: number;
  readonly systemUs: number;
}

/** The CPU time of process `pid` so far (all its threads). */
export function cpuTime(pid: number): CpuTime {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const usPerTick = 1e6 / clockTicksPerSecond();
  return { userUs: Number(fields[11]) * usPerTick, systemUs: Number(fields[12]) * usPerTick };
}

/** CPU used between two readings, in µs. */
export function cpuDelta(before: CpuTime, after: CpuTime): CpuTime {
  return { userUs: after.userUs - before.userUs, systemUs: after.systemUs - before.systemUs };
}

/** Resident memory of `pid` now and at its peak, in bytes. */
export function memory(pid: number): { rssBytes: number; peakRssBytes: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') };
}

/** The machine the figures come from. */
export interface MachineDescription {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly kernel: string;
  readonly cc: string;
  readonly maxOpenFiles: number;
}

/** Describes this machine: CPU model, cores, memory, Node.js, kernel, C compiler, file limit. */
export function describeMachine(): MachineDescription {
  const cpuInfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuInfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  let cc = 'unknown';
  try {
    cc = execFileSync('cc', ['--version']).toString().split('\n')[0] ?? cc;
  } catch {
    // Reported as unknown.
  }
  const maxOpenFiles = openFilesLimit() ?? 0;
  return {
    cpuModel: model.trim(),
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    cc,
    maxOpenFiles,
  };
}
