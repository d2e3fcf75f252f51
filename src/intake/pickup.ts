// The pickup and replay directories (IN-8): each `*.eml` file dropped there is
// submitted like a message received over SMTP, with the envelope from its
// headers (file-envelope.ts), and deleted only once the store has it on disk.
// A file that cannot be submitted moves to the badmail directory with a
// `.reason` file. Writers put a file in place by renaming it to `*.eml`, so a
// half-written file is never read.
import { watch } from 'node:fs';
import { mkdir, open, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Clock } from '../clock.js';
import { aboutMessage, type MessageEvents } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import { decodeHeaderText } from '../mail/header-text.js';
import type { NewMessage, QueueStore } from '../store/types.js';
import type { BackPressure } from './back-pressure.js';
import { BadFile, headerFields, pickupEnvelope, replayEnvelope, type FileEnvelope, type HeaderField } from './file-envelope.js';
import { localReceivedHeader } from './received-header.js';

const READ_BYTES = 64 * 1024;
const MAX_HEADER_BYTES = 1024 * 1024;
/** A missed file-system event costs at most this long (a full disk, a watch that drops events). */
const RESCAN_MS = 5_000;

type PickupKind = 'pickup' | 'replay';

export interface PickupDirectory {
  /** Resolves when the files present now have been handled (tests and shutdown). */
  drained(): Promise<void>;
  close(): Promise<void>;
}

interface PickupDeps {
  kind: PickupKind;
  dir: string;
  badmailDir: string;
  maxMessageSize: number;
  hostname: string;
  store: QueueStore;
  clock: Clock;
  logger: Logger;
  events: MessageEvents;
  backPressure: BackPressure;
  onAccepted: () => void;
}

const CR = Buffer.from('\r');

/** Copies bytes with every line ending made CRLF, as SMTP carries them (files often have bare LF), noting 8-bit content. */
class LineEndings {
  private lastWasCr = false;
  eightBit = false;

  crlf(chunk: Buffer): Buffer {
    if (!this.eightBit && /[\x80-\xff]/.test(chunk.toString('latin1'))) this.eightBit = true;
    const parts: Buffer[] = [];
    let from = 0;
    for (let at = chunk.indexOf(0x0a); at !== -1; at = chunk.indexOf(0x0a, at + 1)) {
      const before = at > 0 ? chunk[at - 1] === 0x0d : this.lastWasCr;
      if (before) continue;
      parts.push(chunk.subarray(from, at), CR);
      from = at;
    }
    if (chunk.length > 0) this.lastWasCr = chunk[chunk.length - 1] === 0x0d;
    if (parts.length === 0) return chunk;
    parts.push(chunk.subarray(from));
    return Buffer.concat(parts);
  }
}

export async function startPickupDirectory(deps: PickupDeps): Promise<PickupDirectory> {
  const logger = deps.logger.child({ module: 'pickup', directory: deps.kind });
  await mkdir(deps.dir, { recursive: true });
  await mkdir(deps.badmailDir, { recursive: true });
  let scanning: Promise<void> = Promise.resolve();
  let again = false;
  let closed = false;

  /** Reads the header block; the rest of the file follows from `offset`. */
  async function readHead(file: Awaited<ReturnType<typeof open>>): Promise<{ fields: HeaderField[]; separator: Buffer; offset: number }> {
    let head = Buffer.alloc(0);
    for (;;) {
      const crlf = head.indexOf('\r\n\r\n');
      const lf = head.indexOf('\n\n');
      const end = crlf !== -1 && (lf === -1 || crlf < lf) ? { at: crlf + 2, length: 2 } : lf !== -1 ? { at: lf + 1, length: 1 } : undefined;
      if (end) return { fields: headerFields(head.subarray(0, end.at)), separator: head.subarray(end.at, end.at + end.length), offset: end.at + end.length };
      const { bytesRead, buffer } = await file.read(Buffer.alloc(READ_BYTES), 0, READ_BYTES, head.length);
      if (bytesRead === 0) return { fields: headerFields(head), separator: Buffer.alloc(0), offset: head.length }; // no body
      head = Buffer.concat([head, buffer.subarray(0, bytesRead)]);
      if (head.length > MAX_HEADER_BYTES) throw new BadFile(`no end of the header within ${MAX_HEADER_BYTES} bytes`);
    }
  }

  async function submit(path: string): Promise<void> {
    const file = await open(path, 'r');
    const writer = deps.store.receive();
    try {
      const { size } = await file.stat();
      if (size > deps.maxMessageSize) throw new BadFile(`${size} bytes is more than pickup.maxMessageSize (${deps.maxMessageSize})`);
      const head = await readHead(file);
      const envelope: FileEnvelope = deps.kind === 'replay' ? replayEnvelope(head.fields) : pickupEnvelope(head.fields);
      const endings = new LineEndings();
      await writer.write(endings.crlf(Buffer.concat([...envelope.kept.map((f) => f.raw), head.separator])));
      for (let offset = head.offset; ; ) {
        const { bytesRead, buffer } = await file.read(Buffer.alloc(READ_BYTES), 0, READ_BYTES, offset);
        if (bytesRead === 0) break;
        await writer.write(endings.crlf(buffer.subarray(0, bytesRead)));
        offset += bytesRead;
      }
      const field = (name: string) => envelope.kept.find((f) => f.name === name)?.value;
      const now = deps.clock.now();
      const message: NewMessage = {
        mailFrom: envelope.mailFrom,
        recipients: envelope.recipients,
        receivedAt: now,
        bodyType: endings.eightBit ? '8BITMIME' : '7BIT',
        smtpUtf8: [envelope.mailFrom, ...envelope.recipients.map((r) => r.address)].some((a) => /[^\x00-\x7f]/.test(a)),
        ...(envelope.dsnRet ? { dsnRet: envelope.dsnRet } : {}),
        ...(envelope.dsnEnvid ? { dsnEnvid: envelope.dsnEnvid } : {}),
        sourceIp: '127.0.0.1',
        sourceName: deps.kind,
        ...(field('message-id') ? { internetMessageId: field('message-id') } : {}),
        ...(field('subject') ? { subject: decodeHeaderText(field('subject')) } : {}),
        traceHeader: localReceivedHeader(deps.hostname, writer.id, now),
      };
      const stored = await writer.commit(message);
      // durable now: only then may the file go
      await unlink(path);
      deps.events.record({ event: 'received', ...aboutMessage(stored), recipients: stored.recipients.map((r) => r.address), size: stored.size, source: deps.kind, file: basename(path) });
      deps.onAccepted();
    } catch (error) {
      await writer.abort().catch(() => undefined);
      throw error;
    } finally {
      await file.close();
    }
  }

  async function toBadmail(path: string, reason: string): Promise<void> {
    const name = basename(path);
    const target = join(deps.badmailDir, `${deps.clock.now()}-${name}`);
    await rename(path, target);
    await writeFile(`${target}.reason`, `${reason}\n`);
    logger.warn({ file: name, badmail: target, reason }, 'file moved to badmail');
  }

  async function scan(): Promise<void> {
    const names = (await readdir(deps.dir)).filter((name) => name.toLowerCase().endsWith('.eml')).sort();
    for (const name of names) {
      if (closed) return;
      // a full store takes nothing more; the files wait (IN-6)
      if (await deps.backPressure.refusing()) return;
      const path = join(deps.dir, name);
      try {
        await submit(path);
      } catch (error) {
        if (error instanceof BadFile) await toBadmail(path, error.message).catch((e: unknown) => logger.error({ err: e, file: name }, 'moving to badmail failed'));
        else if ((error as NodeJS.ErrnoException).code !== 'ENOENT') logger.error({ err: error, file: name }, 'pickup failed; the file stays for the next scan');
      }
    }
  }

  function rescan(): void {
    if (closed) return;
    if (again) return;
    again = true;
    scanning = scanning.then(() => {
      again = false;
      return scan().catch((error: unknown) => logger.error({ err: error }, 'pickup scan failed'));
    });
  }

  const watcher = watch(deps.dir, () => rescan());
  watcher.on('error', (error) => logger.error({ err: error }, 'pickup watch failed; rescanning on a timer only'));
  // file-system pacing, not a domain timer: wall time is right here
  const timer = setInterval(rescan, RESCAN_MS);
  timer.unref();
  rescan();
  logger.info({ dir: deps.dir }, 'watching for .eml files');
  return {
    drained: () => scanning,
    async close() {
      closed = true;
      clearInterval(timer);
      watcher.close();
      await scanning;
    },
  };
}
