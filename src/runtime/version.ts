// The version of this Sluice, from its package.json: the nearest one above
// this file named "sluice" (the checkout, a build folder, an installed package).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dirname(dir) !== dir; dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'sluice' && pkg.version) return pkg.version;
  }
  return 'unknown';
}

export const SLUICE_VERSION: string = findVersion();
