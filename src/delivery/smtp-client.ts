// The outbound SMTP/LMTP connection (DL-1, DL-2, DL-9): the one adapter over
// nodemailer's smtp-connection. nodemailer speaks the protocol (STARTTLS per
// policy, PIPELINING, several recipients per transaction, LMTP replies); this
// file owns the socket and the time: every exchange runs under Sluice's own
// deadline on Sluice's clock, and every call settles, whatever the next hop
// does (answers, hangs, closes). test/delivery/smtp-client.test.ts fails when
// the library stops behaving as this file expects.
import { connect as connectSocket, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Clock } from '../clock.js';
import type { RouteConfig } from '../config/schema.js';
import { createDeadline } from './deadline.js';
import type { Target } from './mx.js';

export interface ClientOptions {
  /** Our name in EHLO/LHLO. */
  name: string;
  protocol: RouteConfig['protocol'];
  tls: RouteConfig['tls'];
  /** TCP connect, greeting, EHLO and STARTTLS together. */
  connectTimeout: number;
  /** Longest silence of the next hop while a command waits for its reply, or while the body does not move. */
  commandTimeout: number;
  /** Longest wait for the reply to the final dot (RFC 5321 §4.5.3.2.6: 10 minutes). */
  dataTimeout: number;
  clock: Clock;
  /** Ends the connection at once, wherever it is (a stop whose grace period is over). */
  signal?: AbortSignal;
}

export interface Transaction {
  from: string;
  to: string[];
  /** RFC 3461 parameters to pass on: the same for every recipient of this transaction. */
  dsn: { ret?: string; envid?: string; notify?: string[]; orcpt?: string };
  size: number;
  /** BODY=8BITMIME on MAIL FROM (RFC 6152). */
  eightBit: boolean;
  /** SMTPUTF8 on MAIL FROM (RFC 6531), also for an ASCII envelope. */
  smtpUtf8: boolean;
  body: AsyncIterable<Buffer> | Iterable<Buffer>;
}

export interface Reply {
  code: number;
  text: string;
}

export interface OutboundConnection {
  readonly target: Target;
  /** EHLO/LHLO keywords the next hop offered, upper case (SMTPUTF8, 8BITMIME, DSN, ...). */
  readonly extensions: ReadonlySet<string>;
  /** One reply per recipient address; never rejects, settles by the deadline at the latest. */
  send(transaction: Transaction): Promise<Map<string, Reply>>;
  /** False once the connection was lost, timed out or the server said 421. */
  readonly usable: boolean;
  close(): void;
}

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  response?: string;
  rejectedErrors?: SmtpError[];
  recipient?: string;
}

/** Errors after which the connection cannot carry another message. */
const CONNECTION_ERRORS = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EPROTOCOL', 'ETLS', 'ESTREAM', 'EREQUIRETLS']);
const LOST = '451 4.4.2 Connection to the next hop was lost';
export const SHUTTING_DOWN = '451 4.3.2 Sluice is shutting down; the message was handed back';
/** nodemailer's own timers stay as a backstop behind ours. */
const BACKSTOP_FACTOR = 2;

export class ConnectFailure extends Error {
  constructor(readonly reply: string) {
    super(reply);
    this.name = 'ConnectFailure';
  }
}

const replyOf = (error: SmtpError, fallback: string): Reply => ({
  code: error.responseCode ?? 451,
  text: (error.response ?? `${fallback}: ${error.message}`).trim(),
});

/** Keywords of an EHLO/LHLO reply (`250-8BITMIME`, `250 SMTPUTF8`...); none after HELO. */
export function extensionsOf(ehloReply: string): Set<string> {
  const lines = ehloReply.split(/\r?\n/).slice(1);
  return new Set(lines.map((line) => line.replace(/^\d{3}[ -]/, '').trim().split(/\s+/)[0]!.toUpperCase()).filter(Boolean));
}

function openSocket(target: Target, timeoutMs: number, clock: Clock, signal?: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connectSocket({ host: target.host, port: target.port });
    const fail = (why: string) => {
      timer.cancel();
      signal?.removeEventListener('abort', aborted);
      socket.destroy();
      reject(new ConnectFailure(`451 4.4.1 Cannot connect to ${target.name} [${target.host}]:${target.port}: ${why}`));
    };
    const aborted = () => fail('shutting down');
    if (signal?.aborted) return aborted();
    signal?.addEventListener('abort', aborted, { once: true });
    const timer = clock.setTimer(timeoutMs, () => fail('connection timed out'));
    socket.once('error', (error) => fail(error.message));
    socket.once('connect', () => {
      timer.cancel();
      signal?.removeEventListener('abort', aborted);
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

/**
 * The library writes each command and each piece of the body on its own; what it writes in one turn of the
 * event loop goes out in one system call (RFC 2920 lets a client send a pipelined group together).
 */
function writesTogether(socket: Socket): Socket {
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  let corked = false;
  socket.write = ((...args: unknown[]) => {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      setImmediate(() => {
        corked = false;
        socket.uncork();
      });
    }
    return write(...args);
  }) as Socket['write'];
  return socket;
}

/**
 * nodemailer adds SMTPUTF8 to MAIL FROM only for a non-ASCII envelope; RFC 6531 §3.4 wants it for every
 * message that came with it. The one patch, on this connection only: the MAIL command it is about to send.
 */
function passSmtpUtf8(connection: SMTPConnection, wanted: () => boolean): void {
  const target = connection as unknown as { _sendCommand: (command: string, logged?: string) => void };
  const send = target._sendCommand.bind(connection);
  target._sendCommand = (command, logged) => send(wanted() && /^MAIL FROM:/i.test(command) && !/ SMTPUTF8\b/i.test(command) ? `${command} SMTPUTF8` : command, logged);
}

export async function connect(target: Target, options: ClientOptions): Promise<OutboundConnection> {
  const socket = writesTogether(await openSocket(target, options.connectTimeout, options.clock, options.signal));
  let usable = true;
  /** Settles the call in progress when the connection ends or its deadline passes. */
  let interrupt: ((reply: string) => void) | undefined;
  let smtpUtf8 = false;
  const end = (reply: string) => {
    usable = false;
    socket.destroy();
    interrupt?.(reply);
  };
  const deadline = createDeadline(options.clock, (ms) => end(`451 4.4.2 No reply from ${target.name} within ${ms / 1000} s (timeout)`));
  const connection = new SMTPConnection({
    connection: socket,
    host: target.host,
    port: target.port,
    name: options.name,
    lmtp: options.protocol === 'lmtp',
    ignoreTLS: options.tls === 'none',
    opportunisticTLS: options.tls === 'opportunistic',
    requireTLS: options.tls === 'required',
    tls: { rejectUnauthorized: false, servername: target.name },
    connectionTimeout: options.connectTimeout * BACKSTOP_FACTOR,
    greetingTimeout: options.connectTimeout * BACKSTOP_FACTOR,
    socketTimeout: Math.max(options.commandTimeout, options.dataTimeout) * BACKSTOP_FACTOR,
    // every reply line of the next hop shows it is alive: its silence is what the deadline measures
    transactionLog: true,
    logger: {
      debug: (entry: { tnx?: string }) => {
        if (entry.tnx === 'server') deadline.extend();
      },
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
      trace: () => undefined,
      fatal: () => undefined,
    } as never,
  });
  passSmtpUtf8(connection, () => smtpUtf8);
  connection.on('error', (error: SmtpError) => end(error.response?.trim() || `${LOST}: ${error.message}`));
  connection.on('end', () => end(`${LOST}: connection closed`));
  const abort = () => end(SHUTTING_DOWN);
  options.signal?.addEventListener('abort', abort, { once: true });
  socket.once('close', () => options.signal?.removeEventListener('abort', abort));

  await new Promise<void>((resolve, reject) => {
    const fallback = `451 4.4.1 Cannot connect to ${target.name} [${target.host}]:${target.port}`;
    interrupt = (reply) => reject(new ConnectFailure(reply.startsWith(LOST) ? `${fallback}${reply.slice(LOST.length)}` : reply));
    deadline.arm(options.connectTimeout, false);
    connection.connect((error?: Error | null) => {
      if (error) return end(replyOf(error as SmtpError, fallback).text);
      deadline.cancel();
      interrupt = undefined;
      resolve();
    });
  }).catch((error: unknown) => {
    deadline.cancel();
    connection.close();
    throw error;
  });

  const extensions = extensionsOf(String(connection.lastServerResponse || ''));

  /** Runs one exchange under the deadline; `start` gets the settle function and must call it exactly once. */
  const exchange = <T>(lost: (reply: string) => T, start: (settle: (value: T) => void) => void): Promise<T> =>
    new Promise((resolve) => {
      let settled = false;
      const settle = (value: T) => {
        if (settled) return;
        settled = true;
        deadline.cancel();
        interrupt = undefined;
        resolve(value);
      };
      if (!usable) return settle(lost(LOST));
      interrupt = (reply) => settle(lost(reply));
      deadline.arm(options.commandTimeout, true);
      start(settle);
    });

  const everyone = (to: string[], reply: string) => new Map(to.map((address) => [address, { code: Number(reply.slice(0, 3)) || 451, text: reply }]));

  const reset = () => exchange((_reply) => false, (settle) => connection.reset((error?: Error | null) => settle(!error)));

  return {
    target,
    extensions,
    get usable() {
      return usable;
    },
    async send(transaction) {
      smtpUtf8 = transaction.smtpUtf8;
      // the body moving is progress too; once it is all sent, the final reply may take dataTimeout
      const body = Readable.from(
        (async function* () {
          for await (const chunk of transaction.body) {
            deadline.extend();
            yield chunk;
          }
          deadline.arm(options.dataTimeout, true);
        })(),
      );
      const result = await exchange(
        (reply) => ({ replies: everyone(transaction.to, reply), refused: false }),
        (settle) => {
          const envelope = { from: transaction.from, to: transaction.to, size: transaction.size, use8BitMime: transaction.eightBit, dsn: transaction.dsn };
          connection.send(envelope as never, body, (error: Error | null, info: unknown) => {
            const replies = new Map<string, Reply>();
            const outcome = (error ?? info) as SmtpError & { response?: string };
            for (const rejected of outcome.rejectedErrors ?? []) {
              if (rejected.recipient) replies.set(rejected.recipient, replyOf(rejected, 'refused'));
            }
            const rest = error ? replyOf(error as SmtpError, '451 4.4.2 Delivery failed') : { code: 250, text: String(outcome.response ?? '250') };
            for (const address of transaction.to) if (!replies.has(address)) replies.set(address, rest);
            const smtpError = error as SmtpError | null;
            if (smtpError && (CONNECTION_ERRORS.has(smtpError.code ?? '') || smtpError.responseCode === 421)) usable = false;
            settle({ replies, refused: error !== null && usable });
          });
        },
      );
      smtpUtf8 = false;
      body.destroy();
      // the server refused this message; the session goes on after RSET (and ends if RSET fails)
      if (result.refused && !(await reset())) end(LOST);
      return result.replies;
    },
    close() {
      deadline.cancel();
      if (!usable) return connection.close();
      usable = false;
      connection.quit();
      // a next hop that does not answer QUIT does not keep the socket (I/O pacing, not a domain timer: wall time)
      setTimeout(() => socket.destroy(), 1000).unref();
    },
  };
}
