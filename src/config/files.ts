// What a valid config can still get wrong on this machine, checked before it
// is put in force (`config check`, start, reload): certificate and key files
// that are missing, unreadable, not PEM or not a pair, and a data directory
// that cannot be created or written.
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { Config } from './schema.js';

export interface FileProblem {
  path: (string | number)[];
  message: string;
}

async function readPem(file: string, kind: 'certificate' | 'private key'): Promise<{ data?: Buffer; problem?: string }> {
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { problem: code === 'ENOENT' ? `${kind} file ${file} does not exist` : `cannot read ${kind} file ${file}: ${(error as Error).message}` };
  }
  const marker = kind === 'certificate' ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
  if (!marker.test(data.toString('latin1'))) return { problem: `${file} is not a PEM ${kind} (no "-----BEGIN ${kind === 'certificate' ? 'CERTIFICATE' : '... PRIVATE KEY'}-----" line)` };
  return { data };
}

async function listenerTlsProblems(config: Config): Promise<FileProblem[]> {
  const problems: FileProblem[] = [];
  for (const [index, listener] of config.listeners.entries()) {
    if (!listener.tls) continue;
    const at = (key: 'cert' | 'key') => ['listeners', index, 'tls', key];
    const cert = await readPem(listener.tls.cert, 'certificate');
    const key = await readPem(listener.tls.key, 'private key');
    if (cert.problem) problems.push({ path: at('cert'), message: cert.problem });
    if (key.problem) problems.push({ path: at('key'), message: key.problem });
    if (!cert.data || !key.data) continue;
    try {
      createSecureContext({ cert: cert.data, key: key.data });
    } catch (error) {
      problems.push({ path: at('key'), message: `${listener.tls.key} does not go with ${listener.tls.cert}: ${(error as Error).message}` });
    }
  }
  return problems;
}

/** The data directory must be writable, or creatable in its nearest existing parent. */
async function dataDirProblems(config: Config): Promise<FileProblem[]> {
  let dir = resolve(config.dataDir);
  for (;;) {
    const found = await stat(dir).catch(() => undefined);
    if (found) {
      if (!found.isDirectory()) return [{ path: ['dataDir'], message: `${dir} is not a directory` }];
      const writable = await access(dir, constants.W_OK | constants.X_OK).then(() => true, () => false);
      if (writable) return [];
      const what = dir === resolve(config.dataDir) ? 'cannot be written' : `cannot be created: ${dir} is not writable`;
      return [{ path: ['dataDir'], message: `${resolve(config.dataDir)} ${what}` }];
    }
    if (dirname(dir) === dir) return [{ path: ['dataDir'], message: `${resolve(config.dataDir)} cannot be created` }];
    dir = dirname(dir);
  }
}

export async function findFileProblems(config: Config): Promise<FileProblem[]> {
  return [...(await listenerTlsProblems(config)), ...(await dataDirProblems(config))];
}
