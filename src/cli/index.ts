#!/usr/bin/env node
// The `sluice` command (SPEC §8): `start` runs everything, `config check`
// validates a config; `queue`, `message` and `listener` ask a running server;
// `store` checks and copies the queue database file.
// Exit codes: 0 ok, 1 failure, 2 invalid config or request, 3 no server
// running, 4 token refused, 5 no such queue/message/listener, 6 the action does
// not apply to it.
import { Command, CommanderError } from 'commander';
import { systemClock } from '../clock.js';
import { ConfigError, configPathFrom, formatProblem, loadConfig } from '../config/load.js';
import { renderConfigReference } from '../config/reference.js';
import { readFile } from 'node:fs/promises';
import type { ReloadPlan } from '../management/reconfigure.js';
import { CliError, EXIT, apiClient, table } from './management-client.js';
import { registerListenerCommands, registerMessageCommands, registerQueueCommands } from './operator-commands.js';
import { registerStoreCommands } from './store-commands.js';
import { registerProcessCommands } from './process-commands.js';
import { SLUICE_VERSION } from '../runtime/version.js';
import { startSluice } from '../main.js';
import { checkQueueStore } from '../store/open.js';
import { logReloadFailure } from '../management/reconfigure.js';
import { createLogger } from '../observability/logger.js';

/** With --json, every error is one JSON object on stderr, the command line's own mistakes too. */
const wantsJson = process.argv.includes('--json');
const program = new Command('sluice')
  .description('Sluice: a durable store-and-forward SMTP relay')
  .version(SLUICE_VERSION)
  .showHelpAfterError()
  // set before the subcommands are added, which take them over: commander throws instead of exiting
  .exitOverride()
  .configureOutput(wantsJson ? { outputError: () => undefined, writeErr: () => undefined } : {});

program
  .command('start')
  .description('run Sluice (the embedded default when no config is given)')
  .option('-c, --config <file>', 'config file (default: $SLUICE_CONFIG, else the embedded default)')
  .action(async (options: { config?: string }) => {
    // the queue, its logs and exports are mail: readable by this user only
    process.umask(0o077);
    const path = configPathFrom(options.config);
    const { config, source } = await loadConfig(path, { checkFiles: true });
    const logger = createLogger(config);
    logger.info({ config: source }, 'configuration loaded');
    // a stray failure is logged, never a reason to drop every session and delivery in flight
    process.on('unhandledRejection', (error) => logger.error({ err: error }, 'unhandled rejection'));
    // the signals are taken before the start: a SIGTERM while it starts stops it once it has started, never kills it
    let sluice: Awaited<ReturnType<typeof startSluice>> | undefined;
    let stopping: string | undefined;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = signal;
      if (!sluice) return logger.info({ signal }, 'stop asked while starting: stopping once started');
      logger.info({ signal }, 'stopping');
      sluice.stop().then(
        () => process.exit(0),
        (error: unknown) => {
          logger.error({ err: error }, 'stop failed');
          process.exit(EXIT.failed);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      if (sluice) sluice.reload().catch((error: unknown) => logReloadFailure(logger, 'SIGHUP', error));
      else logger.warn('SIGHUP while starting: the configuration just loaded is the one in force');
    });
    sluice = await startSluice(config, { clock: systemClock, logger, ...(path === undefined ? {} : { source: path }) });
    if (stopping) {
      const signal = stopping;
      stopping = undefined;
      stop(signal);
    }
  });

const configCommand = program.command('config').description('configuration tools');
configCommand
  .command('check')
  .description('validate a config file; prints OK or every problem with its key and line')
  .option('-c, --config <file>', 'config file (default: $SLUICE_CONFIG, else the embedded default)')
  .option('--diff', 'also ask the running server what this config would change: queues rerouted and where to, listeners, restart-only keys')
  .option('--json', 'with --diff: print the plan as JSON')
  .action(async (options: { config?: string; diff?: boolean; json?: boolean }) => {
    const path = configPathFrom(options.config);
    const { config, source } = await loadConfig(path, { checkFiles: true });
    // a valid file is not enough: the PostgreSQL queue store it names must answer, with a schema this Sluice reads
    const store = await checkQueueStore(config);
    if (store && !store.ok) throw new CliError(store.message, EXIT.failed);
    // with --json, stdout is the plan alone
    (options.json ? console.error : console.log)(`OK: ${source}`);
    if (store) console.log(store.message);
    if (!options.diff) return;
    const yaml = path === undefined ? '' : await readFile(path, 'utf8');
    const plan = await (await apiClient(options.config)).post<ReloadPlan>('/api/v1/config/plan', { yaml });
    console.log(options.json ? JSON.stringify(plan, null, 2) : describePlan(plan));
  });

configCommand
  .command('reload')
  .description('make the running server read its config file again (as SIGHUP does) and print what changed')
  .option('-c, --config <file>', 'config file (for the server address and token)')
  .option('--json', 'print JSON for scripts')
  .action(async (options: { config?: string; json?: boolean }) => {
    const plan = await (await apiClient(options.config)).post<ReloadPlan>('/api/v1/config/reload', {});
    console.log(options.json ? JSON.stringify(plan, null, 2) : describePlan(plan));
  });

configCommand
  .command('reference')
  .description('print the reference of every config key, type and default (Markdown)')
  .action(() => {
    process.stdout.write(renderConfigReference());
  });

/** A reload plan as an operator reads it. */
function describePlan(plan: ReloadPlan): string {
  const queues = plan.Queues.map((q) => ({ ...q, To: q.To ? Object.entries(q.To).map(([to, n]) => `${to}: ${n}`).join(', ') + (q.Sampled ? ' (sampled)' : '') : '' }));
  return [
    plan.Queues.length > 0 ? table(['Identity', 'Action', 'Messages', 'To', 'Reason'], queues) : 'Queues: no change',
    plan.Routes.length > 0 ? table(['Route', 'Change'], plan.Routes.map((r) => ({ Route: r.Name, Change: r.Change }))) : 'Routes: no change',
    plan.Listeners.length > 0 ? table(['Name', 'Change'], plan.Listeners) : 'Listeners: no change',
    ...(plan.RestartNeeded.length > 0 ? [`Only a restart changes: ${plan.RestartNeeded.join(', ')}`] : []),
  ].join('\n\n');
}

registerQueueCommands(program);
registerMessageCommands(program);
registerListenerCommands(program);
registerStoreCommands(program);
registerProcessCommands(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof CommanderError) {
    // --help and --version end here too, having printed what was asked
    if (error.exitCode === 0) process.exit(0);
    if (wantsJson) console.error(JSON.stringify({ title: 'Usage', detail: error.message.replace(/^error: /, ''), exitCode: EXIT.usage }));
    process.exit(EXIT.usage);
  }
  if (error instanceof CliError) {
    console.error(`sluice: ${error.message}`);
    process.exit(error.exitCode);
  }
  if (error instanceof ConfigError) {
    console.error(`${error.source}: invalid configuration`);
    for (const problem of error.problems) console.error(`  ${formatProblem(problem)}`);
    process.exit(EXIT.usage);
  }
  console.error(`sluice: ${(error as Error).message}`);
  process.exit(EXIT.failed);
});
