// SMTP session events for the log (docs/logging.md): connect and disconnect,
// every refusal a session gets (whoever wrote it: Sluice's table of replies in
// intake/replies.ts or smtp-server's own, such as 503 bad sequence or the
// idle timeout), and AUTH failures, each with the client's name and address.
// It wraps the server's handlers and each connection's send(), so the intake
// code stays as it is; what it sees goes out through MessageEvents.
import type { SMTPServer, SMTPServerAuthentication, SMTPServerSession } from 'smtp-server';
import type { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import { patchEachConnection } from '../intake/connection-hook.js';
import { REPLIES, type ReplyName } from '../intake/replies.js';
import type { MessageEvents, SessionEvent } from './events.js';

/** Sluice's refusals by the text they are sent with, to name the reason. */
const REASONS = new Map<string, ReplyName>(Object.entries(REPLIES).map(([name, [, enhanced, text]]) => [`${enhanced} ${text}`, name as ReplyName]));
/** Commands whose names are logged; anything else (an AUTH exchange's base64, garbage) is not. */
const VERBS = new Set(['HELO', 'EHLO', 'LHLO', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'QUIT', 'VRFY', 'EXPN', 'HELP', 'STARTTLS', 'AUTH', 'XCLIENT', 'XFORWARD']);
/** An address in angle brackets after MAIL FROM: / RCPT TO:, as the client gave it. */
const ADDRESS = /^(?:MAIL\s+FROM|RCPT\s+TO)\s*:\s*<([^>]{0,320})>/i;

/** What a connection remembers for the log. */
interface Tally {
  /** The command being answered and the address it named (MAIL, RCPT). */
  command?: string;
  address?: string;
  from?: string;
  /** Commands by name, in the order first seen, as Postfix's disconnect line counts them. */
  counts: Map<string, number>;
  started: number;
}

const tallies = new WeakMap<SMTPServerSession, Tally>();

const printable = (text: string) => text.replace(/[^\x20-\x7e]/g, '?');

function describe(session: SMTPServerSession, listener: string): Pick<SessionEvent, 'listener' | 'session' | 'client' | 'clientName'> {
  const name = session.clientHostname && !session.clientHostname.startsWith('[') ? session.clientHostname : 'unknown';
  return { listener, session: session.id, client: session.remoteAddress, clientName: name };
}

export function logSessions(server: SMTPServer, deps: { events: MessageEvents; listener: () => string; now?: () => number }): void {
  const now = deps.now ?? Date.now;
  const emit = (event: SessionEvent['event'], session: SMTPServerSession, details: Record<string, unknown> = {}) =>
    deps.events.session({ event, ...describe(session, deps.listener()), ...details });

  const onConnect = server.onConnect.bind(server);
  server.onConnect = (session, callback) => {
    tallies.set(session, { counts: new Map(), started: now() });
    emit('connect', session);
    onConnect(session, callback);
  };

  const onClose = server.onClose.bind(server);
  server.onClose = (session, callback) => {
    const tally = tallies.get(session);
    if (tally) {
      const counts = [...tally.counts].map(([verb, n]) => `${verb.toLowerCase()}=${n}`);
      const total = [...tally.counts.values()].reduce((a, b) => a + b, 0);
      emit('disconnect', session, { commands: [...counts, `commands=${total}`].join(' '), duration: Math.round((now() - tally.started) / 10) / 100 });
    }
    onClose(session, callback);
  };

  /** The user name of the AUTH attempt being answered, by session. */
  const authUsers = new WeakMap<SMTPServerSession, { method: string; user: string }>();
  const onAuth = server.onAuth.bind(server);
  server.onAuth = (auth: SMTPServerAuthentication, session, callback) => {
    authUsers.set(session, { method: auth.method, user: printable(String(auth.username ?? '')).slice(0, 256) });
    onAuth(auth, session, callback);
  };

  patchEachConnection(server, (smtpConnection) => {
    const connection = smtpConnection as unknown as {
      session: SMTPServerSession;
      send: SMTPConnection['send'];
      _onCommand(command: Buffer, callback: () => void): void;
      _getEnhancedStatusCode?(code: number, context: unknown): string;
    };
    const onCommand = connection._onCommand.bind(connection);
    connection._onCommand = (command, callback) => {
      const tally = tallies.get(connection.session);
      const line = (command ?? '').toString('latin1');
      const verb = line.split(' ', 1)[0]!.toUpperCase();
      if (tally && VERBS.has(verb)) {
        tally.command = verb;
        tally.counts.set(verb, (tally.counts.get(verb) ?? 0) + 1);
        const address = ADDRESS.exec(line)?.[1];
        tally.address = address === undefined ? undefined : printable(address);
        if (verb === 'MAIL') tally.from = tally.address;
        if (verb === 'RSET' || verb === 'EHLO' || verb === 'HELO') tally.from = undefined;
      }
      onCommand(command, callback);
    };
    const send = connection.send.bind(connection);
    connection.send = (code, data, context) => {
      if (code >= 400) {
        // the reply as it goes out: smtp-server adds the enhanced code of its own replies in send()
        const text = Array.isArray(data) ? data.join(' ') : String(data ?? '');
        const enhanced = context === false || /^[245]\.\d/.test(text) ? '' : (connection._getEnhancedStatusCode?.(code, context) ?? '');
        refused(connection.session, code, enhanced ? `${enhanced} ${text}` : text);
      }
      else if (code === 250) {
        // a transaction ended: the next refusal is not about its sender
        const tally = tallies.get(connection.session);
        if (tally?.command === 'DATA' || tally?.command === 'BDAT') tally.from = undefined;
      }
      return send(code, data, context);
    };
  });

  function refused(session: SMTPServerSession, code: number, data: string): void {
    const text = printable(data);
    const reply = `${code} ${text}`;
    const tally = tallies.get(session);
    if (code === 535) {
      const attempt = authUsers.get(session);
      authUsers.delete(session);
      emit('auth failed', session, { method: attempt?.method ?? 'AUTH', user: attempt?.user ?? '', reply });
      return;
    }
    const command = tally?.command;
    const reason = REASONS.get(text.replace(/ \(.*\)$/, ''));
    emit('reject', session, {
      command: command ?? 'CONNECT',
      reply,
      ...(reason ? { reason } : {}),
      ...(tally?.from !== undefined && command !== 'MAIL' ? { from: tally.from } : command === 'MAIL' && tally?.address !== undefined ? { from: tally.address } : {}),
      ...(command === 'RCPT' && tally?.address !== undefined ? { to: tally.address } : {}),
    });
  }
}
