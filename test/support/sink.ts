// A real SMTP/LMTP sink on loopback for delivery tests, built on smtp-server:
// it records every message (envelope, DSN parameters, bytes, TLS) and answers
// each recipient as the test says. It can be stopped and started again on the
// same port to play a next hop that is down and comes back (a port that nothing
// else can take meanwhile: see ports.ts).
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';
import { installReplyOverrides } from '../../src/intake/replies.js';
import { listenAgain, listenOnStablePort } from './ports.js';

export interface SunkMessage {
  from: string;
  to: string[];
  body: Buffer;
  secure: boolean;
  connection: string;
  /** MAIL FROM parameters as received, upper-case names (`SMTPUTF8`, `BODY`...). */
  mailParams: Record<string, string | true>;
  /** NOTIFY/ORCPT per recipient, RET/ENVID for the message, as received. */
  dsn: { ret?: string | null; envid?: string | null; recipients: Array<{ notify?: string[]; orcpt?: string }> };
}

export interface SinkOptions {
  host?: string;
  port?: number;
  lmtp?: boolean;
  tls?: { cert: string; key: string };
  /** Reply to RCPT TO for this address, e.g. "450 4.2.1 Try later"; undefined accepts. */
  rcptReply?: (address: string) => string | undefined;
  /** Never answer RCPT TO for this address: the attempt hangs until the client goes away. */
  holdRcpt?: (address: string) => boolean;
  /** LMTP: reply after DATA for this recipient; undefined accepts. */
  lmtpReply?: (address: string) => string | undefined;
  /** Milliseconds to wait before answering DATA. */
  dataDelayMs?: number;
  /** Do not offer DSN (RFC 3461), like many servers. */
  hideDsn?: boolean;
  /** Do not offer SMTPUTF8 (RFC 6531), like Dovecot 2.3's LMTP. */
  hideSmtpUtf8?: boolean;
  /** Do not offer 8BITMIME (RFC 6152). */
  hide8BitMime?: boolean;
  /** Called at each new connection; a reply here (e.g. "421 4.3.2 Busy") refuses it at the greeting. */
  onConnection?: () => string | undefined;
}

export interface Sink {
  port: number;
  messages: SunkMessage[];
  connections: number;
  /** RCPT commands held unanswered so far (holdRcpt). */
  held: number;
  /** Resolves once `count` messages have arrived. */
  waitFor(count: number, timeoutMs?: number): Promise<SunkMessage[]>;
  stop(): Promise<void>;
  /** Starts again on the same address and port. */
  restart(): Promise<void>;
}

function refusal(reply: string): Error & { responseCode: number } {
  return Object.assign(new Error(reply.slice(4)), { responseCode: Number(reply.slice(0, 3)) });
}

export async function startSink(t: Pick<TestContext, 'after'>, options: SinkOptions = {}): Promise<Sink> {
  const host = options.host ?? '127.0.0.1';
  const messages: SunkMessage[] = [];
  let server: SMTPServer | undefined;
  let port = options.port ?? 0;
  let connections = 0;
  let held = 0;

  const create = () =>
    new SMTPServer({
      lmtp: options.lmtp ?? false,
      secure: false,
      hideSTARTTLS: !options.tls,
      ...(options.tls ? { cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) } : {}),
      hideDSN: options.hideDsn ?? false,
      hideSMTPUTF8: options.hideSmtpUtf8 ?? false,
      hide8BITMIME: options.hide8BitMime ?? false,
      hideENHANCEDSTATUSCODES: false,
      // without a certificate of its own, no STARTTLS at all (smtp-server would use a built-in one)
      disabledCommands: options.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      logger: false,
      onConnect(_session, callback) {
        connections++;
        const refused = options.onConnection?.();
        callback(refused ? refusal(refused) : undefined);
      },
      onRcptTo(address: SMTPServerAddress, _session, callback) {
        if (options.holdRcpt?.(address.address)) {
          held++;
          return;
        }
        const reply = options.rcptReply?.(address.address);
        callback(reply ? refusal(reply) : undefined);
      },
      onData(stream, session, callback) {
        const parts: Buffer[] = [];
        stream.on('data', (part: Buffer) => parts.push(part));
        stream.on('end', () => {
          const envelope = session.envelope;
          const rcpts = envelope.rcptTo as Array<SMTPServerAddress & { dsn?: { notify?: string[]; orcpt?: string } }>;
          messages.push({
            from: envelope.mailFrom ? envelope.mailFrom.address : '',
            mailParams: Object.fromEntries(Object.entries((envelope.mailFrom as unknown as { args?: Record<string, string | true> }).args ?? {}).map(([k, v]) => [k.toUpperCase(), v])),
            to: rcpts.map((r) => r.address),
            body: Buffer.concat(parts),
            secure: Boolean(session.secure),
            connection: session.id,
            dsn: { ret: envelope.dsn?.ret, envid: envelope.dsn?.envid, recipients: rcpts.map((r) => ({ ...(r.dsn?.notify ? { notify: r.dsn.notify } : {}), ...(r.dsn?.orcpt ? { orcpt: r.dsn.orcpt } : {}) })) },
          });
          const answer = () => {
            if (!options.lmtp) return callback(null, 'Ok: sunk');
            callback(null, rcpts.map((r) => {
              const reply = options.lmtpReply?.(r.address);
              return reply ? refusal(reply) : 'Ok: sunk';
            }) as never);
          };
          if (options.dataDelayMs) setTimeout(answer, options.dataDelayMs);
          else answer();
        });
      },
    });

  async function listen(): Promise<void> {
    const next = create();
    // replies such as "550 5.1.1 No such user" go out as written, with their own enhanced code, as Sluice's do
    installReplyOverrides(next);
    // smtp-server re-emits its socket's errors; listen errors are handled below, a client's reset is not a failure
    next.on('error', () => {});
    if (options.port === undefined && port === 0) port = await listenOnStablePort(next.server, host);
    else await listenAgain(next.server, port, host);
    server = next;
    port = (next.server.address() as AddressInfo).port;
  }

  async function stop(): Promise<void> {
    const current = server;
    server = undefined;
    if (!current) return;
    for (const connection of current.connections) connection.close();
    await new Promise<void>((resolve) => current.close(() => resolve()));
  }

  await listen();
  t.after(stop);
  return {
    get port() {
      return port;
    },
    messages,
    get connections() {
      return connections;
    },
    get held() {
      return held;
    },
    async waitFor(count, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (messages.length < count) {
        if (Date.now() > deadline) throw new Error(`sink got ${messages.length} of ${count} messages`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return messages;
    },
    stop,
    restart: listen,
  };
}

/** A port on 127.0.0.1 where nothing listens (connection refused). */
export async function deadPort(): Promise<number> {
  const probe = createServer();
  const port = await listenOnStablePort(probe, '127.0.0.1');
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}
