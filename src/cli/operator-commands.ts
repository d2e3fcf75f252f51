// `sluice queue|message|listener ...` (SPEC §8, MG-4): each asks the running
// server through the management API and prints a table, or JSON with --json.
import { createWriteStream } from 'node:fs';
import { mkdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { CliError, EXIT, apiClient, table } from './management-client.js';

interface Common {
  json?: boolean;
  config?: string;
}
interface Selecting extends Common {
  filter?: string;
}
type Row = Record<string, unknown>;

const print = (options: Common, value: unknown, columns: string[], rows: Row[]) =>
  console.log(options.json ? JSON.stringify(value, null, 2) : table(columns, rows));

/** The server checks the choice (one identity or a filter) and answers 400 otherwise. */
const selectorOf = (id: string | undefined, options: Selecting) => ({
  ...(id !== undefined ? { identity: id } : {}),
  ...(options.filter !== undefined ? { filter: options.filter } : {}),
});

const withCommon = (command: Command) => command.option('--json', 'print JSON for scripts').option('-c, --config <file>', 'config file (for the server address and token)');
const FILTER_HELP = 'e.g. {Status -eq "Retry" -and MessageCount -gt 1000}';

export function registerQueueCommands(program: Command): void {
  const queue = program.command('queue').description('see and steer queues (QU-2, MG-2)');
  withCommon(queue.command('list').description('list queues with their QU-2 properties').option('-f, --filter <expr>', FILTER_HELP)).action(
    async (options: Selecting) => {
      const queues = await (await apiClient(options.config)).get<Row[]>('/api/v1/queues', { filter: options.filter });
      print(options, queues, ['Identity', 'DeliveryType', 'Status', 'MessageCount', 'NextRetryTime', 'LastError'], queues);
    },
  );
  for (const [action, description] of [
    ['suspend', 'stop delivering from the queue (it still takes new messages); survives a restart'],
    ['resume', 'resume delivery from a suspended queue'],
    ['retry', 'connect now and make deferred messages ready; with --resubmit, send them back to the categorizer'],
  ] as const) {
    const command = withCommon(queue.command(`${action} [identity]`).description(description).option('-f, --filter <expr>', FILTER_HELP));
    if (action === 'retry') command.option('--resubmit', 'send the messages back through routing (Retry-Queue -Resubmit)');
    command.action(async (id: string | undefined, options: Selecting & { resubmit?: boolean }) => {
      const body = { ...selectorOf(id, options), ...(options.resubmit ? { resubmit: true } : {}) };
      const result = await (await apiClient(options.config)).post<{ queues: Row[] }>(`/api/v1/queues/${action}`, body);
      print(options, result, ['Identity', 'Action', 'Messages'], result.queues);
    });
  }
}

const MESSAGE_COLUMNS = ['Identity', 'Status', 'FromAddress', 'Size', 'RetryCount', 'DateReceived', 'LastError'];

function showMessage(message: Row): string {
  const { Recipients, ...properties } = message as Row & { Recipients: Row[] };
  const width = Math.max(...Object.keys(properties).map((k) => k.length));
  const lines = Object.entries(properties).map(([key, value]) => `${key.padEnd(width)}  ${value ?? ''}`.trimEnd());
  return [...lines, 'Recipients', ...table(['Address', 'Status', 'LastError'], Recipients).split('\n').map((l) => `  ${l}`)].join('\n');
}

/** Writes a download to `path` through a temporary name, so a half-written file never has the final name. */
async function saveTo(path: string, body: ReadableStream<Uint8Array>): Promise<void> {
  const partial = `${path}.part`;
  await pipeline(Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>), createWriteStream(partial));
  await rename(partial, path);
}

export function registerMessageCommands(program: Command): void {
  const message = program.command('message').description('see and steer messages across all queues (QU-3, MG-3, MG-5)');
  withCommon(
    message
      .command('list [identity]')
      .description('list messages, one line per message and queue')
      .option('-f, --filter <expr>', 'e.g. {FromAddress -like "*@example.com" -and Status -eq "Retry"}')
      .option('--limit <n>', 'at most this many', '1000'),
  ).action(async (id: string | undefined, options: Selecting & { limit: string }) => {
    const result = await (await apiClient(options.config)).get<{ messages: Row[]; truncated: boolean }>('/api/v1/messages', {
      identity: id,
      filter: options.filter,
      limit: options.limit,
    });
    print(options, result, MESSAGE_COLUMNS, result.messages);
    if (!options.json && result.truncated) console.error(`(more than ${options.limit}; use --limit or a narrower --filter)`);
  });
  withCommon(message.command('show <identity>').description('every QU-3 property of a message, with its recipients')).action(async (id: string, options: Common) => {
    const result = await (await apiClient(options.config)).get<{ messages: Row[] }>('/api/v1/messages', { identity: id });
    console.log(options.json ? JSON.stringify(result.messages, null, 2) : result.messages.map(showMessage).join('\n\n'));
  });
  for (const [action, description] of [
    ['suspend', 'hold messages (a message being delivered becomes PendingSuspend)'],
    ['resume', 'release suspended messages'],
    ['remove', 'delete messages, with --ndr telling the sender (a message being delivered becomes PendingRemove)'],
  ] as const) {
    const command = withCommon(message.command(`${action} [identity]`).description(description).option('-f, --filter <expr>', FILTER_HELP));
    if (action === 'remove') command.option('--ndr', 'send the sender a non-delivery report');
    command.action(async (id: string | undefined, options: Selecting & { ndr?: boolean }) => {
      const body = { ...selectorOf(id, options), ...(options.ndr ? { ndr: true } : {}) };
      const result = await (await apiClient(options.config)).post<Row>(`/api/v1/messages/${action}`, body);
      print(options, result, Object.keys(result), [result]);
    });
  }
  withCommon(
    message
      .command('export [identity]')
      .description('copy messages to .eml files with X-Sender/X-Receiver envelope headers (the messages stay queued)')
      .option('-f, --filter <expr>', FILTER_HELP)
      .requiredOption('-o, --out <path>', 'the file for one identity; a directory for --filter'),
  ).action(async (id: string | undefined, options: Selecting & { out: string }) => {
    const client = await apiClient(options.config);
    const selector = selectorOf(id, options);
    if ((selector.identity === undefined) === (selector.filter === undefined)) throw new CliError('give an identity or --filter', EXIT.usage);
    if (selector.identity !== undefined) {
      await saveTo(options.out, await client.download('/api/v1/messages/export', { identity: selector.identity }));
      console.log(options.json ? JSON.stringify({ files: [options.out] }) : options.out);
      return;
    }
    const { messages } = await client.get<{ messages: Array<{ Identity: string }> }>('/api/v1/messages', { filter: selector.filter, limit: 100_000 });
    await mkdir(options.out, { recursive: true });
    const files: string[] = [];
    // one file per message, with every queue's recipients still to deliver
    for (const bare of new Set(messages.map((m) => m.Identity.split('/').pop()!))) {
      const file = join(options.out, `${bare}.eml`);
      await saveTo(file, await client.download('/api/v1/messages/export', { identity: bare }));
      files.push(file);
    }
    console.log(options.json ? JSON.stringify({ files }) : files.join('\n'));
  });
  withCommon(
    message
      .command('track')
      .description('search the message tracking log (received, routed, deferred, delivered, failed, dsn, suspended, resumed, removed)')
      .option('--message-id <id>', 'the Message-ID header')
      .option('--sender <address>', 'envelope sender (* wildcards)')
      .option('--recipient <address>', 'a recipient (* wildcards)')
      .option('--queue-id <id>', "Sluice's id of the message")
      .option('--limit <n>', 'at most this many events', '1000'),
  ).action(async (options: Common & { messageId?: string; sender?: string; recipient?: string; queueId?: string; limit: string }) => {
    const { messageId, sender, recipient, queueId, limit } = options;
    if ([messageId, sender, recipient, queueId].every((v) => v === undefined)) {
      throw new CliError('give --message-id, --sender, --recipient or --queue-id', EXIT.usage);
    }
    const result = await (await apiClient(options.config)).get<{ events: Row[]; truncated: boolean }>('/api/v1/tracking', { messageId, sender, recipient, queueId, limit });
    const rows = result.events.map((e) => ({ ...e, recipients: (e.recipients as string[]).join(',') }));
    print(options, result, ['time', 'event', 'queueId', 'sender', 'recipients', 'queue', 'reply'], rows);
  });
}

export function registerListenerCommands(program: Command): void {
  const listener = program.command('listener').description('see and steer SMTP listeners (IN-7)');
  withCommon(listener.command('list').description('list listeners and whether they take connections')).action(async (options: Common) => {
    const listeners = await (await apiClient(options.config)).get<Row[]>('/api/v1/listeners');
    print(options, listeners, ['Name', 'Address', 'Status'], listeners);
  });
  for (const [action, description] of [
    ['suspend', 'refuse new connections with 421 4.3.2 (sessions in progress finish); survives a restart'],
    ['resume', 'take connections again'],
  ] as const) {
    withCommon(listener.command(`${action} <name>`).description(description)).action(async (name: string, options: Common) => {
      const result = await (await apiClient(options.config)).post<Row>(`/api/v1/listeners/${encodeURIComponent(name)}/${action}`, {});
      print(options, result, ['Name', 'Address', 'Status'], [result]);
    });
  }
}
