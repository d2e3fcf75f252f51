// Store operations that write a message: body chunks while it arrives, then the
// envelope at commit, or nothing at all if it is aborted. Run inside the
// worker's batch transaction; the worker decides when to fsync.
import type { Database } from 'better-sqlite3';
import { prepareClearDelayNotices } from './deadlines.js';
import type { Handlers } from './protocol.js';

export function prepareEnqueue(db: Database): Handlers<'chunk' | 'commit' | 'abort'> {
  const insertChunk = db.prepare('INSERT INTO body_chunks (message_id, seq, data) VALUES (?, ?, ?)');
  const markReceiving = db.prepare('INSERT OR IGNORE INTO receiving (message_id) VALUES (?)');
  const doneReceiving = db.prepare('DELETE FROM receiving WHERE message_id = ?');
  const deleteChunks = db.prepare('DELETE FROM body_chunks WHERE message_id = ?');
  const insertMessage = db.prepare(`
    INSERT INTO messages (id, queue, status, received_at, mail_from, size, body_type, smtp_utf8, dsn_ret, dsn_envid,
      source_ip, source_name, helo_name, auth_user, internet_message_id, subject, trace_header)
    VALUES (@id, @queue, 'Ready', @receivedAt, @mailFrom, @size, @bodyType, @smtpUtf8, @dsnRet, @dsnEnvid,
      @sourceIp, @sourceName, @heloName, @authUser, @internetMessageId, @subject, @traceHeader)`);
  const clearDelayNotices = prepareClearDelayNotices(db);
  const insertRecipient = db.prepare(
    "INSERT INTO recipients (message_seq, position, address, orcpt, notify, status) VALUES (?, ?, ?, ?, ?, 'Ready')",
  );

  const chunk = (id: string, seq: number, data: Uint8Array) => {
    if (seq === 0) markReceiving.run(id);
    insertChunk.run(id, seq, data);
  };

  return {
    chunk(request) {
      chunk(request.id, request.seq, request.data);
      return null;
    },
    abort(request) {
      deleteChunks.run(request.id);
      doneReceiving.run(request.id);
      return null;
    },
    commit(request) {
      const { message, id, queue, size } = request;
      if (request.data) chunk(id, request.seq, request.data);
      const { lastInsertRowid } = insertMessage.run({
        id,
        queue,
        size,
        receivedAt: message.receivedAt,
        mailFrom: message.mailFrom,
        bodyType: message.bodyType ?? null,
        smtpUtf8: message.smtpUtf8 ? 1 : 0,
        dsnRet: message.dsnRet ?? null,
        dsnEnvid: message.dsnEnvid ?? null,
        sourceIp: message.sourceIp,
        sourceName: message.sourceName,
        heloName: message.heloName ?? null,
        authUser: message.authUser ?? null,
        internetMessageId: message.internetMessageId ?? null,
        subject: message.subject ?? null,
        traceHeader: message.traceHeader,
      });
      message.recipients.forEach((r, position) =>
        insertRecipient.run(lastInsertRowid, position, r.address, r.orcpt ?? null, r.notify?.join(',') ?? null),
      );
      doneReceiving.run(id);
      // a delay notice (DL-6) is marked sent only with the notice itself: a crash loses both or neither
      clearDelayNotices(request.clearsDelayNoticeOf);
      return {
        ...message,
        id,
        queue,
        size,
        status: 'Ready',
        traceHeader: Buffer.from(message.traceHeader),
        recipients: message.recipients.map((r) => ({ ...r, status: 'Ready' })),
      };
    },
  };
}
