// Runs Sluice for tests: in this process (startTestSluice) or as a real child
// process of the `sluice` CLI (spawnSluice), each on free ports and its own data
// directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { TestClock, type Clock } from '../../src/clock.js';
import { parseConfigText } from '../../src/config/load.js';
import { startSluice, type Sluice } from '../../src/main.js';
import { createLogger } from '../../src/observability/logger.js';
import { SmtpClient } from './smtp-client.js';
import { tempDir } from './temp.js';

export const TEST_TOKEN = 'test-token-0123456789abcdef';
export const CLI = fileURLToPath(new URL('../../src/cli/index.js', import.meta.url));

type Ctx = Pick<TestContext, 'after'>;
export type ConfigInput = Record<string, unknown>;

function withDefaults(dataDir: string, config: ConfigInput): ConfigInput {
  return {
    node: 'test',
    hostname: 'sluice.test',
    dataDir,
    listeners: [{ name: 'inbound', listen: '127.0.0.1:0' }],
    // no routes unless a test gives some: accepted mail stays in the store (Unreachable)
    routes: [],
    management: { listen: '127.0.0.1:0', token: TEST_TOKEN },
    ...config,
  };
}

export type LogEntry = Record<string, unknown> & { msg: string };

export interface TestSluice {
  sluice: Sluice;
  port: number;
  clock: TestClock;
  dataDir: string;
  /** The config file it runs with (its `source`, for reloads). */
  configPath: string;
  /** Writes a new config file (same data directory, listeners and management as now unless given). */
  rewriteConfig(config: ConfigInput): Promise<void>;
  /** Every log entry so far (debug and above), parsed. */
  logs: LogEntry[];
  /** Resolves with the first log entry that matches (waiting for it if need be). */
  waitForLog(match: (entry: LogEntry) => boolean, timeoutMs?: number): Promise<LogEntry>;
}

/** A pino destination that keeps entries for the test, echoing them when SLUICE_TEST_LOG is set. */
function logCollector(entries: LogEntry[]): NodeJS.WritableStream {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        entries.push(JSON.parse(line) as LogEntry);
        if (process.env.SLUICE_TEST_LOG) process.stdout.write(line + '\n');
      }
      done();
    },
  });
}

export async function startTestSluice(t: Ctx, config: ConfigInput = {}, clock: Clock = new TestClock()): Promise<TestSluice> {
  const dataDir = await tempDir(t);
  const configPath = join(dataDir, 'sluice.yaml');
  // debug: message events (received, routed, delivered...) are in the log the tests read
  const text = (input: ConfigInput) => stringify(withDefaults(join(dataDir, 'data'), { log: { level: 'debug' }, ...input }));
  await writeFile(configPath, text(config));
  const parsed = parseConfigText(text(config), configPath);
  const logs: LogEntry[] = [];
  const sluice = await startSluice(parsed, { clock, logger: createLogger(parsed.log.level, logCollector(logs)), source: configPath });
  t.after(() => {
    SmtpClient.closeAll();
    return sluice.stop();
  });
  return {
    sluice,
    port: sluice.listeners[0]!.address.port,
    clock: clock as TestClock,
    dataDir: join(dataDir, 'data'),
    configPath,
    rewriteConfig: (next) => writeFile(configPath, text(next)),
    logs,
    async waitForLog(match, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = logs.find(match);
        if (found) return found;
        if (Date.now() > deadline) throw new Error('no matching log entry');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
  };
}

export interface SluiceProcess {
  child: ChildProcess;
  managementPort: number;
  /** Listener name → port. */
  ports: Map<string, number>;
  port: number;
  dataDir: string;
  configPath: string;
  logLines: string[];
  exited: Promise<number | null>;
  /** Peak and current resident set size of the process, in KiB. */
  memory(): Promise<{ rssKb: number; peakKb: number }>;
  kill9(): Promise<void>;
  stop(): Promise<number | null>;
}

/**
 * Starts `sluice start --config` in a child process and waits until it has started (needs log level info or finer).
 * `wrapper`: a command that runs it, such as `['strace', '-f', ...]`; signals then go to the wrapper.
 */
export async function spawnSluice(t: Ctx, config: ConfigInput = {}, dir?: string, wrapper: string[] = []): Promise<SluiceProcess> {
  const base = dir ?? (await tempDir(t));
  const dataDir = join(base, 'data');
  const configPath = join(base, 'sluice.yaml');
  const full = withDefaults(dataDir, { log: { level: 'info' }, ...config });
  await writeFile(configPath, stringify(full));
  const listenerCount = (full.listeners as unknown[]).length;
  const [command, ...args] = [...wrapper, process.execPath, CLI, 'start', '--config', configPath];
  const child = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ports = new Map<string, number>();
  let managementPort = 0;
  let started = false;
  const logLines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logLines.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; listener?: string; port?: number };
        if (entry.msg === 'listener started' && entry.listener && entry.port) ports.set(entry.listener, entry.port);
        if (entry.msg === 'management listening' && entry.port) managementPort = entry.port;
        if (entry.msg === 'sluice started') started = true;
        if (ports.size === listenerCount && managementPort && started) resolve();
      } catch {
        // not a log line
      }
    });
    void exited.then((code) => reject(new Error(`sluice exited with ${code} before it was ready: ${stderr}`)));
  });
  const timeout = setTimeout(() => child.kill('SIGKILL'), 30_000);
  try {
    await ready;
  } finally {
    clearTimeout(timeout);
  }
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return {
    child,
    managementPort,
    ports,
    port: [...ports.values()][0]!,
    dataDir,
    configPath,
    logLines,
    exited,
    async memory() {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
      const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
      return { rssKb: field('VmRSS'), peakKb: field('VmHWM') };
    },
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
}
