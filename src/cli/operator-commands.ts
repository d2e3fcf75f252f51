// `sluice queue|message|listener ...` (SPEC §8, MG-4): each asks the running
// server through the management API and prints a table, or JSON with --json
// (then stdout carries nothing but that JSON, and an error is one JSON object
// on stderr). Help texts speak to operators: no requirement ids.
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, realpath, rename, stat, unlink } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { ConfigError, formatProblem } from '../config/load.js';
import { CliError, EXIT, apiClient, table, type CliProblem } from './management-client.js';

interface Common {
  json?: boolean;
  config?: string;
}
interface Selecting extends Common {
  filter?: string;
  dryRun?: boolean;
}
type Row = Record<string, unknown>;
type Body = ReadableStream<Uint8Array>;

const print = (options: Common, value: unknown, columns: string[], rows: Row[]) =>
  console.log(options.json ? JSON.stringify(value, null, 2) : table(columns, rows));

/** The server checks the choice (one identity or a filter) and answers 400 otherwise. */
const selectorOf = (id: string | undefined, options: Selecting) => ({
  ...(id !== undefined ? { identity: id } : {}),
  ...(options.filter !== undefined ? { filter: options.filter } : {}),
});

/** An error as --json prints it on stderr: `{"title", "detail", "status"?, "exitCode"}`. */
function problemOf(error: unknown): { problem: CliProblem; exitCode: number } {
  if (error instanceof CliError) return { problem: error.problem ?? { title: error.exitCode === EXIT.usage ? 'Bad Request' : 'Failed', detail: error.message }, exitCode: error.exitCode };
  if (error instanceof ConfigError) return { problem: { title: 'Invalid configuration', detail: `${error.source}: ${error.problems.map(formatProblem).join('; ')}` }, exitCode: EXIT.usage };
  return { problem: { title: 'Failed', detail: (error as Error).message }, exitCode: EXIT.failed };
}

/** Runs a command's action; with --json, a failure is one JSON object on stderr (and the exit code as always). */
function action<A extends unknown[]>(run: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    // commander passes the positional arguments, then the options, then the command
    const options = args[args.length - 2] as Common | undefined;
    try {
      await run(...args);
    } catch (error) {
      if (!options?.json) throw error;
      const { problem, exitCode } = problemOf(error);
      process.stderr.write(`${JSON.stringify({ ...problem, exitCode })}\n`);
      process.exit(exitCode);
    }
  };
}

const withCommon = (command: Command) => command.option('--json', 'print JSON for scripts (errors as JSON on stderr)').option('-c, --config <file>', 'config file (for the server address and token)');
const QUEUE_FILTER_HELP = 'a filter, e.g. {Status -eq "Retry" -and MessageCount -gt 1000}';
const MESSAGE_FILTER_HELP = 'a filter, e.g. {FromAddress -like "*@example.com" -and (Status -eq "Retry" -or Recipients -like "*@example.org")}';
const DRY_RUN_HELP = 'change nothing: list what the command would act on';

export function registerQueueCommands(program: Command): void {
  const queue = program.command('queue').description('see and steer queues');
  withCommon(queue.command('list').description('list queues: status, message count, next retry, last error').option('-f, --filter <expr>', QUEUE_FILTER_HELP)).action(
    action(async (options: Selecting) => {
      const queues = await (await apiClient(options.config)).get<Row[]>('/api/v1/queues', { filter: options.filter });
      print(options, queues, ['Identity', 'DeliveryType', 'Status', 'MessageCount', 'NextRetryTime', 'LastError'], queues);
    }),
  );
  for (const [name, description] of [
    ['suspend', 'stop delivering from the queue (it still takes new messages); survives a restart'],
    ['resume', 'resume delivery from a suspended queue'],
    ['retry', 'connect now and make deferred messages ready; with --resubmit, send them back through routing'],
  ] as const) {
    const command = withCommon(queue.command(`${name} [identity]`).description(description).option('-f, --filter <expr>', QUEUE_FILTER_HELP).option('-n, --dry-run', DRY_RUN_HELP));
    if (name === 'retry') command.option('--resubmit', 'send the messages back through routing, as after a configuration change');
    command.action(
      action(async (id: string | undefined, options: Selecting & { resubmit?: boolean }) => {
        const body = { ...selectorOf(id, options), ...(options.resubmit ? { resubmit: true } : {}), ...(options.dryRun ? { dryRun: true } : {}) };
        const result = await (await apiClient(options.config)).post<{ queues: Row[] }>(`/api/v1/queues/${name}`, body);
        if (options.dryRun && !options.json) console.log(`Would ${options.resubmit ? 'resubmit' : name} ${result.queues.length} queue(s); nothing was changed.`);
        print(options, result, options.dryRun ? ['Identity', 'Action'] : ['Identity', 'Action', 'Messages'], result.queues);
      }),
    );
  }
}

const MESSAGE_COLUMNS = ['Identity', 'Status', 'DateReceived', 'Size', 'FromAddress', 'RecipientCount', 'FirstRecipient', 'Subject', 'LastError'];

/** A message as one line of a table: its recipient count and first recipient beside its properties. */
function messageRow(message: Row): Row {
  const recipients = (message.Recipients as Array<{ Address: string }> | undefined) ?? [];
  return { ...message, RecipientCount: recipients.length, FirstRecipient: recipients[0]?.Address ?? '' };
}

function showMessage(message: Row): string {
  const { Recipients, ...properties } = message as Row & { Recipients: Row[] };
  const width = Math.max(...Object.keys(properties).map((k) => k.length));
  const lines = Object.entries(properties).map(([key, value]) => `${key.padEnd(width)}  ${value ?? ''}`.trimEnd());
  return [...lines, 'Recipients', ...table(['Address', 'Status', 'LastError'], Recipients).split('\n').map((l) => `  ${l}`)].join('\n');
}

/** `-`, and the names of this process's own standard output, write to it directly. */
const STDOUT_NAMES = new Set(['-', '/dev/stdout', '/dev/fd/1', '/proc/self/fd/1']);

async function writeStdout(body: Body): Promise<void> {
  for await (const chunk of Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>)) {
    if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
  }
}

/**
 * Where an export goes and how it is written, decided before anything is downloaded. Never renames over
 * anything but a regular file: a new file, or a regular file replaced with --force, is written under a
 * temporary name and renamed when complete (through a symbolic link to its target, so the link stays); a
 * device or a FIFO is written in place; a regular file is not replaced without --force.
 */
type Destination = { kind: 'stdout' } | { kind: 'in place'; path: string } | { kind: 'atomic'; path: string };

async function destinationOf(path: string, force: boolean): Promise<Destination> {
  if (STDOUT_NAMES.has(path)) return { kind: 'stdout' };
  const link = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!link) return { kind: 'atomic', path };
  const target = link.isSymbolicLink() ? await stat(path).catch(() => undefined) : link;
  if (!target) throw new CliError(`${path} is a symbolic link to nothing; not written`, EXIT.conflict);
  if (target.isDirectory()) throw new CliError(`${path} is a directory (a filter exports into a directory; one identity into a file)`, EXIT.usage);
  if (!target.isFile()) return { kind: 'in place', path };
  if (!force) throw new CliError(`${path} exists; use --force to replace it`, EXIT.conflict);
  return { kind: 'atomic', path: link.isSymbolicLink() ? await realpath(path) : path };
}

async function save(destination: Destination, body: Body): Promise<void> {
  const source = () => Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>);
  switch (destination.kind) {
    case 'stdout':
      return writeStdout(body);
    case 'in place':
      // a device or FIFO: opened for writing as it is, never replaced
      return pipeline(source(), createWriteStream(destination.path, { flags: 'w' }));
    case 'atomic': {
      const partial = `${destination.path}.part`;
      try {
        await pipeline(source(), createWriteStream(partial, { flags: 'w', mode: 0o600 }));
      } catch (error) {
        await unlink(partial).catch(() => undefined);
        throw error;
      }
      await rename(partial, destination.path);
    }
  }
}

/** Asks on the terminal; true for y or yes. */
async function confirm(question: string): Promise<boolean> {
  const terminal = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await terminal.question(`${question} [y/N] `)).trim());
  } finally {
    terminal.close();
  }
}

interface Planned {
  dryRun: true;
  messages: Row[];
  truncated: boolean;
}

export function registerMessageCommands(program: Command): void {
  const message = program.command('message').description('see and steer messages across all queues, and search the tracking log');
  withCommon(
    message
      .command('list [identity]')
      .description('list messages, one line per message and queue, with their recipients and subject')
      .option('-f, --filter <expr>', MESSAGE_FILTER_HELP)
      .option('--limit <n>', 'at most this many', '1000'),
  ).action(
    action(async (id: string | undefined, options: Selecting & { limit: string }) => {
      const result = await (await apiClient(options.config)).get<{ messages: Row[]; truncated: boolean }>('/api/v1/messages', {
        identity: id,
        filter: options.filter,
        limit: options.limit,
      });
      print(options, result, MESSAGE_COLUMNS, result.messages.map(messageRow));
      if (!options.json && result.truncated) console.error(`(more than ${options.limit}; use --limit or a narrower --filter)`);
    }),
  );
  withCommon(
    message
      .command('show <identity>')
      .description('every property of a message, with its recipients; or, with --headers or --body, the stored message itself')
      .option('--headers', 'print the header section of the stored message (our Received: header first)')
      .option('--body', 'print the whole stored message (headers and body, as received)'),
  ).action(
    action(async (id: string, options: Common & { headers?: boolean; body?: boolean }) => {
      if (options.headers && options.body) throw new CliError('give --headers or --body, not both', EXIT.usage);
      const client = await apiClient(options.config);
      if (options.headers || options.body) {
        if (options.json) throw new CliError('--headers and --body print the message itself; --json does not go with them', EXIT.usage);
        return writeStdout(await client.download('/api/v1/messages/content', { identity: id, part: options.headers ? 'headers' : 'message' }));
      }
      const result = await client.get<{ messages: Row[] }>('/api/v1/messages', { identity: id });
      console.log(options.json ? JSON.stringify(result.messages, null, 2) : result.messages.map(showMessage).join('\n\n'));
    }),
  );
  for (const [name, description] of [
    ['suspend', 'hold messages (a message being delivered becomes PendingSuspend)'],
    ['resume', 'release suspended messages'],
    ['remove', 'delete messages, with --ndr telling the sender (a message being delivered becomes PendingRemove); asks first on a terminal when more than one would go'],
  ] as const) {
    const command = withCommon(message.command(`${name} [identity]`).description(description).option('-f, --filter <expr>', MESSAGE_FILTER_HELP).option('-n, --dry-run', DRY_RUN_HELP));
    if (name === 'remove') command.option('--ndr', 'send the sender a non-delivery report').option('-y, --yes', 'do not ask for confirmation');
    command.action(
      action(async (id: string | undefined, options: Selecting & { ndr?: boolean; yes?: boolean }) => {
        const client = await apiClient(options.config);
        const body = { ...selectorOf(id, options), ...(options.ndr ? { ndr: true } : {}) };
        const plan = () => client.post<Planned>(`/api/v1/messages/${name}`, { ...body, dryRun: true });
        if (options.dryRun) {
          const planned = await plan();
          if (!options.json) console.log(`Would ${name} ${planned.messages.length}${planned.truncated ? '+' : ''} message entr${planned.messages.length === 1 ? 'y' : 'ies'}; nothing was changed.`);
          print(options, planned, MESSAGE_COLUMNS, planned.messages.map(messageRow));
          return;
        }
        if (name === 'remove' && !options.yes && process.stdin.isTTY) {
          const planned = await plan();
          const messages = new Set(planned.messages.map((m) => String(m.Identity).split('/').pop())).size;
          if (messages > 1 && !(await confirm(`Remove ${messages}${planned.truncated ? ' or more' : ''} messages${options.ndr ? ' with an NDR to each sender' : ''}?`))) {
            throw new CliError('nothing removed', EXIT.failed);
          }
        }
        const result = await client.post<Row>(`/api/v1/messages/${name}`, body);
        print(options, result, Object.keys(result), [result]);
      }),
    );
  }
  withCommon(
    message
      .command('export [identity]')
      .description('copy messages to .eml files with X-Sender/X-Receiver envelope headers (the messages stay queued)')
      .option('-f, --filter <expr>', MESSAGE_FILTER_HELP)
      .requiredOption('-o, --out <path>', 'the file for one identity (- for standard output; a device or FIFO is written in place); a directory for --filter')
      .option('--force', 'replace existing regular files'),
  ).action(
    action(async (id: string | undefined, options: Selecting & { out: string; force?: boolean }) => {
      const client = await apiClient(options.config);
      const selector = selectorOf(id, options);
      const force = options.force ?? false;
      if ((selector.identity === undefined) === (selector.filter === undefined)) throw new CliError('give an identity or --filter', EXIT.usage);
      if (selector.identity !== undefined) {
        const destination = await destinationOf(options.out, force);
        await save(destination, await client.download('/api/v1/messages/export', { identity: selector.identity }));
        // the message itself is on stdout: nothing else may go there
        if (destination.kind !== 'stdout') console.log(options.json ? JSON.stringify({ files: [options.out] }) : options.out);
        return;
      }
      if (STDOUT_NAMES.has(options.out)) throw new CliError('--filter exports into a directory; standard output takes one identity', EXIT.usage);
      const { messages } = await client.get<{ messages: Array<{ Identity: string }> }>('/api/v1/messages', { filter: selector.filter, limit: 100_000 });
      await mkdir(options.out, { recursive: true });
      // one file per message, with every queue's recipients still to deliver; every refusal before any file is written
      const bare = [...new Set(messages.map((m) => m.Identity.split('/').pop()!))];
      const destinations = await Promise.all(bare.map((one) => destinationOf(join(options.out, `${one}.eml`), force)));
      const files: string[] = [];
      for (const [i, one] of bare.entries()) {
        await save(destinations[i]!, await client.download('/api/v1/messages/export', { identity: one }));
        files.push(join(options.out, `${one}.eml`));
      }
      console.log(options.json ? JSON.stringify({ files }) : files.join('\n'));
    }),
  );
  withCommon(
    message
      .command('track')
      .description('search the message tracking log (received, routed, deferred, delivered, failed, dsn, suspended, resumed, removed)')
      .option('--message-id <id>', 'the Message-ID header')
      .option('--sender <address>', 'envelope sender (* wildcards)')
      .option('--recipient <address>', 'a recipient (* wildcards)')
      .option('--queue-id <id>', "Sluice's id of the message")
      .option('--limit <n>', 'at most this many events', '1000'),
  ).action(
    action(async (options: Common & { messageId?: string; sender?: string; recipient?: string; queueId?: string; limit: string }) => {
      const { messageId, sender, recipient, queueId, limit } = options;
      if ([messageId, sender, recipient, queueId].every((v) => v === undefined)) {
        throw new CliError('give --message-id, --sender, --recipient or --queue-id', EXIT.usage);
      }
      const result = await (await apiClient(options.config)).get<{ events: Row[]; truncated: boolean }>('/api/v1/tracking', { messageId, sender, recipient, queueId, limit });
      const rows = result.events.map((e) => ({ ...e, recipients: (e.recipients as string[]).join(',') }));
      print(options, result, ['time', 'event', 'queueId', 'sender', 'recipients', 'queue', 'reply'], rows);
    }),
  );
}

export function registerListenerCommands(program: Command): void {
  const listener = program.command('listener').description('see and steer SMTP listeners');
  withCommon(listener.command('list').description('list listeners and whether they take connections')).action(
    action(async (options: Common) => {
      const listeners = await (await apiClient(options.config)).get<Row[]>('/api/v1/listeners');
      print(options, listeners, ['Name', 'Address', 'Status'], listeners);
    }),
  );
  for (const [name, description] of [
    ['suspend', 'refuse new connections with 421 4.3.2 (sessions in progress finish); survives a restart'],
    ['resume', 'take connections again'],
  ] as const) {
    withCommon(listener.command(`${name} <name>`).description(description)).action(
      action(async (listenerName: string, options: Common) => {
        const result = await (await apiClient(options.config)).post<Row>(`/api/v1/listeners/${encodeURIComponent(listenerName)}/${name}`, {});
        print(options, result, ['Name', 'Address', 'Status'], [result]);
      }),
    );
  }
}
