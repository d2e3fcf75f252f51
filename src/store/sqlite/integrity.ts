// The checks that keep Sluice from running on a damaged queue database: at
// every start a quick one (the file is there, is SQLite, and its b-trees are
// whole), offline a full one (`sluice store check`), and a consistent copy
// taken while Sluice runs (`sluice store backup`), with SQLite's online backup.
// A damaged file is never replaced by an empty one: it holds acknowledged mail.
import { existsSync, statSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import Sqlite, { type Database } from 'better-sqlite3';

export class DamagedStoreError extends Error {
  readonly code = 'STORE_DAMAGED';
  constructor(path: string, problem: string) {
    const file = resolve(path);
    super(
      `queue store ${file} is damaged: ${problem}. Sluice will not start on it, so that no acknowledged mail is given up. ` +
        `Keep the file as it is, run \`sluice store check\` to see every problem, then restore the last copy taken with ` +
        `\`sluice store backup\`, or salvage what can be read with \`sqlite3 ${file} ".recover" | sqlite3 recovered.db\` and put recovered.db in its place.`,
    );
    this.name = 'DamagedStoreError';
  }
}

/** Before SQLite opens the file: a file it would silently treat as a new, empty database. */
export function checkBeforeOpen(path: string): void {
  const wal = `${path}-wal`;
  if (!existsSync(path)) {
    if (existsSync(wal) && statSync(wal).size > 0) throw new DamagedStoreError(path, 'the database file is missing but its write-ahead log is there');
    return;
  }
  if (statSync(path).size === 0 && !(existsSync(wal) && statSync(wal).size > 0)) throw new DamagedStoreError(path, 'the file is empty (truncated to zero bytes)');
}

/** Problems SQLite finds, at most `limit` (quick: b-tree structure only; full: also every index against its table). */
export function findProblems(db: Database, full: boolean, limit = 20): string[] {
  try {
    const rows = db.pragma(`${full ? 'integrity_check' : 'quick_check'}(${limit})`) as Array<Record<string, string>>;
    const lines = rows.map((row) => Object.values(row)[0] ?? '');
    return lines.length === 1 && lines[0] === 'ok' ? [] : lines;
  } catch (error) {
    return [(error as Error).message];
  }
}

/** Opens the file for a check, turning SQLite's refusals into what the operator needs to read. */
export function openChecked(path: string, options: Sqlite.Options = {}): Database {
  checkBeforeOpen(path);
  let db: Database | undefined;
  try {
    db = new Sqlite(path, options);
    db.pragma('user_version');
    return db;
  } catch (error) {
    db?.close();
    throw new DamagedStoreError(path, (error as Error).message);
  }
}

/** Full check of a database file, without the server: the problems, none when it is whole. */
export function checkStoreFile(path: string): string[] {
  if (!existsSync(path)) throw new Error(`no queue store at ${resolve(path)}`);
  let db: Database;
  try {
    db = openChecked(path, { readonly: true, fileMustExist: true });
  } catch (error) {
    return [(error as Error).message];
  }
  try {
    return findProblems(db, true, 100);
  } finally {
    db.close();
  }
}

/**
 * A consistent copy of the database while Sluice may be writing to it. SQLite's online backup copies every page
 * within a read transaction (WAL lets the writer go on meanwhile); after its first step it copies the rest in one,
 * so it restarts at most once under load. The copy is written beside the target and renamed over it once complete.
 */
export async function backupStoreFile(path: string, target: string): Promise<{ pages: number }> {
  if (!existsSync(path)) throw new Error(`no queue store at ${resolve(path)}`);
  if (existsSync(target) && !statSync(target).isFile()) throw new Error(`${target} is not a regular file: give a file name for the copy`);
  const db = openChecked(path, { readonly: true, fileMustExist: true });
  const part = `${target}.part`;
  try {
    const result = await db.backup(part, { progress: () => Number.MAX_SAFE_INTEGER });
    const copy = new Sqlite(part);
    const problems = findProblems(copy, false);
    copy.close();
    if (problems.length > 0) throw new Error(`the copy does not check out: ${problems.join('; ')}`);
    await rename(part, target);
    return { pages: result.totalPages };
  } catch (error) {
    await rm(part, { force: true });
    throw error;
  } finally {
    db.close();
  }
}
