// Small helpers shared by the benchmarks: rounding and ratios, bounded waits that poll a
// condition, periodic progress, a process's memory from /proc and a directory's disk usage.
import { readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

/** a ÷ b to two decimals, or null when either side is missing or b is 0. */
export function ratioOf(a: number | null | undefined, b: number | null | undefined): number | null {
  if (typeof a !== 'number' || typeof b !== 'number' || b === 0) return null;
  return round2(a / b);
}

/** Messages per second, rounded; 0 for an empty interval. */
export function perSecond(messages: number, seconds: number): number {
  return seconds > 0 ? Math.round(messages / seconds) : 0;
}

export function secondsSince(startMs: number, endMs = performance.now()): number {
  return round2((endMs - startMs) / 1000);
}

/**
 * Polls `done()` every `everyMs` until it is true (resolves true) or `timeoutMs` has passed
 * (resolves false); rejects when `signal` is aborted.
 */
export async function waitUntil(done: () => boolean, options: { signal: AbortSignal; timeoutMs: number; everyMs?: number }): Promise<boolean> {
  const deadline = performance.now() + options.timeoutMs;
  while (!done()) {
    options.signal.throwIfAborted();
    if (performance.now() >= deadline) return false;
    await sleep(options.everyMs ?? 20, undefined, { signal: options.signal });
  }
  return true;
}

/** waitUntil for a condition that needs an await (an HTTP request, say); polls every `everyMs` (default 200). */
export async function pollUntil(done: () => Promise<boolean>, options: { signal: AbortSignal; timeoutMs: number; everyMs?: number }): Promise<boolean> {
  const deadline = performance.now() + options.timeoutMs;
  while (!(await done())) {
    options.signal.throwIfAborted();
    if (performance.now() >= deadline) return false;
    await sleep(options.everyMs ?? 200, undefined, { signal: options.signal });
  }
  return true;
}

/** Calls `report` every `everyMs` until the returned function is called. */
export function every(everyMs: number, report: () => void): () => void {
  const timer = setInterval(report, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}

export interface Memory {
  /** Resident set size now (VmRSS), MiB. */
  rssMiB: number;
  /** Peak resident set size since the process started (VmHWM), MiB. */
  peakMiB: number;
}

/** A running process's memory from /proc/PID/status, or undefined once it is gone. */
export function memoryOf(pid: number): Memory | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return undefined;
  }
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMiB: round2(kib('VmRSS') / 1024), peakMiB: round2(kib('VmHWM') / 1024) };
}

export interface DiskUsage {
  /** Blocks allocated to the directory's files, MB (10^6 bytes), as `du` counts them. */
  allocatedMB: number;
  /** Each file's length in bytes, by its path under the directory (`tracking/…` for the tracking log). */
  files: Record<string, number>;
}

/** The files in `dir` and its subdirectories (a Sluice data directory has `tracking/`). */
export async function diskUsage(dir: string): Promise<DiskUsage> {
  const files: Record<string, number> = {};
  let allocated = 0;
  const walk = async (path: string, prefix: string): Promise<void> => {
    for (const entry of (await readdir(path, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const full = join(path, entry.name);
      if (entry.isDirectory()) {
        await walk(full, `${prefix}${entry.name}/`);
        continue;
      }
      const info = await stat(full);
      files[prefix + entry.name] = info.size;
      allocated += info.blocks * 512;
    }
  };
  await walk(dir, '');
  return { allocatedMB: round2(allocated / 1e6), files };
}
