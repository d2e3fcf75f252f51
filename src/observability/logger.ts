// The log (MG-5, docs/logging.md) through pino: JSON lines, or the `text`
// format (one maillog-like line per entry), on stdout, in a file rotated by
// pino-roll, or sent to a syslog server by pino-syslog and pino-socket. Every
// part gets a child logger named after its module, so `jq
// 'select(.module=="smtp")'` works. Nothing is written synchronously: stdout
// JSON goes through pino's asynchronous destination, everything else through
// pino's transports, which format and write in a worker thread.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino, type DestinationStream, type Logger, type TransportTargetOptions } from 'pino';
import type { Config } from '../config/schema.js';
import { formatText, type LogObject } from './text-format.js';

export type { Logger };

export type LogSettings = Pick<Config, 'log' | 'dataDir'>;

const require = createRequire(import.meta.url);
const TEXT_TRANSPORT = fileURLToPath(new URL('./text-transport.js', import.meta.url));
const FACILITIES = { kern: 0, user: 1, mail: 2, daemon: 3, local0: 16, local1: 17, local2: 18, local3: 19, local4: 20, local5: 21, local6: 22, local7: 23 } as const;

const destinations = new WeakMap<Logger, DestinationStream>();

/** A stream that writes each JSON line it gets as a line of text to `destination` (for a destination given in-process). */
export function textStream(destination: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      const lines = chunk
        .toString()
        .split('\n')
        .filter(Boolean)
        .map((line) => `${formatText(JSON.parse(line) as LogObject)}\n`);
      destination.write(lines.join(''), () => done());
    },
  });
}

/** The log file of `destination: file`. */
export const logFilePath = (settings: LogSettings): string => settings.log.file.path ?? join(settings.dataDir, 'log', 'sluice.log');

/** The pino transport targets of a destination, after the text step when the format is text. */
function pipelineOf(settings: LogSettings): TransportTargetOptions[] {
  const { log } = settings;
  const text: TransportTargetOptions[] = log.format === 'text' ? [{ target: TEXT_TRANSPORT, options: { output: 'line', pid: process.pid } }] : [];
  if (log.destination === 'file') {
    const file = log.file;
    const options = {
      file: logFilePath(settings),
      // pino-roll takes sizes in its own units: whole kilobytes here
      size: `${Math.max(1, Math.ceil(file.maxSize / 1024))}k`,
      ...(file.frequency === 'never' ? {} : { frequency: file.frequency }),
      // files of earlier runs count too, so `keep` holds across restarts
      limit: { count: file.keep, removeOtherLogFiles: true },
      mkdir: true,
    };
    return [...text, { target: require.resolve('pino-roll'), options }];
  }
  if (log.destination === 'syslog') {
    const { syslog } = log;
    const at = syslog.address.lastIndexOf(':');
    const bracketed = at > 0 && !syslog.address.endsWith(']') ? syslog.address.slice(0, at) : syslog.address;
    const port = at > 0 && !syslog.address.endsWith(']') ? Number(syslog.address.slice(at + 1)) : 514;
    const address = bracketed.replace(/^\[|\]$/g, '');
    return [
      { target: TEXT_TRANSPORT, options: { output: 'syslog', format: log.format, pid: process.pid } },
      {
        target: require.resolve('pino-syslog'),
        options: {
          enablePipelining: true,
          modern: syslog.rfc === '5424',
          appname: syslog.appName,
          facility: FACILITIES[syslog.facility],
          messageOnly: log.format === 'text',
          // a stream needs a frame around each message; a datagram is one
          newline: syslog.protocol === 'tcp',
        },
      },
      { target: require.resolve('pino-socket'), options: { address, port, mode: syslog.protocol, reconnect: true } },
    ];
  }
  return text.length > 0 ? [...text, { target: 'pino/file', options: { destination: 1 } }] : [];
}

/**
 * The logger of a config: its level, format and destination. With `destination` (tests, tools), entries go to that
 * stream instead, in the config's format. A bare level is JSON at that level.
 */
export function createLogger(settings: string | LogSettings, destination?: NodeJS.WritableStream): Logger {
  const level = typeof settings === 'string' ? settings : settings.log.level;
  const options = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime };
  const text = typeof settings !== 'string' && settings.log.format === 'text';
  if (destination) return pino(options, text ? textStream(destination) : destination);
  const targets = typeof settings === 'string' ? [] : pipelineOf(settings);
  const stream = targets.length === 0 ? pino.destination({ dest: 1, sync: false }) : pino.transport(targets.length === 1 ? { target: targets[0]!.target, options: targets[0]!.options ?? {} } : { pipeline: targets });
  const logger = pino(options, stream);
  destinations.set(logger, stream);
  return logger;
}

/** Writes out what the logger holds and closes its destination (a transport's worker ends). */
export async function closeLogger(logger: Logger): Promise<void> {
  const stream = destinations.get(logger) as (DestinationStream & { end?: () => void; once?: (event: string, listener: () => void) => void }) | undefined;
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  if (!stream?.end || !stream.once) return;
  // a transport's worker does not keep the process alive: this timer does, until it has closed (5 s at most)
  let timer: NodeJS.Timeout | undefined;
  const closed = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, 5_000);
    stream.once!('close', resolve);
  });
  stream.end();
  await closed;
  clearTimeout(timer);
}
