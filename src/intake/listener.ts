// One named SMTP listener (IN-1..IN-5): the gatekeeping of a session (connection
// limits, timeouts, AUTH, relay policy) and the hand-over of each message to the
// queue store. The `250` after DATA is sent only once the store has fsync'd it.
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createSecureContext } from 'node:tls';
import type { Readable } from 'node:stream';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';
import type { Clock, TimerHandle } from '../clock.js';
import { postmasterAddress, type Config, type ListenerConfig } from '../config/schema.js';
import { aboutMessage, type MessageEvents } from '../observability/events.js';
import { logSessions } from '../observability/session-log.js';
import type { Logger } from '../observability/logger.js';
import { decodeHeaderText } from '../mail/header-text.js';
import type { NewRecipient, NotifyFlag, QueueStore } from '../store/types.js';
import { createAuthenticator } from './auth.js';
import type { BackPressure } from './back-pressure.js';
import { BodyInspector } from './body-inspector.js';
import { receivedHeader, withProtocol } from './received-header.js';
import { createRelayPolicy } from './relay-policy.js';
import { answerLongCommandLines, refuseStartTls } from './protocol-fixes.js';
import { SmtpRefusal, installReplyOverrides, refusal } from './replies.js';

/** How long sessions in the middle of a transaction may go on after a stop. */
const SHUTDOWN_GRACE_MS = 10_000;
/** Longest command line; RFC 5321 allows 512 octets plus room for extension parameters. */
const MAX_COMMAND_LENGTH = 4096;

export interface ListenerDeps {
  listener: ListenerConfig;
  config: Pick<Config, 'hostname' | 'acceptedDomains' | 'relay' | 'auth' | 'dsn'>;
  store: QueueStore;
  clock: Clock;
  logger: Logger;
  /** Called after each message is durable in Submission. */
  onAccepted: () => void;
  backPressure: BackPressure;
  events: MessageEvents;
  /** Starts suspended (IN-7: a suspension survives a restart). */
  suspended: boolean;
}

export interface RunningListener {
  readonly name: string;
  readonly address: AddressInfo;
  /** The settings it runs with now. */
  readonly settings: ListenerConfig;
  /** IN-7: while suspended, new connections get 421 4.3.2 and are closed; sessions in progress go on. */
  suspended: boolean;
  /**
   * RT-3: takes changed limits and policies for new commands and connections, without dropping a session. False
   * when the change needs a new listener (see needsNewListener).
   */
  update(listener: ListenerConfig, config: ListenerDeps['config']): boolean;
  /** True when the certificate or key file now holds something else than what new TLS sessions get. */
  certificateChanged(): Promise<boolean>;
  /** Reads the certificate and key files again; new TLS sessions get them, sessions in progress keep theirs. */
  renewCertificate(): Promise<void>;
  /** Stops taking connections; sessions in progress go on to their natural end (a reload that replaces it). */
  retire(): void;
  /** Stops accepting; sessions in progress may finish their current message. */
  close(): Promise<void>;
}

/** RT-3: changes a running listener cannot take in place: its address, its TLS, or whether AUTH is offered. */
export function needsNewListener(before: ListenerConfig, after: ListenerConfig, usersBefore: number, usersAfter: number): boolean {
  return (
    before.listen.text !== after.listen.text ||
    JSON.stringify(before.tls) !== JSON.stringify(after.tls) ||
    before.allowInsecureAuth !== after.allowInsecureAuth ||
    usersBefore > 0 !== usersAfter > 0
  );
}

/** What Sluice tracks of a session beyond smtp-server's own state. */
interface SessionState {
  clientIp: string;
  sessionTimer: TimerHandle;
}

export async function startListener(deps: ListenerDeps): Promise<RunningListener> {
  const { store, clock } = deps;
  let { listener, config } = deps;
  const logger = deps.logger.child({ module: 'intake', listener: listener.name });
  let relayPolicy = createRelayPolicy(config.acceptedDomains, config.relay.allowFrom);
  let authenticate = createAuthenticator(config.auth.users);
  let tls = await readCertificate(listener);
  const authOffered = config.auth.users.length > 0 && (tls !== undefined || listener.allowInsecureAuth);
  const sessions = new Map<string, SessionState>();
  const perIp = new Map<string, number>();
  let suspended = deps.suspended;

  const server: SMTPServer = new SMTPServer({
    name: config.hostname,
    banner: 'Sluice',
    size: listener.maxMessageSize,
    rejectOversized: true,
    maxRecipients: listener.maxRecipients,
    maxCommandLength: MAX_COMMAND_LENGTH,
    socketTimeout: listener.idleTimeout,
    closeTimeout: SHUTDOWN_GRACE_MS,
    hideENHANCEDSTATUSCODES: false,
    hideDSN: false,
    hideREQUIRETLS: true,
    hideSTARTTLS: tls === undefined,
    ...(tls ?? {}),
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: true,
    allowInsecureAuth: listener.allowInsecureAuth,
    disabledCommands: authOffered ? [] : ['AUTH'],
    logger: false,

    onConnect(session, callback) {
      const clientIp = session.remoteAddress;
      if (suspended) return callback(refusal('listenerSuspended'));
      if (sessions.size >= listener.maxConnections) return callback(refusal('tooManyConnections'));
      if ((perIp.get(clientIp) ?? 0) >= listener.maxConnectionsPerIp) return callback(refusal('tooManyConnectionsFromIp'));
      perIp.set(clientIp, (perIp.get(clientIp) ?? 0) + 1);
      sessions.set(session.id, { clientIp, sessionTimer: clock.setTimer(listener.sessionTimeout, () => endSession(session.id)) });
      // AUTH is never offered in the clear unless the listener allows it (IN-1)
      if (authOffered && !listener.allowInsecureAuth && !session.secure) session.disabledCommands = ['AUTH'];
      callback();
    },

    onSecure(_socket, session, callback) {
      if (authOffered) session.disabledCommands = [];
      callback();
    },

    onAuth(auth, _session, callback) {
      if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') return callback(refusal('authFailed'));
      if (!authenticate(auth.username ?? '', auth.password ?? '')) return callback(refusal('authFailed'));
      callback(null, { user: auth.username });
    },

    onMailFrom(_address, _session, callback) {
      refuseWhenFull(callback);
    },

    onRcptTo(address, session, callback) {
      // RFC 5321 §4.5.1: <postmaster> without a domain is always accepted, and goes to our postmaster
      if (address.address.toLowerCase() === 'postmaster') {
        address.address = postmasterAddress(config);
        return refuseWhenFull(callback);
      }
      const at = address.address.lastIndexOf('@');
      if (at <= 0 || at === address.address.length - 1) return callback(refusal('recipientSyntax'));
      const denied = relayPolicy.check(address.address.slice(at + 1), session.remoteAddress, Boolean(session.user));
      if (denied) return callback(refusal(denied));
      refuseWhenFull(callback);
    },

    onData(stream, session, callback) {
      receiveMessage(stream, session).then(
        (queueId) => callback(null, `Ok: queued as ${queueId}`),
        (error: unknown) => {
          if (clientWentAway(error)) {
            const bytes = (stream as { byteLength?: number }).byteLength ?? 0;
            logger.info({ client: session.remoteAddress, session: session.id, bytes }, 'client disconnected during DATA; nothing stored');
          } else if (!(error instanceof SmtpRefusal)) logger.error({ err: error, session: session.id }, 'message not accepted');
          callback(error instanceof SmtpRefusal ? error : refusal('storeUnavailable'));
        },
      );
    },

    onClose(session) {
      const state = sessions.get(session.id);
      if (!state) return;
      sessions.delete(session.id);
      state.sessionTimer.cancel();
      const left = (perIp.get(state.clientIp) ?? 1) - 1;
      if (left > 0) perIp.set(state.clientIp, left);
      else perIp.delete(state.clientIp);
    },
  });
  installReplyOverrides(server);
  logSessions(server, { events: deps.events, listener: () => listener.name });
  answerLongCommandLines(server, MAX_COMMAND_LENGTH);
  if (!tls) refuseStartTls(server);

  /** IN-6: past the storage limits, 452 4.3.1 at MAIL and RCPT. */
  function refuseWhenFull(callback: (error?: Error | null) => void): void {
    deps.backPressure.refusing().then(
      (full) => callback(full ? refusal('insufficientStorage') : undefined),
      (error: unknown) => {
        logger.error({ err: error }, 'storage check failed');
        callback(refusal('storeUnavailable'));
      },
    );
  }

  function endSession(sessionId: string): void {
    for (const connection of server.connections) {
      if (connection.id !== sessionId) continue;
      const reply = refusal('sessionTimeout');
      connection.send(reply.responseCode, reply.message);
      connection.close();
    }
  }

  async function receiveMessage(stream: Readable & { sizeExceeded?: boolean }, session: SMTPServerSession): Promise<string> {
    const writer = store.receive();
    const inspector = new BodyInspector(listener.maxLineLength);
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        inspector.inspect(chunk);
        // keep reading what the client sends, but stop storing a message already refused
        if (!stream.sizeExceeded && !inspector.problem) await writer.write(chunk);
      }
      if (stream.sizeExceeded) throw refusal('messageTooBig');
      if (inspector.problem) throw refusal(inspector.problem);
      const envelope = session.envelope;
      const mailFrom = envelope.mailFrom ? envelope.mailFrom.address : '';
      const recipients = envelope.rcptTo.map(toRecipient);
      const receivedAt = clock.now();
      const stored = await writer.commit({
        mailFrom,
        recipients,
        receivedAt,
        bodyType: envelope.bodyType === '8bitmime' ? '8BITMIME' : envelope.bodyType === '7bit' ? '7BIT' : undefined,
        smtpUtf8: Boolean(envelope.smtpUtf8),
        dsnRet: envelope.dsn?.ret === 'FULL' || envelope.dsn?.ret === 'HDRS' ? envelope.dsn.ret : undefined,
        dsnEnvid: envelope.dsn?.envid ?? undefined,
        sourceIp: session.remoteAddress,
        sourceName: listener.name,
        heloName: session.hostNameAppearsAs,
        authUser: typeof session.user === 'string' ? session.user : undefined,
        internetMessageId: inspector.headerField('message-id'),
        subject: decodeHeaderText(inspector.headerField('subject')),
        traceHeader: receivedHeader({
          heloName: session.hostNameAppearsAs,
          clientHostname: session.clientHostname,
          clientIp: session.remoteAddress,
          serverName: config.hostname,
          protocol: withProtocol({ utf8: Boolean(envelope.smtpUtf8), tls: Boolean(session.secure), authenticated: Boolean(session.user) }),
          queueId: writer.id,
          recipients: recipients.map((r) => r.address),
          date: receivedAt,
        }),
      });
      deps.events.record({
        event: 'received',
        ...aboutMessage(stored),
        recipients: recipients.map((r) => r.address),
        size: stored.size,
        source: listener.name,
        client: session.remoteAddress,
        clientName: session.clientHostname && !session.clientHostname.startsWith('[') ? session.clientHostname : 'unknown',
        ...(session.secure ? { tls: session.tlsOptions ? session.tlsOptions.version : 'TLS' } : {}),
        ...(typeof session.user === 'string' ? { authUser: session.user } : {}),
      });
      deps.onAccepted();
      return stored.id;
    } catch (error) {
      await writer.abort().catch((abortError: unknown) => logger.warn({ err: abortError, queueId: writer.id }, 'abort failed; swept at next start'));
      throw error;
    }
  }

  server.on('error', (error: NodeJS.ErrnoException & { remoteAddress?: string }) => {
    const client = error.remoteAddress;
    // a client's reset or timeout is its own business; what it interrupted is logged where it mattered
    if (clientWentAway(error)) logger.debug({ client, code: error.code }, 'client connection error');
    // a client that cannot speak TLS (or sends garbage after STARTTLS): one line, no stack
    else if (isTlsFailure(error)) logger.info({ client, reason: error.message }, 'TLS handshake failed');
    else logger.warn({ err: error }, 'smtp session error');
  });
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(listener.listen.port, listener.listen.host, () => {
      server.server.off('error', reject);
      resolve();
    });
  });
  const address = server.server.address() as AddressInfo;
  logger.info({ address: address.address, port: address.port, tls: tls !== undefined }, 'listener started');

  return {
    name: listener.name,
    address,
    get suspended() {
      return suspended;
    },
    set suspended(value: boolean) {
      suspended = value;
    },
    get settings() {
      return listener;
    },
    update(next, nextConfig) {
      if (needsNewListener(listener, next, config.auth.users.length, nextConfig.auth.users.length)) return false;
      listener = next;
      config = nextConfig;
      relayPolicy = createRelayPolicy(config.acceptedDomains, config.relay.allowFrom);
      authenticate = createAuthenticator(config.auth.users);
      // smtp-server reads these from its options at each command and connection
      Object.assign(server.options, { size: next.maxMessageSize, maxRecipients: next.maxRecipients, socketTimeout: next.idleTimeout });
      return true;
    },
    async certificateChanged() {
      const now = await readCertificate(listener).catch(() => undefined);
      return tls !== undefined && now !== undefined && !(now.cert.equals(tls.cert) && now.key.equals(tls.key));
    },
    async renewCertificate() {
      const now = await readCertificate(listener);
      if (!now) return;
      // refuses a key that does not match the certificate, before anything changes
      createSecureContext(now);
      server.updateSecureContext(now);
      tls = now;
      logger.info({ cert: listener.tls?.cert }, 'certificate reloaded');
    },
    retire() {
      server.server.close();
    },
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // sessions between transactions go now; the others get the grace period
      for (const connection of server.connections) {
        if (connection.session.envelope.mailFrom) continue;
        const reply = refusal('shuttingDown');
        connection.send(reply.responseCode, reply.message);
        connection.close();
      }
      return closed;
    },
  };
}

async function readCertificate(listener: ListenerConfig): Promise<{ cert: Buffer; key: Buffer } | undefined> {
  return listener.tls ? { cert: await readFile(listener.tls.cert), key: await readFile(listener.tls.key) } : undefined;
}

const CLIENT_GONE = new Set(['ECONNECTION', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

function clientWentAway(error: unknown): boolean {
  return CLIENT_GONE.has((error as NodeJS.ErrnoException | undefined)?.code ?? '');
}

function isTlsFailure(error: NodeJS.ErrnoException): boolean {
  return error.code === 'TLSError' || error.code?.startsWith('ERR_SSL_') === true || /SSL routines/.test(error.message);
}

function toRecipient(address: SMTPServerAddress): NewRecipient {
  const dsn = (address as SMTPServerAddress & { dsn?: { notify?: string[]; orcpt?: string } }).dsn;
  return {
    address: address.address,
    ...(dsn?.orcpt ? { orcpt: dsn.orcpt } : {}),
    ...(dsn?.notify ? { notify: dsn.notify as NotifyFlag[] } : {}),
  };
}
