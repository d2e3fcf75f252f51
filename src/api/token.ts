// The management API's bearer token: `management.token` when configured, else a
// random one kept in `<dataDir>/management.token` (mode 0600), where the local
// `sluice` CLI finds it.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const tokenFile = (dataDir: string) => join(dataDir, 'management.token');

export async function managementToken(configured: string | undefined, dataDir: string): Promise<string> {
  if (configured) return configured;
  const file = tokenFile(dataDir);
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    const token = randomBytes(24).toString('base64url');
    await writeFile(file, `${token}\n`, { mode: 0o600, flag: 'wx' }).catch(() => undefined);
    return (await readFile(file, 'utf8')).trim();
  }
}
