// Commands that smtp-server answers in a way RFC 5321 and 3207 do not allow.
//
// RFC 5321 §4.5.3.1.4: a command line over the limit is answered `500 5.5.2`
// and the session goes on. smtp-server's parser instead fails on such a line
// (421 and a close). So each connection's parser gets a guard in front of it:
// it passes complete command lines only, holds a partial one until its end
// arrives, and replaces a line over the limit by a marker that the command
// handler answers. In data mode (the message itself) bytes pass untouched.
// The guard also refuses a command line with a bare CR inside: smtp-server
// would read `MAIL FROM:<a@b>\rRCPT...` as the MAIL alone, where another MTA
// may see two commands (a smuggling risk, RFC 5321 §2.3.8).
import type { SMTPServer } from 'smtp-server';
import type { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { patchEachConnection } from './connection-hook.js';
import { REPLIES, type ReplyName } from './replies.js';

const CR = 13;
const LF = 10;
/** Lines that replace a refused command line; the handler answers them. No valid command starts with NUL. */
const REFUSED_LINES = ['commandTooLong', 'bareCrInCommand'] as const satisfies readonly ReplyName[];
type RefusedLine = (typeof REFUSED_LINES)[number];
const markerOf = (name: RefusedLine) => `\0\0${name}\0\0`;
const MARKER_LINES = new Map(REFUSED_LINES.map((name) => [name, Buffer.from(`${markerOf(name)}\r\n`)]));
const MARKED = new Map(REFUSED_LINES.map((name) => [markerOf(name), name]));

type Next = (error?: Error | null) => void;

/** The private parts of smtp-server's parser (SMTPStream) and connection that the guard works with. */
interface Parser {
  _dataMode: boolean;
  _write(chunk: Buffer, encoding: BufferEncoding, next: Next): void;
  oncommand(command: Buffer, callback: () => void): void;
}
interface Connection {
  _parser: Parser;
  _createParser(): Parser;
  send: SMTPConnection['send'];
}

function sendReply(connection: Connection, name: ReplyName): void {
  const [code, enhanced, text] = REPLIES[name];
  connection.send(code, `${enhanced} ${text}`);
}

function guard(parser: Parser, connection: Connection, maxLength: number): Parser {
  const write = parser._write.bind(parser);
  let held: Buffer = Buffer.alloc(0);
  let overLong = false;
  parser._write = (chunk, encoding, next) => {
    const input = held.length > 0 ? Buffer.concat([held, chunk]) : chunk;
    held = Buffer.alloc(0);
    if (parser._dataMode) return write(input, encoding, next);
    const lines: Buffer[] = [];
    let start = 0;
    let replaced = false;
    for (let lf = input.indexOf(LF); lf !== -1; lf = input.indexOf(LF, start)) {
      const end = lf > start && input[lf - 1] === CR ? lf - 1 : lf;
      const refused: RefusedLine | undefined =
        overLong || end - start > maxLength ? 'commandTooLong' : input.subarray(start, end).includes(CR) ? 'bareCrInCommand' : undefined;
      replaced ||= refused !== undefined;
      lines.push(refused ? MARKER_LINES.get(refused)! : input.subarray(start, lf + 1));
      overLong = false;
      start = lf + 1;
    }
    const rest = input.subarray(start);
    // one octet more than the limit may be the CR of a CRLF still to come
    if (overLong || rest.length > maxLength + 1) overLong = true;
    else held = Buffer.from(rest);
    if (lines.length === 0) return next();
    // the usual case, nothing refused: the complete lines as they came, without a copy
    write(replaced ? Buffer.concat(lines) : input.subarray(0, start), encoding, next);
  };
  const oncommand = parser.oncommand.bind(parser);
  parser.oncommand = (command, callback) => {
    const refused = command[0] === 0 ? MARKED.get(command.toString('latin1')) : undefined;
    if (!refused) return oncommand(command, callback);
    sendReply(connection, refused);
    callback();
  };
  return parser;
}

export function answerLongCommandLines(server: SMTPServer, maxLength: number): void {
  patchEachConnection(server, (smtpConnection) => {
    const connection = smtpConnection as unknown as Connection;
    // the parser made with the connection, and the new one a STARTTLS session gets
    guard(connection._parser, connection, maxLength);
    const create = connection._createParser.bind(connection);
    connection._createParser = () => guard(create(), connection, maxLength);
  });
}

/**
 * RFC 3207: without a certificate of our own STARTTLS is refused with 454. smtp-server would otherwise start TLS
 * with its built-in certificate, whose private key ships in the package.
 */
export function refuseStartTls(server: SMTPServer): void {
  patchEachConnection(server, (smtpConnection) => {
    const connection = smtpConnection as unknown as Connection & { handler_STARTTLS(command: Buffer, callback: () => void): void };
    connection.handler_STARTTLS = (_command, callback) => {
      sendReply(connection, 'tlsUnavailable');
      callback();
    };
  });
}
