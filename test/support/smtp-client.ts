// A raw SMTP client for tests: sends exactly the bytes a test gives and reads
// replies as they come off the socket, so tests can speak both correct SMTP
// and abuse.
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';

export interface Reply {
  code: number;
  /** Text of every line, without the code and separator. */
  lines: string[];
  /** The whole reply as received, e.g. "250 2.6.0 Ok: queued as X". */
  text: string;
}

export class SmtpClient {
  private static readonly open_ = new Set<SmtpClient>();
  private buffer = '';
  private waiters: Array<() => void> = [];
  closed = false;

  private socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.listen(socket);
  }

  private listen(socket: Socket): void {
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => {
      this.buffer += data;
      this.wake();
    });
    SmtpClient.open_.add(this);
    socket.on('close', () => {
      SmtpClient.open_.delete(this);
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<SmtpClient> {
    const socket = connect(port, host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new SmtpClient(socket);
  }

  /** Connects and reads the greeting; fails unless it is a 220. */
  static async open(port: number, ehlo = 'client.test'): Promise<SmtpClient> {
    const client = await SmtpClient.connect(port);
    const greeting = await client.reply();
    if (greeting.code !== 220) throw new Error(`greeting: ${greeting.text}`);
    const hello = await client.command(`EHLO ${ehlo}`);
    if (hello.code !== 250) throw new Error(`EHLO: ${hello.text}`);
    return client;
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** Reads one (possibly multi-line) reply; rejects on timeout or close. */
  async reply(timeoutMs = 10_000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parsed = this.takeReply();
      if (parsed) return parsed;
      if (this.closed) throw new Error(`connection closed while waiting for a reply (buffer: ${JSON.stringify(this.buffer)})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms (buffer: ${JSON.stringify(this.buffer)})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private takeReply(): Reply | undefined {
    const lines: string[] = [];
    let offset = 0;
    for (;;) {
      const end = this.buffer.indexOf('\r\n', offset);
      if (end === -1) return undefined;
      const line = this.buffer.slice(offset, end);
      offset = end + 2;
      lines.push(line);
      if (line[3] !== '-') {
        this.buffer = this.buffer.slice(offset);
        return { code: Number(line.slice(0, 3)), lines: lines.map((l) => l.slice(4)), text: lines.join('\n') };
      }
    }
  }

  /** STARTTLS, then the TLS handshake (any certificate), then EHLO again. */
  async startTls(ehlo = 'client.test'): Promise<Reply> {
    const go = await this.command('STARTTLS');
    if (go.code !== 220) throw new Error(`STARTTLS: ${go.text}`);
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.listen(secure);
    return this.command(`EHLO ${ehlo}`);
  }

  /** After startTls: the certificate the server presented. */
  peerCertificate(): PeerCertificate {
    return (this.socket as TLSSocket).getPeerCertificate();
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Writes many pieces, waiting whenever the socket asks to (for bodies too big to hold). */
  async writeAll(pieces: Iterable<Buffer>): Promise<void> {
    for (const piece of pieces) {
      if (this.closed) throw new Error('connection closed while writing');
      if (!this.socket.write(piece)) await new Promise((resolve) => this.socket.once('drain', resolve));
    }
  }

  async command(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Sends DATA, the body (dot-stuffed here) and the terminator; returns the final reply. */
  async data(body: string | Buffer): Promise<Reply> {
    const go = await this.command('DATA');
    if (go.code !== 354) return go;
    this.write(dotStuff(Buffer.from(body)));
    this.write('.\r\n');
    return this.reply(60_000);
  }

  /** A whole transaction; returns the reply to the first command that failed, or the DATA reply. */
  async send(from: string, to: string[], body: string | Buffer): Promise<Reply> {
    const mail = await this.command(`MAIL FROM:<${from}>`);
    if (mail.code !== 250) return mail;
    for (const rcpt of to) {
      const reply = await this.command(`RCPT TO:<${rcpt}>`);
      if (reply.code !== 250) return reply;
    }
    return this.data(body);
  }

  /** One message on a connection of its own; returns its queue id, failing unless it got a 250. */
  static async submit(port: number, from: string, to: string[], body: string | Buffer): Promise<string> {
    const client = await SmtpClient.open(port);
    try {
      const reply = await client.send(from, to, body);
      if (reply.code !== 250) throw new Error(`not accepted: ${reply.text}`);
      return queueIdOf(reply);
    } finally {
      client.close();
    }
  }

  /** Resolves when the server has closed the connection. */
  async closedByServer(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('server did not close the connection');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  close(): void {
    this.socket.destroy();
  }

  /** Drops every client connection still open (test teardown, before the server stops). */
  static closeAll(): void {
    for (const client of SmtpClient.open_) client.close();
  }
}

/** RFC 5321 §4.5.2 transparency: a line starting with "." gets another one. */
export function dotStuff(body: Buffer): Buffer {
  const text = body.toString('latin1');
  const stuffed = (text.startsWith('.') ? '.' : '') + text.replace(/\r\n\./g, '\r\n..');
  return Buffer.from(stuffed, 'latin1');
}

export function queueIdOf(reply: Reply): string {
  const match = /queued as ([0-9A-Z]+)/.exec(reply.text);
  if (!match) throw new Error(`no queue id in ${reply.text}`);
  return match[1]!;
}
