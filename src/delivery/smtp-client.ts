// The outbound SMTP/LMTP connection (DL-1, DL-2) over nodemailer's
// smtp-connection: STARTTLS per policy, PIPELINING when offered, several
// recipients per transaction, connection reuse. It reports one reply per
// recipient and whether the connection can carry another message.
import type { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { RouteConfig } from '../config/schema.js';
import type { Target } from '../categorizer/mx.js';

export interface ClientOptions {
  /** Our name in EHLO/LHLO. */
  name: string;
  protocol: RouteConfig['protocol'];
  tls: RouteConfig['tls'];
  connectTimeout: number;
  commandTimeout: number;
}

export interface Transaction {
  from: string;
  to: string[];
  /** RFC 3461 parameters to pass on: the same for every recipient of this transaction. */
  dsn: { ret?: string; envid?: string; notify?: string[]; orcpt?: string };
  size: number;
  eightBit: boolean;
  body: Readable;
}

export interface Reply {
  code: number;
  text: string;
}

export interface OutboundConnection {
  readonly target: Target;
  /** One reply per recipient address. */
  send(transaction: Transaction): Promise<Map<string, Reply>>;
  /** False once the connection was lost or the server said 421. */
  readonly usable: boolean;
  /** The server takes NOTIFY/ORCPT (RFC 3461), so it reports success itself. */
  readonly supportsDsn: boolean;
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

export async function connect(target: Target, options: ClientOptions): Promise<OutboundConnection> {
  const connection = new SMTPConnection({
    host: target.host,
    port: target.port,
    name: options.name,
    lmtp: options.protocol === 'lmtp',
    ignoreTLS: options.tls === 'none',
    opportunisticTLS: options.tls === 'opportunistic',
    requireTLS: options.tls === 'required',
    tls: { rejectUnauthorized: false, servername: target.name },
    connectionTimeout: options.connectTimeout,
    greetingTimeout: options.connectTimeout,
    socketTimeout: options.commandTimeout,
  });
  let usable = true;
  await new Promise<void>((resolve, reject) => {
    // nodemailer reports a failed connect as an 'error' (or 'end') event, not through the callback
    const fail = (error?: Error) => {
      connection.close();
      const fallback = `451 4.4.1 Cannot connect to ${target.name} [${target.host}]:${target.port}`;
      reject(new ConnectFailure(error ? replyOf(error as SmtpError, fallback).text : `${fallback}: connection closed`));
    };
    connection.once('error', fail);
    // an 'end' may come just before the 'error' that says why: let the error win
    connection.once('end', () => setImmediate(fail));
    connection.connect(() => {
      connection.removeAllListeners('error');
      connection.removeAllListeners('end');
      connection.on('error', () => (usable = false));
      connection.on('end', () => (usable = false));
      resolve();
    });
  });

  return {
    target,
    get usable() {
      return usable;
    },
    supportsDsn: (connection as unknown as { _supportedExtensions: string[] })._supportedExtensions.includes('DSN'),
    send(transaction) {
      return new Promise((resolve) => {
        const envelope = {
          from: transaction.from,
          to: transaction.to,
          size: transaction.size,
          use8BitMime: transaction.eightBit,
          dsn: transaction.dsn,
        };
        connection.send(envelope as never, transaction.body, (error: Error | null, info: unknown) => {
          const replies = new Map<string, Reply>();
          const result = (error ?? info) as SmtpError & { accepted?: string[]; response?: string };
          for (const rejected of result.rejectedErrors ?? []) {
            if (rejected.recipient) replies.set(rejected.recipient, replyOf(rejected, 'refused'));
          }
          const rest = error ? replyOf(error as SmtpError, '451 4.4.2 Delivery failed') : { code: 250, text: String(result.response ?? '250') };
          for (const address of transaction.to) if (!replies.has(address)) replies.set(address, rest);
          const code = (error as SmtpError | null)?.code;
          if (error && (CONNECTION_ERRORS.has(code ?? '') || (error as SmtpError).responseCode === 421)) usable = false;
          if (error && usable) {
            // the server refused this message; the session goes on after RSET
            connection.reset((resetError?: Error | null) => {
              if (resetError) usable = false;
              resolve(replies);
            });
            return;
          }
          resolve(replies);
        });
      });
    },
    close() {
      usable = false;
      connection.quit();
      setTimeout(() => connection.close(), 1000).unref();
    },
  };
}
