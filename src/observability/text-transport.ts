// A pino transport (run in pino's worker thread, never on the event loop of
// the relay) that turns entries into the `text` format. It is the first step
// of a pipeline: what it writes goes to the destination's transport (a file,
// standard output, pino-syslog). For syslog it hands on the entry as
// pino-syslog reads it (time in milliseconds, pid and host name); in `text`
// format its `msg` is the line of text without the time (syslog stamps its
// own), for pino-syslog's `messageOnly`.
import { hostname } from 'node:os';
import { Transform, pipeline } from 'node:stream';
import build from 'pino-abstract-transport';
import { formatText, type LogObject } from './text-format.js';

export interface TextTransportOptions {
  /** `line`: text lines; `syslog`: entries for pino-syslog. */
  output?: 'line' | 'syslog';
  /** With `syslog`: the message is the whole entry as JSON, or the line of text. */
  format?: 'json' | 'text';
  /** The pid of the relay (the worker's is the same process, but kept explicit). */
  pid?: number;
}

export default function textTransport(options: TextTransportOptions = {}) {
  const host = hostname();
  return build(
    (source) => {
      const stream = new Transform({
        writableObjectMode: true,
        transform(entry: LogObject, _encoding, done) {
          if (options.output === 'syslog') {
            const header = { level: entry.level ?? 30, time: typeof entry.time === 'string' ? Date.parse(entry.time) : (entry.time ?? Date.now()), pid: options.pid ?? process.pid, hostname: host };
            const line = options.format === 'text' ? { ...header, msg: formatText(entry, { withTime: false, pid: header.pid }) } : { ...entry, ...header };
            done(null, `${JSON.stringify(line)}\n`);
          } else done(null, `${formatText(entry, options.pid ? { pid: options.pid } : {})}\n`);
        },
      });
      pipeline(source, stream, () => undefined);
      return stream;
    },
    { enablePipelining: true },
  );
}
