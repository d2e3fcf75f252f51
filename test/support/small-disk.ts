// A real, small filesystem for tests that fill the disk: an ext4 image on a
// loop device, or else a size-limited tmpfs. Needs root (CI has it); where
// mounting is refused it returns undefined and the test skips.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, statfs, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SmallDisk {
  path: string;
  how: 'ext4 on a loop device' | 'tmpfs';
  freeBytes(): Promise<number>;
  /** Takes all free space but `leaveBytes` with a file of its own; returns a function that frees it again. */
  fill(leaveBytes: number): Promise<() => Promise<void>>;
}

export async function mountSmallDisk(t: Pick<TestContext, 'after'>, megabytes: number): Promise<SmallDisk | undefined> {
  const base = await mkdtemp(join(tmpdir(), 'sluice-disk-'));
  // one hook, in this order: a folder still mounted cannot be removed
  t.after(async () => {
    if (mounted) await run('umount', ['-l', path]).catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  });
  let mounted = false;
  const path = join(base, 'mnt');
  await mkdir(path);
  const image = join(base, 'disk.img');
  const attempts: Array<[SmallDisk['how'], () => Promise<unknown>]> = [
    [
      'ext4 on a loop device',
      async () => {
        await run('truncate', ['-s', `${megabytes}M`, image]);
        await run('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
        await run('mount', ['-o', 'loop', image, path]);
      },
    ],
    ['tmpfs', () => run('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m`, 'tmpfs', path])],
  ];
  for (const [how, mount] of attempts) {
    try {
      await mount();
    } catch {
      continue;
    }
    // unmounted lazily: the processes of the test may still have files open on it
    mounted = true;
    let fillers = 0;
    const freeBytes = async () => {
      const stats = await statfs(path);
      return stats.bavail * stats.bsize;
    };
    return {
      path,
      how,
      freeBytes,
      async fill(leaveBytes) {
        const filler = join(path, `filler-${fillers++}`);
        const size = Math.max(0, (await freeBytes()) - leaveBytes);
        await writeFile(filler, Buffer.alloc(size)).catch((error: NodeJS.ErrnoException) => {
          // the filesystem's own bookkeeping took the last blocks: full is what was asked for
          if (error.code !== 'ENOSPC') throw error;
        });
        return () => unlink(filler);
      },
    };
  }
  return undefined;
}
