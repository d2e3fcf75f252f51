// A next hop for chaos tests, on raw node:net so a fault can be put at any
// byte of the conversation: a minimal hand-written SMTP server side (greeting,
// EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT; pipelined
// commands are taken in order from whatever arrives in one packet). It records
// every message it received and counts connections. Faults are set for every
// new connection (setFault), for the next N (faultNext), or on one open
// connection (openConnections()[i].fault), and can be changed while it runs.
// Sluice's side of a chaos test is in chaos-sluice.ts.
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { TestContext } from 'node:test';

/**
 * Where the connection is closed without a reply:
 * - `mail`: the MAIL command arrived (no reply to it);
 * - `rcpt`: MAIL got 250, the first RCPT arrived (no reply to it);
 * - `data354`: MAIL and RCPT got 250, DATA got 354, then the close (before any body is read);
 * - `midBody`: body bytes arrived, the close comes before the final dot is taken;
 * - `afterDot`: the whole body including the final dot arrived and the message is recorded as received
 *   (`acknowledged: false`), then the close before any reply: RFC 5321 §6.1, the sender must retry
 *   and a duplicate is the accepted price.
 */
export type CloseAfter = 'mail' | 'rcpt' | 'data354' | 'midBody' | 'afterDot';
/** Where a connection stops reading and answering (and stays open, like a hung process). `afterDot` records the message first. */
export type FreezeAt = 'greeting' | 'mail' | 'rcpt' | 'data' | 'afterDot';
/** How a new connection is refused: closed at once, or `421 4.3.2 busy` and closed. */
export type Refusal = 'close' | 'greeting421';

/** A fault a random mode can pick. `refuse:*` and `freeze:greeting` are picked per connection, the rest per transaction (at MAIL). */
export type RandomKind = `close:${CloseAfter}` | `freeze:${FreezeAt}` | `refuse:${Refusal}` | 'rcpt451ThenCloseOnRset';

export const ALL_RANDOM_KINDS: readonly RandomKind[] = [
  'close:mail',
  'close:rcpt',
  'close:data354',
  'close:midBody',
  'close:afterDot',
  'freeze:greeting',
  'freeze:mail',
  'freeze:rcpt',
  'freeze:data',
  'freeze:afterDot',
  'refuse:close',
  'refuse:greeting421',
  'rcpt451ThenCloseOnRset',
];

export interface RandomFaults {
  seed: number;
  /** Probability (0..1) that a transaction, or a new connection, gets a fault. */
  rate: number;
  /** The faults to pick among (uniformly); all of them by default. */
  kinds?: readonly RandomKind[];
}

export interface Fault {
  closeAfter?: CloseAfter;
  /** `true` is `mail`: the connection hangs at the next MAIL. */
  freeze?: true | FreezeAt;
  /** Applies when the connection is opened; `true` is `close`. */
  refuseNew?: true | Refusal;
  /** Every RCPT gets `451 4.3.0`; when RSET arrives the connection is closed without a reply. */
  rcpt451ThenCloseOnRset?: boolean;
  /** Seeded random faults (mulberry32); one generator per Fault object, shared by the connections that carry it. */
  random?: RandomFaults;
  /** The transaction faults above strike only after this many transactions (MAILs) on the connection went clean. */
  afterTransactions?: number;
}

export interface ReceivedMessage {
  /** Order of receipt at this hop, from 0. */
  index: number;
  /** 1-based number of the connection it came on. */
  connection: number;
  /** The MAIL command line as sent, parameters and all. */
  mailLine: string;
  mailFrom: string;
  /** The MAIL parameters, e.g. `BODY=8BITMIME`. */
  mailParams: string[];
  rcptTo: string[];
  /** The RCPT command lines as sent (NOTIFY, ORCPT...), of the recipients accepted. */
  rcptLines: string[];
  /** The message as received, dot-unstuffed, without the terminating `.` line. */
  body: Buffer;
  subject: string | undefined;
  messageId: string | undefined;
  /** False when the hop took the final dot and then failed (closed or froze) before replying. */
  acknowledged: boolean;
  at: number;
}

export interface InjectedFault {
  connection: number;
  kind: string;
  at: number;
}

export interface ChaosConnectionHandle {
  readonly id: number;
  /** The fault this connection follows; assigning it takes effect at its next transaction (MAIL). */
  fault: Fault | undefined;
  readonly frozen: boolean;
  freeze(): void;
  /** Closes it now, without a reply. */
  close(): void;
}

export interface ChaosHopOptions {
  host?: string;
  port?: number;
  /** Name in the greeting and the EHLO reply. */
  name?: string;
  /** Advertise SMTPUTF8. */
  smtpUtf8?: boolean;
  /** Advertise DSN (RFC 3461). */
  dsn?: boolean;
  /** The fault of every new connection from the start. */
  fault?: Fault;
}

export type MessageKey = 'subject' | 'messageId';

export interface ChaosHop {
  readonly port: number;
  /** Every message received, in order (duplicates included). */
  readonly messages: ReceivedMessage[];
  /** Connections accepted so far (refused ones included). */
  readonly connections: number;
  /** Faults injected so far, in order. */
  readonly injected: InjectedFault[];
  /** The fault of every new connection from now on; `includeOpen` also gives it to the connections open now. */
  setFault(fault: Fault | undefined, options?: { includeOpen?: boolean }): void;
  /** The next `count` new connections get this fault (before the default one); calls queue up in order. */
  faultNext(count: number, fault: Fault): void;
  /** Connections open now (frozen ones included). */
  openConnections(): ChaosConnectionHandle[];
  /** Freezes every connection open now; returns how many. */
  freezeOpenConnections(): number;
  /** Messages grouped by Subject or Message-ID (messages without that header are left out); `acknowledgedOnly`: copies answered 250 only. */
  distinct(by?: MessageKey, acknowledgedOnly?: boolean): Map<string, ReceivedMessage[]>;
  /**
   * Resolves once `count` distinct messages (by Subject or Message-ID) have arrived; with `acknowledgedOnly`,
   * once `count` have a copy that was answered 250 (a copy taken without a reply does not count).
   */
  waitForMessages(count: number, options?: { by?: MessageKey; acknowledgedOnly?: boolean; timeoutMs?: number }): Promise<Map<string, ReceivedMessage[]>>;
  /** Resolves once the condition holds (polled; bounded by timeoutMs). */
  waitUntil(condition: () => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** Closes the listener and every connection, frozen ones included. */
  stop(): Promise<void>;
}

/** mulberry32: a tiny deterministic PRNG, numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CRLF = Buffer.from('\r\n');
const TERMINATOR = Buffer.from('\r\n.\r\n');
const MAX_LINE = 4096;
const CONNECTION_KINDS = new Set<RandomKind>(['freeze:greeting', 'refuse:close', 'refuse:greeting421']);

/** Header field of the message's header section (unfolded), first occurrence. */
function headerOf(body: Buffer, name: string): string | undefined {
  const text = body.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end + 2);
  const match = new RegExp(`(?:^|\\r\\n)${name}:[ \\t]*((?:[^\\r\\n]|\\r\\n[ \\t])*)`, 'i').exec(head);
  return match ? match[1]!.replace(/\r\n[ \t]+/g, ' ').trim() : undefined;
}

/** RFC 5321 §4.5.2: a line that starts with "." loses that first dot. */
function dotUnstuff(stuffed: Buffer): Buffer {
  return Buffer.from(stuffed.toString('latin1').replace(/(^|\r\n)\./g, '$1'), 'latin1');
}

/** The address between < and > in `MAIL FROM:<a> X=Y` / `RCPT TO:<b>`, and the parameters after it. */
function pathOf(argument: string): { address: string; params: string[] } | undefined {
  const match = /^\s*<([^>]*)>\s*(.*)$/.exec(argument);
  if (!match) return undefined;
  return { address: match[1]!, params: match[2]!.split(/\s+/).filter(Boolean) };
}

interface Transaction {
  mailLine: string;
  mailFrom: string;
  mailParams: string[];
  rcptTo: string[];
  rcptLines: string[];
  /** The concrete fault of this transaction (from the connection's fault, random picks resolved). */
  fault: Fault;
}

export async function startChaosHop(t: Pick<TestContext, 'after'>, options: ChaosHopOptions = {}): Promise<ChaosHop> {
  const host = options.host ?? '127.0.0.1';
  const name = options.name ?? 'chaos.test';
  const messages: ReceivedMessage[] = [];
  const injected: InjectedFault[] = [];
  const open = new Set<Connection>();
  const queued: Array<{ fault: Fault; left: number }> = [];
  const generators = new WeakMap<RandomFaults, () => number>();
  let defaultFault: Fault | undefined = options.fault;
  let connectionCount = 0;
  let stopped = false;

  const generatorOf = (random: RandomFaults) => {
    let next = generators.get(random);
    if (!next) {
      next = mulberry32(random.seed);
      generators.set(random, next);
    }
    return next;
  };

  /** A random pick among the kinds of one level, or undefined (no fault this time). */
  function pick(random: RandomFaults, level: 'connection' | 'transaction'): RandomKind | undefined {
    const next = generatorOf(random);
    const kinds = (random.kinds ?? ALL_RANDOM_KINDS).filter((k) => CONNECTION_KINDS.has(k) === (level === 'connection'));
    // always draw twice, so the sequence does not depend on which kinds are listed
    const roll = next();
    const choice = next();
    if (kinds.length === 0 || roll >= random.rate) return undefined;
    return kinds[Math.floor(choice * kinds.length)];
  }

  function faultOfKind(kind: RandomKind): Fault {
    if (kind === 'rcpt451ThenCloseOnRset') return { rcpt451ThenCloseOnRset: true };
    const [family, what] = kind.split(':') as [string, string];
    if (family === 'close') return { closeAfter: what as CloseAfter };
    if (family === 'freeze') return { freeze: what as FreezeAt };
    return { refuseNew: what as Refusal };
  }

  const note = (connection: number, kind: string) => injected.push({ connection, kind, at: Date.now() });

  class Connection implements ChaosConnectionHandle {
    fault: Fault | undefined;
    private state: 'open' | 'frozen' | 'closing' | 'closed' = 'open';
    private mode: 'command' | 'data' = 'command';
    private input: Buffer = Buffer.alloc(0);
    private data: Buffer = Buffer.alloc(0);
    private scanned = 0;
    private transaction: Transaction | undefined;
    private closeOnRset = false;
    private transactions = 0;

    constructor(
      readonly id: number,
      private readonly socket: Socket,
      fault: Fault | undefined,
    ) {
      this.fault = fault;
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.state = 'closed';
        open.delete(this);
      });
      socket.on('data', (chunk: Buffer) => {
        if (this.state !== 'open') return; // closing: the rest is discarded
        this.input = this.input.length === 0 ? chunk : Buffer.concat([this.input, chunk]);
        this.pump();
      });
      socket.on('end', () => {
        if (this.state !== 'frozen') socket.destroy();
      });
    }

    get frozen(): boolean {
      return this.state === 'frozen';
    }

    /** Open or frozen: not closing. */
    get alive(): boolean {
      return this.state === 'open' || this.state === 'frozen';
    }

    start(): void {
      const fault = this.fault ?? {};
      let refusal: Refusal | undefined = fault.refuseNew === true ? 'close' : fault.refuseNew;
      let freezeNow = fault.freeze === 'greeting';
      if (fault.random) {
        const kind = pick(fault.random, 'connection');
        if (kind) {
          note(this.id, kind);
          const chosen = faultOfKind(kind);
          if (chosen.refuseNew) refusal = chosen.refuseNew === true ? 'close' : chosen.refuseNew;
          if (chosen.freeze === 'greeting') freezeNow = true;
        }
      } else if (refusal) note(this.id, `refuse:${refusal}`);
      else if (freezeNow) note(this.id, 'freeze:greeting');
      if (refusal === 'close') {
        this.state = 'closed';
        this.socket.destroy();
        return;
      }
      if (refusal === 'greeting421') {
        this.socket.write('421 4.3.2 busy\r\n');
        return this.hangUp();
      }
      if (freezeNow) return this.freeze();
      this.write(`220 ${name} ESMTP chaos-hop`);
    }

    freeze(): void {
      if (this.state !== 'open') return;
      this.state = 'frozen';
      this.socket.pause();
    }

    close(): void {
      this.hangUp();
    }

    destroy(): void {
      this.state = 'closed';
      this.socket.destroy();
    }

    /** Closes without a reply. Graceful at the TCP level (FIN after what was already written), so a reply sent before is not lost to a reset. */
    private hangUp(): void {
      if (this.state === 'closing' || this.state === 'closed') return;
      this.state = 'closing';
      this.socket.resume(); // keep draining what the client sends, so no reset
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }

    private write(line: string): void {
      if (this.state === 'open') this.socket.write(`${line}\r\n`);
    }

    /** Takes every complete command (or the body) from the input, in order; stops at a fault. */
    private pump(): void {
      // each turn consumes input or returns, so this ends
      while (this.state === 'open') {
        if (this.mode === 'data') {
          if (!this.takeBody()) return;
          continue;
        }
        const end = this.input.indexOf(0x0a);
        if (end === -1) {
          if (this.input.length > MAX_LINE) {
            this.write('500 5.5.2 Line too long');
            this.hangUp();
          }
          return;
        }
        // UTF-8: SMTPUTF8 addresses come through as sent (ASCII is the same either way)
        const line = this.input.subarray(0, end).toString('utf8').replace(/\r$/, '');
        this.input = this.input.subarray(end + 1);
        this.command(line);
      }
    }

    private txFault(): Fault {
      const fault = this.fault ?? {};
      if (++this.transactions <= (fault.afterTransactions ?? 0)) return {};
      if (!fault.random) {
        const { random: _random, refuseNew: _refuse, ...rest } = fault;
        return rest;
      }
      const kind = pick(fault.random, 'transaction');
      if (!kind) return {};
      note(this.id, kind);
      return faultOfKind(kind);
    }

    /** A static fault is noted when it strikes (random ones when they are picked). */
    private strike(kind: string): void {
      if (!this.fault?.random) note(this.id, kind);
    }

    private command(line: string): void {
      const verb = (/^\s*(\S+)/.exec(line)?.[1] ?? '').toUpperCase();
      const argument = line.replace(/^\s*\S+\s*/, '');
      switch (verb) {
        case 'EHLO': {
          this.transaction = undefined;
          const extensions = ['PIPELINING', '8BITMIME', 'ENHANCEDSTATUSCODES', ...(options.smtpUtf8 ? ['SMTPUTF8'] : []), ...(options.dsn ? ['DSN'] : [])];
          const lines = [`${name} greets ${argument || 'you'}`, ...extensions];
          lines.forEach((text, i) => this.write(`250${i === lines.length - 1 ? ' ' : '-'}${text}`));
          return;
        }
        case 'HELO':
          this.transaction = undefined;
          return this.write(`250 ${name}`);
        case 'MAIL': {
          if (this.transaction) return this.write('503 5.5.1 Nested MAIL command');
          const from = /^FROM:/i.test(argument) ? pathOf(argument.slice(5)) : undefined;
          if (!from) return this.write('501 5.5.4 Syntax: MAIL FROM:<address>');
          const fault = this.txFault();
          this.transaction = { mailLine: line, mailFrom: from.address, mailParams: from.params, rcptTo: [], rcptLines: [], fault };
          this.closeOnRset = false;
          if (fault.closeAfter === 'mail') {
            this.strike('close:mail');
            return this.hangUp();
          }
          if (fault.freeze === 'mail' || fault.freeze === true) {
            this.strike('freeze:mail');
            return this.freeze();
          }
          return this.write('250 2.1.0 Ok');
        }
        case 'RCPT': {
          const tx = this.transaction;
          if (!tx) return this.write('503 5.5.1 MAIL first');
          const to = /^TO:/i.test(argument) ? pathOf(argument.slice(3)) : undefined;
          if (!to) return this.write('501 5.5.4 Syntax: RCPT TO:<address>');
          if (tx.fault.closeAfter === 'rcpt') {
            this.strike('close:rcpt');
            return this.hangUp();
          }
          if (tx.fault.freeze === 'rcpt') {
            this.strike('freeze:rcpt');
            return this.freeze();
          }
          if (tx.fault.rcpt451ThenCloseOnRset) {
            if (!this.closeOnRset) this.strike('rcpt451ThenCloseOnRset');
            this.closeOnRset = true;
            return this.write('451 4.3.0 Try again later');
          }
          tx.rcptTo.push(to.address);
          tx.rcptLines.push(line);
          return this.write('250 2.1.5 Ok');
        }
        case 'DATA': {
          const tx = this.transaction;
          if (!tx) return this.write('503 5.5.1 MAIL first');
          if (tx.rcptTo.length === 0) return this.write('554 5.5.1 No valid recipients');
          if (tx.fault.freeze === 'data') {
            this.strike('freeze:data');
            return this.freeze();
          }
          this.write('354 End data with <CR><LF>.<CR><LF>');
          if (tx.fault.closeAfter === 'data354') {
            this.strike('close:data354');
            return this.hangUp();
          }
          this.mode = 'data';
          this.data = Buffer.alloc(0);
          this.scanned = 0;
          return;
        }
        case 'RSET':
          if (this.closeOnRset) {
            this.closeOnRset = false;
            return this.hangUp();
          }
          this.transaction = undefined;
          return this.write('250 2.0.0 Ok');
        case 'NOOP':
          return this.write('250 2.0.0 Ok');
        case 'VRFY':
          return this.write('252 2.1.5 Cannot verify');
        case 'QUIT':
          this.write('221 2.0.0 Bye');
          return this.hangUp();
        default:
          return this.write('502 5.5.2 Command not recognized');
      }
    }

    /** In data mode: moves input into the body until the terminator; true when the terminator was taken. */
    private takeBody(): boolean {
      const tx = this.transaction!;
      if (this.input.length > 0) {
        this.data = this.data.length === 0 ? this.input : Buffer.concat([this.data, this.input]);
        this.input = Buffer.alloc(0);
      }
      if (this.data.length === 0) return false;
      if (tx.fault.closeAfter === 'midBody') {
        this.strike('close:midBody');
        this.hangUp();
        return false;
      }
      let bodyEnd: number; // end of the stuffed body (its last CRLF included)
      let restStart: number;
      if (this.data.subarray(0, 3).equals(Buffer.from('.\r\n'))) {
        bodyEnd = 0;
        restStart = 3;
      } else {
        const found = this.data.indexOf(TERMINATOR, Math.max(0, this.scanned - TERMINATOR.length));
        if (found === -1) {
          this.scanned = this.data.length;
          return false;
        }
        bodyEnd = found + CRLF.length;
        restStart = found + TERMINATOR.length;
      }
      const body = dotUnstuff(this.data.subarray(0, bodyEnd));
      this.input = this.data.subarray(restStart);
      this.data = Buffer.alloc(0);
      this.mode = 'command';
      this.transaction = undefined;
      const hangsAfter = tx.fault.closeAfter === 'afterDot' || tx.fault.freeze === 'afterDot';
      messages.push({
        index: messages.length,
        connection: this.id,
        mailLine: tx.mailLine,
        mailFrom: tx.mailFrom,
        mailParams: tx.mailParams,
        rcptTo: tx.rcptTo,
        rcptLines: tx.rcptLines,
        body,
        subject: headerOf(body, 'Subject'),
        messageId: headerOf(body, 'Message-ID'),
        acknowledged: !hangsAfter,
        at: Date.now(),
      });
      if (tx.fault.closeAfter === 'afterDot') {
        this.strike('close:afterDot');
        this.hangUp();
        return true;
      }
      if (tx.fault.freeze === 'afterDot') {
        this.strike('freeze:afterDot');
        this.freeze();
        return true;
      }
      this.write(`250 2.0.0 Ok: queued as ${this.id}.${messages.length}`);
      return true;
    }
  }

  const server: Server = createServer((socket) => {
    if (stopped) {
      socket.destroy();
      return;
    }
    connectionCount++;
    let fault = defaultFault;
    const next = queued[0];
    if (next) {
      fault = next.fault;
      if (--next.left <= 0) queued.shift();
    }
    const connection = new Connection(connectionCount, socket, fault);
    open.add(connection);
    connection.start();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  const distinct = (by: MessageKey = 'subject', acknowledgedOnly = false) => {
    const groups = new Map<string, ReceivedMessage[]>();
    for (const message of messages) {
      if (acknowledgedOnly && !message.acknowledged) continue;
      const key = message[by];
      if (key === undefined) continue;
      groups.set(key, [...(groups.get(key) ?? []), message]);
    }
    return groups;
  };

  async function until(condition: () => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`chaos hop: ${what} not met within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async function stop(): Promise<void> {
    if (stopped) return;
    stopped = true;
    for (const connection of open) connection.destroy();
    open.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  t.after(stop);
  return {
    port,
    messages,
    get connections() {
      return connectionCount;
    },
    injected,
    setFault(fault, setOptions = {}) {
      defaultFault = fault;
      if (setOptions.includeOpen) for (const connection of open) if (connection.alive) connection.fault = fault;
    },
    faultNext(count, fault) {
      if (count > 0) queued.push({ fault, left: count });
    },
    openConnections: () => [...open].filter((c) => c.alive),
    freezeOpenConnections() {
      let frozen = 0;
      for (const connection of open) {
        if (!connection.alive || connection.frozen) continue;
        connection.freeze();
        if (connection.frozen) frozen++;
      }
      return frozen;
    },
    distinct,
    async waitForMessages(count, waitOptions = {}) {
      const by = waitOptions.by ?? 'subject';
      const acknowledgedOnly = waitOptions.acknowledgedOnly ?? false;
      const timeoutMs = waitOptions.timeoutMs ?? 15_000;
      try {
        await until(() => distinct(by, acknowledgedOnly).size >= count, timeoutMs);
      } catch {
        const what = acknowledgedOnly ? 'distinct messages acknowledged' : 'distinct messages';
        throw new Error(`chaos hop got ${distinct(by, acknowledgedOnly).size} of ${count} ${what} (by ${by}) within ${timeoutMs} ms`);
      }
      return distinct(by, acknowledgedOnly);
    },
    waitUntil: until,
    stop,
  };
}
