// RT-3: reload when the config file changes. The directory is watched, not the
// file, because editors replace a file by renaming a new one over it; events
// are gathered for a moment, and a write that leaves the content as it was is
// no change.
import { createHash } from 'node:crypto';
import { watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

/** Editors write in several steps; wait this long after the last event. */
const SETTLE_MS = 300;

const digest = (text: Buffer) => createHash('sha256').update(text).digest('hex');

export async function watchConfigFile(path: string, onChange: () => void): Promise<{ close(): void }> {
  const name = basename(path);
  let last = digest(await readFile(path));
  let timer: NodeJS.Timeout | undefined;
  const check = async () => {
    const text = await readFile(path).catch(() => undefined);
    if (text === undefined) return; // in the middle of a rename; the next event comes
    const now = digest(text);
    if (now === last) return;
    last = now;
    onChange();
  };
  const watcher = watch(dirname(path), (_event, filename) => {
    if (filename !== name) return;
    clearTimeout(timer);
    // file-system pacing, not a domain timer: wall time is right here
    timer = setTimeout(() => void check(), SETTLE_MS);
  });
  watcher.on('error', () => undefined);
  return {
    close() {
      clearTimeout(timer);
      watcher.close();
    },
  };
}
