// Peers that Sluice is compared with in the same run. Postfix: find it (install it with the
// shared peer script only when BENCH_INSTALL_PEERS=1), configure and start it with postfix-setup.sh,
// empty its queue, run postfix-relay-bench.sh, and stop only what we started. Also smtp-sink, the next hop.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { once } from 'node:events';
import type { SMTPServer } from 'smtp-server';
import type { BenchContext } from './run.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SETUP_TIMEOUT_MS = 5 * 60_000;
const COMMAND_TIMEOUT_MS = 60_000;

export interface PostfixPeer {
  host: string;
  /** Postfix's benchmark listener (RELAY_PORT, 2625 in the peer scripts). */
  port: number;
  version: string;
  /** True when this run started Postfix (and will stop it at the end). */
  startedByBench: boolean;
  queueDirectory: string;
  /** Drops every queued message (`postsuper -d ALL`), then `postqueue -f` so a next hop marked dead is forgotten. */
  emptyQueue(): Promise<void>;
  /** Starts smtp-sink on SINK_PORT so Postfix delivers instead of deferring (none if something listens there already). */
  startSink(): Promise<SmtpSink | undefined>;
}

export type PostfixLookup = { peer: PostfixPeer } | { unavailable: string };

interface CommandResult {
  ok: boolean;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (bounded); never throws for a non-zero exit. */
export function command(file: string, args: string[], options: { signal?: AbortSignal; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CommandResult> {
  return new Promise((done) => {
    execFile(
      file,
      args,
      { timeout: options.timeoutMs ?? COMMAND_TIMEOUT_MS, signal: options.signal, env: options.env ?? process.env, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => done({ ok: !error, stdout: String(stdout), stderr: String(stderr) || (error?.message ?? '') }),
    );
  });
}

/** The file system type a path lives on (`stat -f`), e.g. "ext2/ext3"; fsync on tmpfs would prove nothing. */
export async function filesystemType(path: string): Promise<string> {
  const result = await command('stat', ['-f', '-c', '%T', path]);
  return result.ok ? result.stdout.trim() : 'unknown';
}

async function commandExists(name: string): Promise<boolean> {
  return (await command('sh', ['-c', `command -v ${name}`])).ok;
}

function peersDir(env: NodeJS.ProcessEnv): string {
  return env.PEERS_DIR ?? resolve(REPO_ROOT, '../shared/bench/peers');
}

/** Postfix ready on RELAY_PORT, installed/configured/started as needed, or why it cannot be. */
export async function preparePostfix(context: BenchContext): Promise<PostfixLookup> {
  const { env, signal } = context;
  const relayPort = Number(env.RELAY_PORT ?? 2625);
  const sinkPort = Number(env.SINK_PORT ?? 2626);
  if (process.getuid?.() !== 0) return { unavailable: 'Postfix comparison needs root (postfix, postsuper, smtp-sink -u postfix)' };

  const installed = (await commandExists('postfix')) && (await commandExists('smtp-sink'));
  if (!installed && env.BENCH_INSTALL_PEERS !== '1') {
    return { unavailable: 'Postfix is not installed; set BENCH_INSTALL_PEERS=1 to install it with postfix-setup.sh' };
  }
  const wasRunning = installed && (await command('postfix', ['status'], { signal })).ok;
  if (!wasRunning) context.defer(() => stopPostfix(context)); // also if the setup below half-fails
  if (!wasRunning || !(await configuredAsPeer(relayPort, sinkPort))) {
    context.progress(`${installed ? 'configuring and starting' : 'installing'} Postfix with postfix-setup.sh`);
    const setup = await command(resolve(peersDir(env), 'postfix-setup.sh'), [], {
      signal,
      timeoutMs: SETUP_TIMEOUT_MS,
      env: { ...env, RELAY_PORT: String(relayPort), SINK_PORT: String(sinkPort) },
    });
    if (!setup.ok) return { unavailable: `postfix-setup.sh failed: ${setup.stderr.trim().slice(-500)}` };
  }
  const queueDirectory = (await command('postconf', ['-h', 'queue_directory'])).stdout.trim();
  return {
    peer: {
      host: '127.0.0.1',
      port: relayPort,
      version: (await command('postconf', ['-h', 'mail_version'])).stdout.trim(),
      startedByBench: !wasRunning,
      queueDirectory,
      emptyQueue: async () => {
        await command('postsuper', ['-d', 'ALL']);
        await command('postqueue', ['-f']);
      },
      startSink: () => startPostfixSink(sinkPort, context),
    },
  };
}

/** Whether Postfix listens on RELAY_PORT and relays to the sink port, as postfix-setup.sh leaves it. */
async function configuredAsPeer(relayPort: number, sinkPort: number): Promise<boolean> {
  const listener = await command('postconf', ['-M', `127.0.0.1:${relayPort}/inet`]);
  const relayhost = await command('postconf', ['-h', 'relayhost']);
  return listener.ok && listener.stdout.trim() !== '' && relayhost.stdout.trim() === `[127.0.0.1]:${sinkPort}`;
}

async function stopPostfix(context: BenchContext): Promise<void> {
  context.progress('stopping Postfix (this run started it)');
  await command('postfix', ['stop']);
}

async function startPostfixSink(port: number, context: BenchContext): Promise<SmtpSink | undefined> {
  if (!(await listening('127.0.0.1', port))) return startSmtpSink(context, port);
  context.progress(`something already listens on 127.0.0.1:${port}; Postfix delivers to it`);
  return undefined;
}

/** A running smtp-sink (Postfix's test server: accepts and discards everything). */
export interface SmtpSink {
  port: number;
  /** Messages it has received so far (its -c counter). */
  received(): number;
  /** performance.now() when the first message arrived, and when the counter last went up (undefined before). */
  firstAt(): number | undefined;
  lastAt(): number | undefined;
  stop(): Promise<void>;
}

export function smtpSinkAvailable(): Promise<boolean> {
  return commandExists('smtp-sink');
}

/** Starts smtp-sink on 127.0.0.1:port (a free port when none is given) and waits until it listens. */
export async function startSmtpSink(context: BenchContext, port?: number): Promise<SmtpSink> {
  const sinkPort = port ?? (await freePort());
  const asUser = process.getuid?.() === 0 ? ['-u', 'postfix'] : [];
  const sink = spawn('smtp-sink', [...asUser, '-c', `127.0.0.1:${sinkPort}`, '1024'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const counter = sinkCounter(sink);
  const stop = () => stopChild(sink);
  context.defer(stop);
  for (let waited = 0; !(await listening('127.0.0.1', sinkPort)); waited += 100) {
    if (waited > 5000 || sink.exitCode !== null) throw new Error(`smtp-sink did not start on 127.0.0.1:${sinkPort}`);
    await sleep(100);
  }
  return { port: sinkPort, ...counter, stop };
}

/** smtp-sink -c rewrites one counter line, "sess=… quit=… mesg=N\r", whenever a message ends. */
function sinkCounter(sink: ChildProcess): Pick<SmtpSink, 'received' | 'firstAt' | 'lastAt'> {
  let received = 0;
  let firstAt: number | undefined;
  let lastAt: number | undefined;
  let partial = '';
  sink.stdout!.setEncoding('latin1').on('data', (text: string) => {
    const records = (partial + text).split('\r');
    partial = records.pop() ?? '';
    const mesg = records.map((record) => Number(/mesg=(\d+)/.exec(record)?.[1] ?? 0)).reduce((a, b) => Math.max(a, b), 0);
    if (mesg <= received) return;
    received = mesg;
    lastAt = performance.now();
    firstAt ??= lastAt;
  });
  return { received: () => received, firstAt: () => firstAt, lastAt: () => lastAt };
}

/** A port nothing listens on right now (the kernel's choice for port 0). */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => done(port));
    });
  });
}

function listening(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect({ host, port });
    socket.setTimeout(1000, () => socket.destroy());
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
  });
}

/** SIGTERM, then SIGKILL if it has not exited after `graceMs`. Idempotent. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Settings for the shared Postfix baseline script. */
export interface PostfixScriptLoad {
  messages: number;
  sessions: number;
  bodyBytes: number;
  /** The script's TIMEOUT: the longest of each of its waits. */
  timeoutS: number;
}

/**
 * Runs `postfix-relay-bench.sh MODE` (relay or drain) from the peer scripts, on the Postfix that
 * preparePostfix() readied, with its stderr as progress; resolves with its JSON line, or why it failed.
 */
export async function runPostfixScript(context: BenchContext, mode: 'relay' | 'drain', load: PostfixScriptLoad): Promise<Record<string, unknown> | { failed: string }> {
  context.signal.throwIfAborted();
  const { env } = context;
  const script = spawn(resolve(peersDir(env), 'postfix-relay-bench.sh'), [mode], {
    detached: true, // its own process group: smtp-source and smtp-sink go with it on abort
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...env, N: String(load.messages), SESSIONS: String(load.sessions), SIZE: String(load.bodyBytes), TIMEOUT: String(load.timeoutS) },
  });
  const killGroup = () => {
    if (script.exitCode === null && script.signalCode === null) process.kill(-script.pid!, 'SIGTERM');
  };
  context.signal.addEventListener('abort', killGroup, { once: true });
  context.defer(killGroup);
  createInterface({ input: script.stderr! }).on('line', (line) => context.progress(line));
  let stdout = '';
  script.stdout!.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  const exit = await new Promise<number | string>((done) => script.once('close', (code, signal) => done(code ?? signal ?? 'unknown')));
  context.signal.removeEventListener('abort', killGroup);
  context.signal.throwIfAborted();
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (exit !== 0 || !line) return { failed: `postfix-relay-bench.sh ${mode} exited with ${exit}${line ? '' : ' and printed no JSON line'}` };
  return JSON.parse(line) as Record<string, unknown>;
}

/**
 * Puts an in-process smtp-server sink of a benchmark on a free loopback port; stopping it (every session closed) is
 * one of the run's clean-up steps.
 */
export async function listenInProcessSink(context: BenchContext, server: SMTPServer): Promise<{ port: number; stop(): Promise<void> }> {
  // a client's reset (a Sluice killed in the middle of a delivery) is not a failure of the sink
  server.on('error', () => undefined);
  server.listen(await freePort(), '127.0.0.1');
  await once(server.server, 'listening');
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= new Promise<void>((resolve) => {
      for (const connection of (server as unknown as { connections: Set<{ close(): void }> }).connections) connection.close();
      server.close(() => resolve());
    }));
  context.defer(stop);
  return { port: (server.server.address() as AddressInfo).port, stop };
}
