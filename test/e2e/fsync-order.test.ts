// IN-2's power-loss promise, checked without pulling a plug: Sluice runs under
// strace, and for every message the trace must show the store's WAL synced
// (fdatasync or fsync completed) after the message was written to it and
// before the `250` went to the client socket.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import { SmtpClient, queueIdOf } from '../support/smtp-client.js';
import { spawnSluice } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

function hasStrace(): boolean {
  try {
    execFileSync('strace', ['-o', '/dev/null', 'true']);
    return true;
  } catch {
    return false;
  }
}

type TraceEvent =
  | { kind: 'walWrite'; at: number; text: string }
  | { kind: 'walSync'; at: number }
  | { kind: 'socketWrite'; at: number; text: string };

/**
 * The events of an `strace -f -yy` log in the order strace saw them. A call that another thread interrupted is
 * split into `<unfinished ...>` and `<... resumed>`: writes count from their start, syncs from their end.
 */
function parseTrace(log: string): TraceEvent[] {
  const events: TraceEvent[] = [];
  const pendingSync = new Set<string>();
  log.split('\n').forEach((line, at) => {
    const match = /^(\d+)\s+(.*)$/.exec(line);
    if (!match) return;
    const [, pid, call] = match as unknown as [string, string, string];
    const resumed = /^<\.\.\. (fdatasync|fsync) resumed>.*= 0$/.exec(call);
    if (resumed) {
      if (pendingSync.delete(pid)) events.push({ kind: 'walSync', at });
      return;
    }
    const sync = /^(fdatasync|fsync)\(\d+<[^>]*queue\.db-wal>(.*)$/.exec(call);
    if (sync) {
      if (sync[2]!.includes('<unfinished')) pendingSync.add(pid);
      else if (/= 0$/.test(sync[2]!)) events.push({ kind: 'walSync', at });
      return;
    }
    if (/^pwrite64\(\d+<[^>]*queue\.db-wal>/.test(call)) events.push({ kind: 'walWrite', at, text: call });
    else if (/^(write|writev|sendmsg|sendto)\(\d+<TCP/.test(call)) events.push({ kind: 'socketWrite', at, text: call });
  });
  return events;
}

it('syncs the WAL after each message is written to it and before its 250 is written (IN-2, ST-2)', async (t) => {
  if (!hasStrace()) return t.skip('strace is not installed (Debian package strace); .ci/run installs it');
  const dir = await tempDir(t);
  const traceFile = join(dir, 'trace.txt');
  const sluice = await spawnSluice(t, {}, dir, ['strace', '-f', '-yy', '-s', '65536', '-e', 'trace=pwrite64,write,writev,sendmsg,sendto,fdatasync,fsync', '-o', traceFile]);
  const nodePid = Number((await readFile(`/proc/${sluice.child.pid}/task/${sluice.child.pid}/children`, 'utf8')).trim().split(/\s+/)[0]);
  t.after(() => {
    try {
      process.kill(nodePid, 'SIGKILL');
    } catch {
      // already gone
    }
  });

  const body = (i: number) => `Subject: fsync check ${i}\r\n\r\nmessage ${i}\r\n`;
  const ids: string[] = [];
  // one at a time, then several connections at once so that acceptances share a commit
  for (let i = 0; i < 10; i++) ids.push(await SmtpClient.submit(sluice.port, 'a@example.net', ['b@example.com'], body(i)));
  const together = await Promise.all(
    Array.from({ length: 5 }, async (_, c) => {
      const client = await SmtpClient.open(sluice.port);
      const mine: string[] = [];
      for (let i = 0; i < 4; i++) mine.push(queueIdOf(await client.send('a@example.net', ['b@example.com'], body(100 + c * 10 + i))));
      client.close();
      return mine;
    }),
  );
  ids.push(...together.flat());
  process.kill(nodePid, 'SIGTERM');
  assert.equal(await sluice.exited, 0);

  const events = parseTrace(await readFile(traceFile, 'utf8'));
  assert.ok(events.some((e) => e.kind === 'walSync'), 'the trace shows WAL syncs at all');
  for (const id of ids) {
    const written = events.find((e) => e.kind === 'walWrite' && e.text.includes(id));
    const replied = events.find((e) => e.kind === 'socketWrite' && e.text.includes(`queued as ${id}`));
    assert.ok(written, `${id} is written to the WAL`);
    assert.ok(replied, `${id}'s 250 is written to the client`);
    assert.ok(written.at < replied.at, `${id} is written before its 250`);
    const synced = events.find((e) => e.kind === 'walSync' && e.at > written.at && e.at < replied.at);
    assert.ok(synced, `the WAL is synced between ${id}'s write (trace line ${written.at + 1}) and its 250 (line ${replied.at + 1})`);
  }
});
