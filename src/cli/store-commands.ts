// `sluice store check|backup`: work on the queue database file itself, with
// or without the server running (the database is in WAL mode, so a reader
// never stops the server's writes).
import { join } from 'node:path';
import type { Command } from 'commander';
import { configPathFrom, loadConfig } from '../config/load.js';
import { backupStoreFile, checkStoreFile } from '../store/sqlite/integrity.js';
import { CliError, EXIT } from './management-client.js';

async function databasePath(configOption: string | undefined): Promise<string> {
  const { config } = await loadConfig(configPathFrom(configOption));
  return join(config.dataDir, 'queue.db');
}

export function registerStoreCommands(program: Command): void {
  const store = program.command('store').description('check and copy the queue database');
  store
    .command('check')
    .description('full integrity check of the queue database; exit code 1 when it is damaged')
    .option('-c, --config <file>', 'config file (for dataDir)')
    .action(async (options: { config?: string }) => {
      const path = await databasePath(options.config);
      const problems = checkStoreFile(path);
      if (problems.length === 0) return console.log(`OK: ${path}`);
      console.log(`DAMAGED: ${path}`);
      for (const problem of problems) console.log(`  ${problem}`);
      throw new CliError(`${problems.length} problem(s) found in ${path}`, EXIT.failed);
    });
  store
    .command('backup')
    .argument('<file>', 'where the copy goes (a new or regular file)')
    .description('a consistent copy of the queue database, taken while the server runs')
    .option('-c, --config <file>', 'config file (for dataDir)')
    .action(async (file: string, options: { config?: string }) => {
      const path = await databasePath(options.config);
      const { pages } = await backupStoreFile(path, file);
      console.log(`OK: ${path} copied to ${file} (${pages} pages)`);
    });
}
