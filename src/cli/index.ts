#!/usr/bin/env node
// The `sluice` command (SPEC §8): `start` runs everything, `config check`
// validates a config; `queue`, `message` and `listener` ask a running server.
// Exit codes: 0 ok, 1 failure, 2 invalid config or request, 3 no server
// running, 4 token refused, 5 no such queue/message/listener, 6 the action does
// not apply to it.
import { Command } from 'commander';
import { systemClock } from '../clock.js';
import { ConfigError, configPathFrom, formatProblem, loadConfig } from '../config/load.js';
import { renderConfigReference } from '../config/reference.js';
import { CliError, EXIT } from './management-client.js';
import { registerListenerCommands, registerMessageCommands, registerQueueCommands } from './operator-commands.js';
import { startSluice } from '../main.js';
import { createLogger } from '../observability/logger.js';

const program = new Command('sluice').description('Sluice: a durable store-and-forward SMTP relay').showHelpAfterError();

program
  .command('start')
  .description('run Sluice (the embedded default when no config is given)')
  .option('-c, --config <file>', 'config file (default: $SLUICE_CONFIG, else the embedded default)')
  .action(async (options: { config?: string }) => {
    const { config, source } = await loadConfig(configPathFrom(options.config));
    const logger = createLogger(config.log.level);
    logger.info({ config: source }, 'configuration loaded');
    // a stray failure is logged, never a reason to drop every session and delivery in flight
    process.on('unhandledRejection', (error) => logger.error({ err: error }, 'unhandled rejection'));
    const sluice = await startSluice(config, { clock: systemClock, logger });
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
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
    // live reload (RT-3) is not built yet; SIGHUP must not kill the process meanwhile
    process.on('SIGHUP', () => logger.warn('SIGHUP: configuration reload is not supported yet; the running configuration is unchanged'));
    process.on('SIGINT', () => stop('SIGINT'));
  });

const configCommand = program.command('config').description('configuration tools');
configCommand
  .command('check')
  .description('validate a config file; prints OK or every problem with its key and line')
  .option('-c, --config <file>', 'config file (default: $SLUICE_CONFIG, else the embedded default)')
  .action(async (options: { config?: string }) => {
    const { source } = await loadConfig(configPathFrom(options.config));
    console.log(`OK: ${source}`);
  });

configCommand
  .command('reference')
  .description('print the reference of every config key, type and default (Markdown)')
  .action(() => {
    process.stdout.write(renderConfigReference());
  });

registerQueueCommands(program);
registerMessageCommands(program);
registerListenerCommands(program);

program.parseAsync(process.argv).catch((error: unknown) => {
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
