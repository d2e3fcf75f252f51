// The session grammar of the SMTP fuzzer: from a seed and a session number, the
// exact bytes a client sends, step by step. Sessions mix valid transactions
// (unique bodies, tracked to the sink), transactions with edgy bodies, commands
// of the grammar with mutated parameters, random bytes, over-long lines, NUL,
// bare CR and LF, 8-bit octets, pipelined bursts, tiny writes, and a cut of the
// connection at any point. Nothing here depends on the server's answers: the
// driver (run.ts) decides, from the replies, which steps still make sense.
import { Rng, sessionRng } from './prng.js';

export type WriteMode = 'whole' | 'bytewise' | 'chunks';

/** What a step is for; a transaction's steps carry its number. */
export type Role = 'command' | 'garbage' | 'sync' | 'mail' | 'rcpt' | 'data' | 'pipeline' | 'body' | 'quit';

/** A property of the server checked at this step (see run.ts for what each means). */
export type StepCheck = 'starttls' | 'postmaster' | 'longLine' | 'longLineAfter';

export interface Step {
  bytes: Buffer;
  role: Role;
  /** Complete replies to wait for when the server is in command mode; undefined: unknown, read until quiet. */
  expect?: number;
  write: WriteMode;
  /** Transaction this step belongs to. */
  tx?: number;
  check?: StepCheck;
  /** For pipeline steps: the position (0-based) of the RCPT replies that must be 250 for `check`. */
  checkAt?: number[];
}

export interface Transaction {
  id: number;
  /** A valid transaction must be accepted; an edgy one (odd body) may be refused, but what is accepted is relayed unchanged. */
  kind: 'valid' | 'edgy';
  /** The body as the server should store it (before dot-stuffing, without the terminator). */
  body: Buffer;
  /** What was done to an edgy body. */
  mutation?: string;
  recipients: number;
}

export interface SessionPlan {
  seed: number;
  session: number;
  flavor: string;
  steps: Step[];
  transactions: Transaction[];
  /** Send `offset` bytes of step `step`, then drop the connection. */
  cut?: { step: number; offset: number; how: 'destroy' | 'end' };
  /** How a session that was not cut ends (after its last step, a QUIT step if any). */
  end: 'quit' | 'end' | 'destroy';
}

/** The one user of the fuzzed listener (AUTH PLAIN/LOGIN in the clear). */
export const FUZZ_USER = 'fuzz';
export const FUZZ_PASSWORD = 'fuzz-pass-7';

export interface ServerFeatures {
  /** EHLO keywords offered, upper case. */
  extensions: string[];
}

/**
 * Substrings of a reply that would mean an internal leaked (see run.ts). The generator never sends them
 * (case-insensitive), so a reply that echoes client input cannot look like a leak.
 */
const LEAK_WORDS = ['undefined', '[object', 'error', 'node:', 'node_modules', '.js', '.ts', '.cjs', '.mjs', 'nan', 'null', 'sqlite', 'econn', 'epipe', 'enospc', 'enoent', 'eacces', 'eio', 'ebadf', 'eexist', 'etimedout', 'err_', '/work', '/home', '/usr', '/tmp', '/opt', '/var', '/root', '/src', '/dist'];

const CRLF = '\r\n';
const b = (text: string) => Buffer.from(text, 'latin1');
const u = (text: string) => Buffer.from(text, 'utf8');

/** Replaces whatever could read as a leaked internal, so replies that echo client input stay honest. */
function scrub(data: Buffer): Buffer {
  let text = data.toString('latin1');
  let lower = text.toLowerCase();
  if (!LEAK_WORDS.some((word) => lower.includes(word)) && !/\bat\b/i.test(text)) return data;
  for (const word of LEAK_WORDS) {
    for (let at = lower.indexOf(word); at !== -1; at = lower.indexOf(word, at + 1)) {
      const offset = word.startsWith('/') || word.startsWith('.') || word.startsWith('[') ? 1 : 0;
      text = text.slice(0, at + offset) + 'q' + text.slice(at + offset + 1);
      lower = text.toLowerCase();
    }
  }
  return Buffer.from(text.replace(/\b(a)(t)\b/gi, 'q$2'), 'latin1');
}

function mixCase(rng: Rng, text: string): string {
  const mode = rng.weighted([[6, 'upper'], [2, 'lower'], [2, 'mixed']] as const);
  if (mode === 'upper') return text.toUpperCase();
  if (mode === 'lower') return text.toLowerCase();
  return [...text].map((c) => (rng.chance(0.5) ? c.toUpperCase() : c.toLowerCase())).join('');
}

const EIGHT_BIT = ['é', 'ü', 'ß', '用户', '例え', 'Ω', 'ñ', '§', '€'];

function eightBit(rng: Rng): Buffer {
  return rng.chance(0.5) ? u(rng.pick(EIGHT_BIT)) : Buffer.from(rng.bytes(rng.int(1, 4)).map((x) => x | 0x80));
}

function domain(rng: Rng): string {
  return rng.weighted([
    [6, () => rng.pick(['example.com', 'example.net', 'example.org', 'sub.example.com'])],
    [2, () => `${rng.word(rng.int(1, 12))}.${rng.pick(['test', 'com', 'invalid', 'example'])}`],
    [1, () => '[127.0.0.1]'],
    [1, () => '[IPv6:::1]'],
    [1, () => rng.word(rng.int(1, 6))],
    [1, () => ''],
    [1, () => `${rng.word(60)}.${rng.word(70)}.${rng.word(80)}.${rng.word(90)}.com`],
    [1, () => rng.printable(rng.int(1, 20))],
    [1, () => '-bad-.com'],
    [1, () => '..'],
  ] as const)();
}

function localPart(rng: Rng): string {
  return rng.weighted([
    [6, () => rng.word(rng.int(1, 16))],
    [2, () => `${rng.word(3)}.${rng.word(4)}+${rng.word(3)}`],
    [1, () => `"${rng.printable(rng.int(0, 12)).replace(/["\\]/g, '')}"`],
    [1, () => rng.printable(rng.int(1, 30))],
    [1, () => rng.word(rng.int(65, 300))],
    [1, () => ''],
    [1, () => '.dot..dot.'],
  ] as const)();
}

/** A mutated reverse-path or forward-path, brackets and all. */
function mutatedPath(rng: Rng): Buffer {
  return rng.weighted<() => Buffer>([
    [5, () => b(`<${localPart(rng)}@${domain(rng)}>`)],
    [2, () => b('<>')],
    [1, () => b(`${localPart(rng)}@${domain(rng)}`)],
    [1, () => b(` <${localPart(rng)}@${domain(rng)}> `)],
    [1, () => b(`<${localPart(rng)}@${domain(rng)}`)],
    [1, () => b(`<<${localPart(rng)}@${domain(rng)}>>`)],
    [1, () => b(`<@${domain(rng)},@${domain(rng)}:${localPart(rng)}@${domain(rng)}>`)],
    [1, () => b(`<${mixCase(rng, 'postmaster')}>`)],
    [1, () => b(`<${localPart(rng)}@${domain(rng)}>${rng.printable(rng.int(1, 10))}`)],
    [1, () => Buffer.concat([b('<'), eightBit(rng), b(`@${domain(rng)}>`)])],
    [1, () => u(`<${rng.pick(EIGHT_BIT)}@${rng.pick(EIGHT_BIT)}.example>`)],
    [1, () => b(`<${localPart(rng)}@${domain(rng)}>`.repeat(rng.int(2, 4)))],
    [1, () => b('')],
    [1, () => b(`<${'a'.repeat(rng.int(300, 3000))}@example.com>`)],
  ])();
}

function mailParams(rng: Rng): string[] {
  const params: string[] = [];
  const count = rng.weighted([[5, 0], [3, 1], [2, 2], [1, 4]] as const);
  for (let i = 0; i < count; i++) {
    params.push(
      rng.weighted<() => string>([
        [2, () => `SIZE=${rng.pick([rng.int(0, 100_000), 999_999_999_999, -1, 0, rng.word(3)])}`],
        [2, () => `BODY=${rng.pick(['8BITMIME', '7BIT', 'BINARYMIME', 'junk', ''])}`],
        [1, () => 'SMTPUTF8'],
        [1, () => `RET=${rng.pick(['FULL', 'HDRS', 'NEVER', ''])}`],
        [1, () => `ENVID=${rng.pick([rng.word(8), '+2B', '+ZZ', rng.printable(10).replace(/ /g, '')])}`],
        [1, () => `AUTH=${rng.pick(['<>', 'a@b', 'x'])}`],
        [1, () => `${rng.word(rng.int(1, 8)).toUpperCase()}=${rng.word(rng.int(0, 8))}`],
        [1, () => rng.word(rng.int(1, 8))],
        [1, () => '='],
      ])(),
    );
  }
  if (count > 0 && rng.chance(0.15)) params.push(params[0]!);
  return params.map((p) => mixCase(rng, p));
}

function rcptParams(rng: Rng): string[] {
  const count = rng.weighted([[6, 0], [3, 1], [1, 3]] as const);
  const params: string[] = [];
  for (let i = 0; i < count; i++) {
    params.push(
      rng.weighted<() => string>([
        [3, () => `NOTIFY=${rng.pick(['SUCCESS', 'FAILURE', 'DELAY', 'NEVER', 'SUCCESS,FAILURE', 'NEVER,SUCCESS', 'junk', ''])}`],
        [2, () => `ORCPT=${rng.pick(['rfc822;a@example.com', 'rfc822;', 'x', 'utf-8;a@b', `rfc822;${rng.word(5)}+2B@x`])}`],
        [1, () => `${rng.word(rng.int(1, 8)).toUpperCase()}=${rng.word(3)}`],
      ])(),
    );
  }
  if (count > 0 && rng.chance(0.1)) params.push(params[0]!);
  return params.map((p) => mixCase(rng, p));
}

/** A line ending: mostly CRLF, sometimes bare LF, bare CR, CR CR LF or none (the next step continues the line). */
function lineEnd(rng: Rng): string {
  return rng.weighted([[40, CRLF], [2, '\n'], [2, '\r'], [1, '\r\r\n'], [1, ''], [1, '\n\r']] as const);
}

/** Inserts NUL, 8-bit octets or control characters at random places of a command line (rarely). */
function sprinkle(rng: Rng, line: Buffer): Buffer {
  if (!rng.chance(0.12)) return line;
  const parts: Buffer[] = [];
  let at = 0;
  for (let n = rng.int(1, 3); n > 0; n--) {
    const next = rng.int(at, line.length);
    parts.push(line.subarray(at, next));
    parts.push(rng.weighted<() => Buffer>([
      [2, () => Buffer.from([0])],
      [2, () => eightBit(rng)],
      [1, () => Buffer.from([rng.int(1, 31)])],
      [1, () => Buffer.from([0x7f])],
    ])());
    at = next;
  }
  parts.push(line.subarray(at));
  return Buffer.concat(parts);
}

const VERBS = ['EHLO', 'HELO', 'LHLO', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'VRFY', 'EXPN', 'HELP', 'STARTTLS', 'AUTH', 'ETRN', 'TURN', 'XCLIENT', 'XFORWARD', 'SEND', 'SOML', 'SAML', 'ATRN'];

/** One command line of the grammar with mutated parameters (no line ending). */
function grammarCommand(rng: Rng, features: ServerFeatures): { line: Buffer; verb: string } {
  const verb = rng.weighted<string>([
    [3, 'EHLO'], [2, 'HELO'], [4, 'MAIL'], [5, 'RCPT'], [2, 'DATA'], [2, 'RSET'], [2, 'NOOP'], [2, 'VRFY'], [1, 'EXPN'], [1, 'HELP'],
    [1, 'STARTTLS'], [2, 'AUTH'], [1, 'BDAT'], [2, 'OTHER'],
  ]);
  const name = verb === 'OTHER' ? rng.pick([...VERBS, rng.word(rng.int(1, 10)).toUpperCase(), '', ' ', rng.printable(rng.int(1, 6))]) : verb;
  const v = mixCase(rng, name);
  const sp = rng.weighted([[10, ' '], [1, '  '], [1, '\t'], [1, '']] as const);
  let rest: Buffer;
  switch (verb) {
    case 'EHLO':
    case 'HELO':
      rest = rng.chance(0.1) ? b('') : Buffer.concat([b(sp), rng.chance(0.1) ? eightBit(rng) : b(domain(rng))]);
      break;
    case 'MAIL':
    case 'RCPT': {
      const keyword = verb === 'MAIL' ? rng.weighted([[8, 'FROM:'], [1, 'FROM: '], [1, 'FROM'], [1, 'TO:'], [1, 'FROM :']] as const) : rng.weighted([[8, 'TO:'], [1, 'TO: '], [1, 'TO'], [1, 'FROM:']] as const);
      const params = verb === 'MAIL' ? mailParams(rng) : rcptParams(rng);
      const name8 = eightBit(rng);
      // an 8-bit parameter name, twice: a server that echoes it ("duplicate ... parameter") sends 8-bit text
      const paramBytes = rng.chance(0.04) ? Buffer.concat([b(' '), name8, b('=1 '), name8, b('=2')]) : b(params.map((p) => ' ' + p).join(''));
      rest = Buffer.concat([b(sp + mixCase(rng, keyword)), mutatedPath(rng), paramBytes]);
      break;
    }
    case 'AUTH':
      rest = b(
        sp +
          rng.pick([
            'PLAIN', 'LOGIN', 'CRAM-MD5', 'XOAUTH2', rng.word(5), '', 'PLAIN =', 'PLAIN !!!!', `LOGIN ${Buffer.from(FUZZ_USER).toString('base64')}`,
            `PLAIN ${Buffer.from(`\0${rng.word(4)}\0${rng.word(6)}`).toString('base64')}`,
            `PLAIN ${Buffer.from(`\0${FUZZ_USER}\0${FUZZ_PASSWORD}`).toString('base64')}`,
            `PLAIN ${Buffer.from(`${FUZZ_USER}\0${FUZZ_USER}\0${FUZZ_PASSWORD}`).toString('base64')}`,
            `PLAIN ${rng.bytes(rng.int(1, 40)).toString('base64')}`,
          ]),
      );
      break;
    case 'BDAT':
      rest = b(sp + rng.pick([String(rng.int(0, 50)), `${rng.int(0, 50)} LAST`, 'LAST', '-1', '99999999999999999999', rng.word(3)]));
      break;
    case 'VRFY':
    case 'EXPN':
      rest = rng.chance(0.8) ? Buffer.concat([b(sp), mutatedPath(rng)]) : b('');
      break;
    case 'DATA':
    case 'RSET':
    case 'NOOP':
    case 'STARTTLS':
      rest = rng.chance(0.85) ? b('') : b(sp + rng.printable(rng.int(1, 20)));
      break;
    default:
      rest = rng.chance(0.5) ? b('') : b(sp + rng.printable(rng.int(1, 40)));
  }
  void features;
  return { line: sprinkle(rng, Buffer.concat([b(v), rest])), verb };
}

function pickWrite(rng: Rng, length: number): WriteMode {
  return rng.weighted([[75, 'whole'], [15, 'chunks'], [length <= 400 ? 10 : 0, 'bytewise']] as const);
}

const line = (text: string) => b(text + CRLF);

/** A body line of printable text (never a lone "."; dot-stuffing is tested by lines that start with one). */
function bodyLine(rng: Rng, eight: boolean): string {
  return rng.weighted<() => string>([
    [8, () => rng.printable(rng.int(0, 76))],
    [1, () => '.' + rng.printable(rng.int(0, 20))],
    [1, () => '..'],
    [1, () => ''],
    [1, () => rng.printable(rng.int(200, 998))],
    [1, () => rng.pick(['MAIL FROM:<evil@example.net>', 'RCPT TO:<victim@example.com>', 'DATA', 'QUIT', 'Received: fake', 'From nobody'])],
    [eight ? 2 : 0, () => rng.pick(EIGHT_BIT) + rng.printable(rng.int(0, 30)) + rng.pick(EIGHT_BIT)],
  ])();
}

/** A body with a unique token; `eight` allows 8-bit text (UTF-8). */
function validBody(rng: Rng, seed: number, session: number, tx: number, eight: boolean): Buffer {
  const token = `${seed}.${session}.${tx}`;
  const headers = [`Message-ID: <fuzz.${token}@fuzz.test>`, `Subject: fuzz ${token}${eight && rng.chance(0.3) ? ' ' + rng.pick(EIGHT_BIT) : ''}`, `X-Fuzz-Id: ${token}`];
  if (rng.chance(0.3)) headers.push(`X-Long: ${rng.word(60)}\r\n\t${rng.word(60)}`);
  const lines: string[] = [];
  const size = rng.weighted([[10, rng.int(0, 6)], [6, rng.int(7, 40)], [1, rng.int(41, 400)], [0.15, rng.int(2000, 4000)]] as const);
  for (let i = 0; i < size; i++) lines.push(bodyLine(rng, eight));
  const text = `${headers.join(CRLF)}${CRLF}${CRLF}${lines.join(CRLF)}${lines.length ? CRLF : ''}`;
  return eight ? u(text) : b(text);
}

/** Mutations of a body that a relay must either refuse or pass on unchanged. */
function edgyBody(rng: Rng, body: Buffer): { body: Buffer; mutation: string } {
  const text = body.toString('latin1');
  const mid = text.indexOf('\r\n\r\n') + 4 + rng.int(0, Math.max(0, text.length - text.indexOf('\r\n\r\n') - 6));
  const insert = (what: string, name: string) => {
    const out = text.slice(0, mid) + what + text.slice(mid);
    // the body ends with CRLF, so that CRLF . CRLF ends it
    return { body: b(out.endsWith(CRLF) ? out : out + CRLF), mutation: name };
  };
  return rng.weighted<() => { body: Buffer; mutation: string }>([
    [3, () => insert('bare CR\rinside', 'bare CR inside a line')],
    [1, () => insert('ends with CR\r\r\n', 'bare CR before CRLF')],
    [2, () => insert('bare\nLF', 'bare LF')],
    [1, () => insert('\n.\nMAIL FROM:<evil@example.net>\r\n', 'smuggled \\n.\\n')],
    [1, () => insert('\r\n.\nRCPT TO:<x@example.com>\r\n', 'smuggled \\r\\n.\\n')],
    [2, () => insert('nul\0here', 'NUL')],
    [2, () => insert(`${'y'.repeat(rng.int(999, 5000))}\r\n`, 'line over 998')],
    [2, () => insert(`raw ${Buffer.from([0xe9, 0xff, 0x80, 0xc3]).toString('latin1')} 8-bit\r\n`, 'raw 8-bit')],
    [1, () => insert('\x1b[31m\x07\x08\x0b\x0c\r\n', 'control characters')],
    [1, () => insert('trailing spaces   \t\r\n', 'trailing white space')],
    [0.2, () => insert(`${('z'.repeat(76) + '\r\n').repeat(rng.int(14_000, 16_000))}`, 'over the size limit')],
  ])();
}

export interface Context {
  rng: Rng;
  seed: number;
  session: number;
  features: ServerFeatures;
  steps: Step[];
  transactions: Transaction[];
}

function push(ctx: Context, step: Omit<Step, 'write'> & { write?: WriteMode }): void {
  ctx.steps.push({ write: pickWrite(ctx.rng, step.bytes.length), ...step });
}

function hello(ctx: Context): void {
  const { rng } = ctx;
  const verb = rng.weighted([[8, 'EHLO'], [2, 'HELO']] as const);
  push(ctx, { bytes: line(`${mixCase(rng, verb)} ${rng.pick(['client.test', `fuzz${ctx.session}.test`, '[127.0.0.1]', 'localhost'])}`), role: 'command', expect: 1 });
}

/** A transaction the driver tracks to the sink. */
function transaction(ctx: Context, kind: 'valid' | 'edgy'): void {
  const { rng, session } = ctx;
  const id = ctx.transactions.length;
  const utf8 = rng.chance(0.05);
  const eight = utf8 || rng.chance(0.15);
  const from = utf8 ? `用户${session}@例え.example` : rng.chance(0.1) ? '' : `fuzz-${session}-${id}@${rng.pick(['example.net', 'sender.example'])}`;
  const mail = `MAIL FROM:<${from}>${eight && rng.chance(0.7) ? ' BODY=8BITMIME' : ''}${utf8 ? ' SMTPUTF8' : ''}${rng.chance(0.2) ? ` SIZE=${rng.int(100, 5000)}` : ''}${rng.chance(0.1) ? ' RET=HDRS ENVID=fuzz' + session : ''}`;
  const rcpts: Array<{ text: string; postmaster: boolean }> = [];
  for (let n = rng.weighted([[6, 1], [2, 2], [1, rng.int(3, 8)]] as const); n > 0; n--) {
    const address = utf8 && rng.chance(0.5) ? `收件人${n}@例え.example` : `${rng.pick(['r', 'rcpt', 'user.name', 'a+tag', 'x_y-z'])}${n}@${rng.pick(['example.com', 'example.org', 'sub.example.com'])}`;
    rcpts.push({ text: `RCPT TO:<${address}>${rng.chance(0.15) ? ' NOTIFY=SUCCESS,FAILURE' : ''}`, postmaster: false });
  }
  if (rng.chance(0.08)) rcpts.splice(rng.int(0, rcpts.length), 0, { text: `RCPT TO:<${mixCase(rng, 'postmaster')}>`, postmaster: true });
  let body = validBody(rng, ctx.seed, session, id, eight);
  let mutation: string | undefined;
  if (kind === 'edgy') ({ body, mutation } = edgyBody(rng, body));
  const encode = (text: string) => (utf8 ? u(text) : b(text));
  // RSET then EHLO: a known state whatever came before (a partial line is ended by the RSET line, the EHLO resets
  // the transaction and greets the session); the driver checks that the last reply is the EHLO's
  const plain = !eight && !mail.includes('=');
  push(ctx, { bytes: line(`RSET\r\n${plain && rng.chance(0.2) ? 'HELO' : 'EHLO'} fuzz${session}.test`), role: 'sync', expect: 2, tx: id, write: 'whole' });
  if (rng.chance(0.08)) push(ctx, { bytes: line(`AUTH PLAIN ${Buffer.from(`\0${FUZZ_USER}\0${FUZZ_PASSWORD}`).toString('base64')}`), role: 'command', expect: 1, tx: id });
  if (rng.chance(0.35)) {
    const bytes = Buffer.concat([encode(mail + CRLF), ...rcpts.map((r) => encode(r.text + CRLF)), b('DATA\r\n')]);
    const checkAt = rcpts.flatMap((r, i) => (r.postmaster ? [i + 1] : []));
    push(ctx, { bytes, role: 'pipeline', expect: rcpts.length + 2, tx: id, ...(checkAt.length ? { check: 'postmaster' as const, checkAt } : {}) });
  } else {
    push(ctx, { bytes: encode(mail + CRLF), role: 'mail', expect: 1, tx: id });
    for (const r of rcpts) push(ctx, { bytes: encode(r.text + CRLF), role: 'rcpt', expect: 1, tx: id, ...(r.postmaster ? { check: 'postmaster' as const } : {}) });
    push(ctx, { bytes: line('DATA'), role: 'data', expect: 1, tx: id });
  }
  const wire = Buffer.concat([dotStuff(body), b('.\r\n')]);
  push(ctx, { bytes: wire, role: 'body', expect: 1, tx: id, write: rng.weighted([[80, 'whole'], [20, 'chunks'], [wire.length <= 600 ? 6 : 0, 'bytewise']] as const) });
  ctx.transactions.push({ id, kind, body, recipients: rcpts.length, ...(mutation ? { mutation } : {}) });
}

/** RFC 5321 §4.5.2 transparency: a line starting with "." gets another one (lines end with CRLF only). */
export function dotStuff(body: Buffer): Buffer {
  const text = body.toString('latin1');
  return b((text.startsWith('.') ? '.' : '') + text.replace(/\r\n\./g, '\r\n..'));
}

function garbageCommand(ctx: Context): void {
  const { rng } = ctx;
  const { line: command, verb } = grammarCommand(rng, ctx.features);
  const end = lineEnd(rng);
  if (verb === 'STARTTLS' && end === CRLF && command.length === 8) {
    push(ctx, { bytes: b('STARTTLS\r\n'), role: 'command', expect: 1, check: 'starttls' });
    return;
  }
  // a line with a bare CR or LF, or without an ending, may be held as a partial line: do not wait for a reply
  const plain = end === CRLF && !command.includes(0x0a) && !command.includes(0x0d);
  push(ctx, { bytes: scrub(Buffer.concat([command, b(end)])), role: plain ? 'command' : 'garbage', ...(plain ? { expect: 1 } : {}) });
  if (verb === 'BDAT' && plain && rng.chance(0.5)) push(ctx, { bytes: rng.bytes(rng.int(0, 60)), role: 'garbage' });
}

function randomBytes(ctx: Context): void {
  const { rng } = ctx;
  const data = rng.weighted<() => Buffer>([
    [3, () => rng.bytes(rng.int(1, 300))],
    [2, () => Buffer.concat([rng.bytes(rng.int(1, 200)), b(CRLF)])],
    [1, () => b(rng.printable(rng.int(1, 200)) + CRLF)],
    [1, () => Buffer.alloc(rng.int(1, 100), 0)],
    [1, () => b('\r'.repeat(rng.int(1, 50)))],
    [1, () => b('\n'.repeat(rng.int(1, 50)))],
    [1, () => b('\r\n'.repeat(rng.int(1, 30)))],
    [1, () => Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03])], // a TLS ClientHello's start
    [1, () => b('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
  ])();
  push(ctx, { bytes: scrub(data), role: 'garbage' });
}

/** An over-long command line in a known state: the reply must be 500 and the session must go on. */
function longLine(ctx: Context): void {
  const { rng } = ctx;
  const size = rng.weighted([[3, rng.int(4200, 9000)], [1, rng.int(20_000, 120_000)]] as const);
  const text = rng.weighted<() => string>([
    [2, () => `MAIL FROM:<${'a'.repeat(size)}@example.net>`],
    [1, () => `RCPT TO:<${'b'.repeat(size)}@example.com>`],
    [1, () => `NOOP ${'n'.repeat(size)}`],
    [1, () => `EHLO ${'h'.repeat(size)}`],
    [1, () => rng.word(size)],
  ])();
  push(ctx, { bytes: line('RSET\r\nEHLO fuzz.test'), role: 'sync', expect: 2, write: 'whole' });
  push(ctx, { bytes: line(text), role: 'command', expect: 1, check: 'longLine', write: rng.chance(0.8) ? 'whole' : 'chunks' });
  push(ctx, { bytes: line('NOOP'), role: 'command', expect: 1, check: 'longLineAfter', write: 'whole' });
}

/** Many commands in one write. */
function burst(ctx: Context): void {
  const { rng } = ctx;
  const parts: Buffer[] = [];
  let count = 0;
  let unknown = false;
  for (let n = rng.int(3, 30); n > 0; n--) {
    const { line: command, verb } = grammarCommand(rng, ctx.features);
    const end = lineEnd(rng);
    if (verb === 'STARTTLS' || verb === 'DATA' || verb === 'BDAT' || verb === 'AUTH' || end !== CRLF || command.includes(0x0a) || command.includes(0x0d)) unknown = true;
    parts.push(command, b(end));
    count++;
  }
  push(ctx, { bytes: scrub(Buffer.concat(parts)), role: unknown ? 'garbage' : 'command', ...(unknown ? {} : { expect: count }), write: rng.weighted([[6, 'whole'], [3, 'chunks'], [1, 'bytewise']] as const) });
}

function chatter(ctx: Context): void {
  const { rng } = ctx;
  push(ctx, { bytes: line(rng.pick(['NOOP', 'RSET', 'VRFY <postmaster>', 'HELP', 'noop', 'RSET'])), role: 'command', expect: 1 });
}

export function planSession(seed: number, session: number, features: ServerFeatures): SessionPlan {
  const rng = sessionRng(seed, session);
  const ctx: Context = { rng, seed, session, features, steps: [], transactions: [] };
  const flavor = rng.weighted([[25, 'valid'], [12, 'edgy'], [33, 'grammar'], [12, 'random'], [10, 'burst'], [5, 'longline'], [3, 'starttls']] as const);
  switch (flavor) {
    case 'valid':
      hello(ctx);
      for (let n = rng.weighted([[6, 1], [3, 2], [1, rng.int(3, 6)]] as const); n > 0; n--) {
        if (rng.chance(0.3)) chatter(ctx);
        transaction(ctx, 'valid');
      }
      break;
    case 'edgy':
      hello(ctx);
      for (let n = rng.int(1, 3); n > 0; n--) transaction(ctx, rng.chance(0.7) ? 'edgy' : 'valid');
      break;
    case 'grammar':
      if (rng.chance(0.8)) hello(ctx);
      for (let n = rng.int(2, 25); n > 0; n--) {
        rng.weighted<() => void>([
          [20, () => garbageCommand(ctx)],
          [2, () => randomBytes(ctx)],
          [2, () => transaction(ctx, rng.chance(0.8) ? 'valid' : 'edgy')],
          [1, () => chatter(ctx)],
          [0.5, () => longLine(ctx)],
        ])();
      }
      break;
    case 'random':
      if (rng.chance(0.5)) hello(ctx);
      for (let n = rng.int(1, 12); n > 0; n--) randomBytes(ctx);
      if (rng.chance(0.3)) transaction(ctx, 'valid');
      break;
    case 'burst':
      hello(ctx);
      for (let n = rng.int(1, 4); n > 0; n--) {
        burst(ctx);
        if (rng.chance(0.3)) transaction(ctx, 'valid');
      }
      break;
    case 'longline':
      hello(ctx);
      longLine(ctx);
      if (rng.chance(0.5)) transaction(ctx, 'valid');
      break;
    case 'starttls':
      hello(ctx);
      push(ctx, { bytes: line(mixCase(rng, 'STARTTLS')), role: 'command', expect: 1, check: 'starttls' });
      if (rng.chance(0.5)) push(ctx, { bytes: Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x03]), role: 'garbage' });
      transaction(ctx, 'valid');
      break;
  }
  const end = rng.weighted([[60, 'quit'], [15, 'end'], [25, 'destroy']] as const);
  if (end === 'quit') push(ctx, { bytes: line(rng.pick(['QUIT', 'quit', 'QUIT'])), role: 'quit', expect: 1 });
  let cut: SessionPlan['cut'];
  if (rng.chance(0.25) && ctx.steps.length > 0) {
    const step = rng.int(0, ctx.steps.length - 1);
    const length = ctx.steps[step]!.bytes.length;
    const offset = rng.weighted([[3, rng.int(0, length)], [1, 0], [1, length], [1, Math.max(0, length - 1)], [1, Math.max(0, length - 3)]] as const);
    cut = { step, offset, how: rng.chance(0.7) ? 'destroy' : 'end' };
  }
  return { seed, session, flavor, steps: ctx.steps, transactions: ctx.transactions, ...(cut ? { cut } : {}), end };
}
