// The `text` log format (log.format: text): one readable line per entry, in the
// manner of Postfix's maillog, so an administrator greps it as they would:
//
//   2025-05-01T10:00:00.123Z sluice/smtp[4242]: connect from localhost[127.0.0.1] listener=inbound
//   2025-05-01T10:00:00.456Z sluice/smtp[4242]: NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.7.1 Relaying denied; from=<a@example.net> to=<b@example.org> listener=inbound
//   2025-05-01T10:00:01.789Z sluice/delivery[4242]: 0M1ABC: to=<b@example.com>, relay=mx.example.com[192.0.2.1]:25, delay=0.42, attempt=1, dsn=2.0.0, status=sent (250 2.0.0 Ok)
//
// The events of docs/logging.md have their own wording; every other entry is
// its message followed by its fields as key=value.

/** A parsed pino entry. */
export type LogObject = Record<string, unknown> & { level?: number; time?: string | number; msg?: string; module?: string };

const LEVEL_PREFIX: Record<number, string> = { 10: 'trace: ', 20: 'debug: ', 40: 'warning: ', 50: 'error: ', 60: 'fatal: ' };

/** Fields shown by the wording of an event, or never shown in text. */
const HIDDEN = new Set(['level', 'time', 'msg', 'module', 'pid', 'hostname']);

const str = (value: unknown): string => (value === undefined || value === null ? '' : typeof value === 'string' ? value : JSON.stringify(value));
/** A value of key=value: quoted only when it has a space, a quote or nothing. */
const val = (value: unknown): string => {
  const text = str(value);
  return text === '' || /[\s"]/.test(text) ? JSON.stringify(text) : text;
};
const angle = (address: unknown) => `<${str(address)}>`;
const client = (entry: LogObject) => `${str(entry.clientName) || 'unknown'}[${str(entry.client)}]`;

function rest(entry: LogObject, shown: string[]): string {
  const skip = new Set(shown);
  const parts: string[] = [];
  for (const [key, value] of Object.entries(entry)) {
    if (HIDDEN.has(key) || skip.has(key) || value === undefined) continue;
    if (key === 'err' && value && typeof value === 'object') {
      const err = value as { type?: string; message?: string };
      parts.push(`err=${val(`${err.type ?? 'Error'}: ${err.message ?? ''}`)}`);
      continue;
    }
    parts.push(`${key}=${val(value)}`);
  }
  return parts.join(' ');
}

const joined = (...parts: string[]) => parts.filter((p) => p !== '').join(' ');

/** The wording of each event of docs/logging.md, keyed by module and message. */
const EVENTS: Record<string, (entry: LogObject) => string> = {
  'smtp connect': (e) => joined(`connect from ${client(e)}`, rest(e, ['client', 'clientName'])),
  'smtp disconnect': (e) => joined(`disconnect from ${client(e)}`, str(e.commands), rest(e, ['client', 'clientName', 'commands'])),
  'smtp reject': (e) =>
    joined(
      `${str(e.queueId) || 'NOQUEUE'}: reject: ${str(e.command) || 'CONNECT'} from ${client(e)}: ${str(e.reply)};`,
      e.from !== undefined ? `from=${angle(e.from)}` : '',
      e.to !== undefined ? `to=${angle(e.to)}` : '',
      rest(e, ['queueId', 'command', 'client', 'clientName', 'reply', 'from', 'to']),
    ),
  'smtp auth failed': (e) =>
    joined(`${client(e)}: SASL ${str(e.method) || 'AUTH'} authentication failed: ${str(e.reply)};`, rest(e, ['client', 'clientName', 'method', 'reply'])),
  'intake accepted': (e) =>
    `${str(e.queueId)}: ${joined(
      [
        `from=${angle(e.from)}, size=${str(e.size)}, nrcpt=${str(e.nrcpt)}`,
        Array.isArray(e.to) ? `to=${e.to.map(angle).join(',')}` : '',
        e.client !== undefined ? `client=${client(e)}` : '',
      ]
        .filter(Boolean)
        .join(', '),
      rest(e, ['queueId', 'from', 'size', 'nrcpt', 'to', 'client', 'clientName']),
    )}`,
  'delivery delivery': (e) =>
    `${str(e.queueId)}: ${joined(
      `to=${angle(e.to)}, relay=${str(e.relay) || 'none'}, delay=${str(e.delay)}, attempt=${str(e.attempt)}, dsn=${str(e.dsn)}, status=${str(e.status)} (${str(e.reply)})`,
      rest(e, ['queueId', 'to', 'relay', 'delay', 'attempt', 'dsn', 'status', 'reply']),
    )}`,
};

function timeOf(time: unknown): string {
  if (typeof time === 'number') return new Date(time).toISOString();
  return str(time) || new Date().toISOString();
}

/** One entry as one line of text (without the newline); `withTime: false` leaves out the time (syslog has its own). */
export function formatText(entry: LogObject, options: { pid?: number; withTime?: boolean } = {}): string {
  const module = str(entry.module);
  const tag = `sluice${module ? `/${module}` : ''}[${options.pid ?? (typeof entry.pid === 'number' ? entry.pid : process.pid)}]:`;
  const wording = EVENTS[`${module} ${str(entry.msg)}`];
  const text = wording ? wording(entry) : joined(str(entry.msg), rest(entry, []));
  const line = `${tag} ${LEVEL_PREFIX[entry.level ?? 30] ?? ''}${text}`.replace(/[\r\n]+/g, ' ');
  return options.withTime === false ? line : `${timeOf(entry.time)} ${line}`;
}
