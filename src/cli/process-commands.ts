// `sluice status`, `sluice stop` and `sluice passwd`: the running server as a
// process (found through the data directory's lock and instance file), and the
// password hashes of `auth.users`.
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { hashPassword } from '../intake/auth.js';
import { processExists } from '../runtime/instance.js';
import { runningServer } from './find-server.js';
import { CliError, EXIT, apiClient } from './management-client.js';

const STOP_WAIT_MS = 60_000;

function uptime(since: string): string {
  let seconds = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['m', 60]] as const) {
    if (seconds >= size) parts.push(`${Math.floor(seconds / size)}${unit}`);
    seconds %= size;
  }
  return [...parts, `${seconds}s`].slice(0, 2).join(' ');
}

/** Reads a password from the terminal without echo, or one line from a pipe. */
async function readPassword(prompt: string): Promise<string> {
  const input = process.stdin;
  if (!input.isTTY) {
    const lines = createInterface({ input });
    for await (const line of lines) return line;
    throw new CliError('no password on standard input', EXIT.usage);
  }
  process.stderr.write(prompt);
  input.setRawMode(true);
  let typed = '';
  try {
    for await (const chunk of input) {
      for (const char of (chunk as Buffer).toString('utf8')) {
        if (char === '\r' || char === '\n') return typed;
        if (char === '\u0003') throw new CliError('cancelled', EXIT.failed);
        typed = char === '\u007f' ? typed.slice(0, -1) : typed + char;
      }
    }
    return typed;
  } finally {
    input.setRawMode(false);
    input.pause();
    process.stderr.write('\n');
  }
}

export function registerProcessCommands(program: Command): void {
  program
    .command('status')
    .description('is Sluice running on this config\'s data directory: pid, version, uptime, queue totals; exit 3 when not')
    .option('-c, --config <file>', 'config file (for dataDir)')
    .option('--json', 'print JSON for scripts')
    .action(async (options: { config?: string; json?: boolean }) => {
      const { instance, dataDir } = await runningServer(options.config);
      if (!instance) throw new CliError(`not running: no Sluice runs on ${dataDir}`, EXIT.noServer, { title: 'Not running', detail: dataDir });
      const queues = await (await apiClient(options.config)).get<Array<{ Status: string; MessageCount: number }>>('/api/v1/queues');
      const byStatus: Record<string, number> = {};
      for (const queue of queues) byStatus[queue.Status] = (byStatus[queue.Status] ?? 0) + queue.MessageCount;
      const messages = queues.reduce((sum, q) => sum + q.MessageCount, 0);
      if (options.json) return console.log(JSON.stringify({ running: true, ...instance, uptime: uptime(instance.startedAt), queues: queues.length, messages, messagesByQueueStatus: byStatus }, null, 2));
      console.log(`Sluice ${instance.version} is running: pid ${instance.pid}, node ${instance.node}, up ${uptime(instance.startedAt)}`);
      console.log(`  config ${instance.config}; data ${instance.dataDir}; management ${instance.managementUrl}`);
      const split = Object.entries(byStatus).map(([status, count]) => `${status} ${count}`).join(', ');
      console.log(`  ${messages} message(s) queued in ${queues.length} queue(s)${split ? ` (by queue status: ${split})` : ''}`);
    });

  program
    .command('stop')
    .description('stop the Sluice running on this config\'s data directory gracefully (SIGTERM) and wait until it has stopped')
    .option('-c, --config <file>', 'config file (for dataDir)')
    .action(async (options: { config?: string }) => {
      const { instance, dataDir } = await runningServer(options.config);
      if (!instance) throw new CliError(`not running: no Sluice runs on ${dataDir}`, EXIT.noServer);
      process.kill(instance.pid, 'SIGTERM');
      const deadline = Date.now() + STOP_WAIT_MS;
      while (processExists(instance.pid)) {
        if (Date.now() > deadline) throw new CliError(`pid ${instance.pid} is still stopping after ${STOP_WAIT_MS / 1000} s`, EXIT.failed);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      console.log(`stopped: pid ${instance.pid}`);
    });

  program
    .command('passwd')
    .description('print a password hash for auth.users (asks twice on a terminal; reads one line from a pipe)')
    .action(async () => {
      const password = await readPassword('Password: ');
      if (process.stdin.isTTY && (await readPassword('Again: ')) !== password) throw new CliError('the passwords differ', EXIT.usage);
      if (password.length === 0) throw new CliError('empty password', EXIT.usage);
      console.log(await hashPassword(password));
    });
}
