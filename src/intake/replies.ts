// Every SMTP refusal Sluice gives, with its enhanced status code (RFC 3463),
// in one table (IN-4, IN-5, IN-6). Handlers throw `refusal(name)`; nothing else
// writes reply codes. The patch of smtp-server's send() lives here too.
import type { Socket } from 'node:net';
import type { SMTPServer } from 'smtp-server';
import type { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { patchEachConnection } from './connection-hook.js';

export const REPLIES = {
  relayDenied: [550, '5.7.1', 'Relaying denied'],
  recipientSyntax: [501, '5.1.3', 'Bad recipient address syntax: a domain is required'],
  tooManyConnections: [421, '4.7.0', 'Too many connections, try again later'],
  tooManyConnectionsFromIp: [421, '4.7.0', 'Too many connections from your address, try again later'],
  shuttingDown: [421, '4.3.2', 'Service shutting down, try again later'],
  listenerSuspended: [421, '4.3.2', 'Service not accepting mail at the moment, try again later'],
  sessionTimeout: [421, '4.4.2', 'Session time limit exceeded, closing connection'],
  messageTooBig: [552, '5.3.4', 'Message size exceeds fixed maximum message size'],
  bareLf: [554, '5.6.0', 'Message contains a bare LF; lines must end with CRLF (RFC 5321 section 2.3.8)'],
  bareCr: [554, '5.6.0', 'Message contains a bare CR; lines must end with CRLF (RFC 5321 section 2.3.8)'],
  nulOctet: [554, '5.6.0', 'Message contains NUL octets'],
  lineTooLong: [554, '5.6.0', 'Message has a line longer than the limit'],
  commandTooLong: [500, '5.5.2', 'Line too long'],
  bareCrInCommand: [500, '5.5.2', 'Bare CR in command line; lines must end with CRLF'],
  tlsUnavailable: [454, '4.7.0', 'TLS not available'],
  insufficientStorage: [452, '4.3.1', 'Insufficient system storage, try again later'],
  storeUnavailable: [451, '4.3.0', 'Temporary local problem, please try again later'],
  authFailed: [535, '5.7.8', 'Authentication credentials invalid'],
} as const satisfies Record<string, readonly [number, string, string]>;

export type ReplyName = keyof typeof REPLIES;

/** An SMTP reply that smtp-server sends in place of the command's success. */
export class SmtpRefusal extends Error {
  readonly responseCode: number;
  constructor(readonly reply: ReplyName, detail?: string) {
    const [code, enhanced, text] = REPLIES[reply];
    super(`${enhanced} ${text}${detail ? ` (${detail})` : ''}`);
    this.responseCode = code;
  }
}

export const refusal = (reply: ReplyName, detail?: string) => new SmtpRefusal(reply, detail);

const ENHANCED_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;

const corked = new WeakSet<Socket>();

/**
 * Replies to a pipelined group of commands (MAIL, RCPT..., DATA) are written
 * together, in one system call, at the end of this turn of the event loop,
 * instead of one write each (RFC 2920 §3.1 lets a server do so).
 */
function corkUntilNextTurn(socket: Socket | undefined): void {
  if (!socket || socket.destroyed || corked.has(socket)) return;
  corked.add(socket);
  socket.cork();
  setImmediate(() => {
    corked.delete(socket);
    socket.uncork();
  });
}

/** Printable US-ASCII only (RFC 5321 §4.2): client-supplied text that smtp-server echoes may carry anything. */
function ascii<T extends string | string[] | null | undefined>(data: T): T {
  const clean = (line: string) => String(line).replace(/[^\x00-\x7e]/g, '?');
  return (Array.isArray(data) ? data.map(clean) : typeof data === 'string' ? clean(data) : data) as T;
}

/**
 * The one patch of smtp-server's send(), on each connection of one server, for what it does not offer:
 * - It derives the enhanced status code of an application's refusal from the
 *   reply code alone (550 → 5.1.1), which would tell a client that relaying
 *   was denied because the mailbox does not exist. Our refusals carry their
 *   code in front of the text; send() uses it instead.
 * - It writes each reply on its own; replies of one turn are written together.
 * - It echoes client-supplied text (parameter names, addresses) with 8-bit octets as they came.
 */
export function installReplyOverrides(server: SMTPServer): void {
  patchEachConnection(server, (connection) => {
    const patched = connection as unknown as { send: SMTPConnection['send']; _socket?: Socket };
    const original = patched.send.bind(connection);
    patched.send = (code, data, context) => {
      // 220 (greeting, STARTTLS) is never pipelined, and after STARTTLS's the socket is handed to TLS at once
      if (code !== 220) corkUntilNextTurn(patched._socket);
      const carriesCode = typeof data === 'string' && ENHANCED_PREFIX.test(data);
      // context false: send the text as it is, without a second code
      return original(code, ascii(data), carriesCode ? false : context);
    };
  });
}
