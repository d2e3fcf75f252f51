// Reads delivery reports with an independent RFC 3464 reader (Python's email
// package), and drives the test clock through hours of schedule.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestClock } from '../../src/clock.js';
import type { TestSluice } from './sluice.js';

const PARSER = fileURLToPath(new URL('../../../test/support/parse_dsn.py', import.meta.url));

export interface ParsedReport {
  content_type: string;
  report_type: string;
  from: string;
  to: string;
  subject: string;
  auto_submitted: string;
  part_types: string[];
  human: string;
  per_message: Record<string, string>;
  recipients: Array<Record<string, string>>;
  original_subject?: string;
  original_body?: string;
  original_headers?: string;
}

export function parseReport(message: Buffer): ParsedReport {
  return JSON.parse(execFileSync('python3', [PARSER], { input: message }).toString()) as ParsedReport;
}

export const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until no store request and no delivery connection is busy, and the log has been still for a moment. */
async function quiet(sluice: TestSluice): Promise<void> {
  const deadline = Date.now() + 5000;
  let seen = -1;
  for (;;) {
    const busy = sluice.sluice.store.pendingOperations() > 0 || sluice.sluice.delivery.queues().some((q) => q.connections > q.idleConnections);
    if (!busy && sluice.logs.length === seen) return;
    if (Date.now() > deadline) return;
    seen = sluice.logs.length;
    await settle(25);
  }
}

/** Runs `durationMs` of test time, stopping at every timer until the work it started is done. */
export async function runClock(sluice: TestSluice, durationMs: number): Promise<void> {
  const clock: TestClock = sluice.clock;
  const end = clock.now() + durationMs;
  await quiet(sluice);
  for (;;) {
    const next = clock.nextTimerAt();
    if (next === undefined || next > end) break;
    clock.advance(Math.max(0, next - clock.now()));
    await quiet(sluice);
  }
  clock.advance(end - clock.now());
  await quiet(sluice);
}
