// One Sluice per data directory: at start it takes a lock there (`sluice.pid`,
// created exclusively; a lock whose process is gone is taken over) and, once
// it listens, publishes where it can be reached (`sluice.json`). The CLI reads
// that file to find the running server (`status`, `stop`, and every command
// that asks the server), whatever config file it was started from.
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';

export interface InstanceInfo {
  pid: number;
  version: string;
  node: string;
  /** ISO time the server started. */
  startedAt: string;
  managementUrl: string;
  /** The config file it runs from, or "embedded default". */
  config: string;
  dataDir: string;
}

export class DataDirInUseError extends Error {
  constructor(dataDir: string, pid: number) {
    super(`another Sluice (pid ${pid}) runs on ${resolve(dataDir)}; stop it first (sluice stop), or give this one a dataDir of its own`);
    this.name = 'DataDirInUseError';
  }
}

const lockFile = (dataDir: string) => join(dataDir, 'sluice.pid');
const infoFile = (dataDir: string) => join(dataDir, 'sluice.json');
/** Where a server that runs on the embedded default says which data directory it uses. */
const embeddedPointer = () => join(tmpdir(), `sluice-${userInfo().uid}`, 'embedded.json');

/** True while a process with this pid exists (one of another user's too). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** True when the process runs (a pid taken over by another program after a reboot is not a Sluice). */
async function sluiceRuns(pid: number): Promise<boolean> {
  if (!processExists(pid)) return false;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  return cmdline === undefined || /node|sluice/.test(cmdline);
}

export interface InstanceLock {
  /** Says where this server can be reached, for the CLI. */
  publish(info: Omit<InstanceInfo, 'pid' | 'dataDir'>, embedded: boolean): Promise<void>;
  release(): Promise<void>;
}

/** Creates the data directory (0700) and takes its lock; throws DataDirInUseError when another Sluice has it. */
export async function lockDataDir(dataDir: string): Promise<InstanceLock> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  const path = lockFile(dataDir);
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw error;
      const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(holder) && holder > 0 && (await sluiceRuns(holder))) throw new DataDirInUseError(dataDir, holder);
      await rm(path, { force: true }); // left by a process that is gone (kill -9, a crash, a power cut)
    }
  }
  let pointer = false;
  return {
    async publish(info, embedded) {
      const full: InstanceInfo = { ...info, pid: process.pid, dataDir: resolve(dataDir) };
      await writeAtomically(infoFile(dataDir), full);
      if (embedded) {
        await mkdir(join(tmpdir(), `sluice-${userInfo().uid}`), { recursive: true, mode: 0o700 });
        await writeAtomically(embeddedPointer(), full);
        pointer = true;
      }
    },
    async release() {
      await rm(infoFile(dataDir), { force: true });
      if (pointer) await rm(embeddedPointer(), { force: true });
      await rm(path, { force: true });
    },
  };
}

async function writeAtomically(path: string, value: unknown): Promise<void> {
  await writeFile(`${path}.part`, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  await rename(`${path}.part`, path);
}

async function readInfo(path: string): Promise<InstanceInfo | undefined> {
  const info = await readFile(path, 'utf8').then((text) => JSON.parse(text) as InstanceInfo, () => undefined);
  return info && (await sluiceRuns(info.pid)) ? info : undefined;
}

/** The Sluice that runs on this data directory, if one does. */
export const runningOn = (dataDir: string): Promise<InstanceInfo | undefined> => readInfo(infoFile(dataDir));

/** The Sluice this user started on the embedded default (no config file), wherever it was started. */
export const runningOnEmbeddedDefault = (): Promise<InstanceInfo | undefined> => readInfo(embeddedPointer());
