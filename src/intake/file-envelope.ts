// The envelope of a message that arrives as a file (IN-8): from the replay
// format's X-Sender / X-Receiver fields (Exchange's, and what `message export`
// writes), or, for the pickup directory, from From/Sender and To/Cc/Bcc. The
// fields that carried the envelope (and Bcc) are left out of the stored message.
import addressparser from 'nodemailer/lib/addressparser';
import type { NewRecipient, NotifyFlag } from '../store/types.js';

export class BadFile extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'BadFile';
  }
}

export interface HeaderField {
  /** Lower case. */
  name: string;
  /** Unfolded, trimmed. */
  value: string;
  /** The field's bytes as in the file, folded lines and line ends included. */
  raw: Buffer;
}

export interface FileEnvelope {
  mailFrom: string;
  recipients: NewRecipient[];
  dsnRet?: 'FULL' | 'HDRS';
  dsnEnvid?: string;
  /** The header fields to store: those that carried the envelope are gone. */
  kept: HeaderField[];
}

/** The fields of a header block (up to, not including, the empty line). */
export function headerFields(block: Buffer): HeaderField[] {
  const fields: HeaderField[] = [];
  let start = 0;
  while (start < block.length) {
    let end = block.indexOf(0x0a, start);
    end = end === -1 ? block.length : end + 1;
    const line = block.subarray(start, end);
    const last = fields[fields.length - 1];
    if ((line[0] === 0x20 || line[0] === 0x09) && last) {
      last.raw = Buffer.concat([last.raw, line]);
      last.value = `${last.value} ${line.toString('utf8').trim()}`;
    } else {
      const text = line.toString('utf8');
      const colon = text.indexOf(':');
      if (colon <= 0 || /\s/.test(text.slice(0, colon))) throw new BadFile(`not a header field: "${text.trim().slice(0, 80)}"`);
      fields.push({ name: text.slice(0, colon).toLowerCase(), value: text.slice(colon + 1).trim(), raw: line });
    }
    start = end;
  }
  return fields;
}

const ADDRESS = /^[^\s@<>]+@[^\s@<>]+$/;

function mailbox(text: string, what: string, allowNull = false): string {
  const address = text.replace(/^<|>$/g, '');
  if (address === '' && allowNull) return '';
  if (!ADDRESS.test(address)) throw new BadFile(`${what}: "${text}" is not an address`);
  return address;
}

/** `<address> NAME=value ...` as in MAIL FROM / RCPT TO. */
function withParameters(value: string): { address: string; parameters: Map<string, string> } {
  const [address = '', ...rest] = value.split(/\s+/);
  const parameters = new Map<string, string>();
  for (const parameter of rest) {
    const equals = parameter.indexOf('=');
    if (equals <= 0) throw new BadFile(`bad envelope parameter "${parameter}"`);
    parameters.set(parameter.slice(0, equals).toUpperCase(), parameter.slice(equals + 1));
  }
  return { address, parameters };
}

const NOTIFY = new Set(['NEVER', 'SUCCESS', 'FAILURE', 'DELAY']);

/** Replay: X-Sender and X-Receiver come first; the message follows them. */
export function replayEnvelope(fields: HeaderField[]): FileEnvelope {
  const count = fields.findIndex((f) => f.name !== 'x-sender' && f.name !== 'x-receiver');
  const envelope = fields.slice(0, count === -1 ? fields.length : count);
  const senders = envelope.filter((f) => f.name === 'x-sender');
  if (senders.length !== 1) throw new BadFile(`the file must start with one X-Sender field (found ${senders.length})`);
  const sender = withParameters(senders[0]!.value);
  const ret = sender.parameters.get('RET');
  if (ret !== undefined && ret !== 'FULL' && ret !== 'HDRS') throw new BadFile(`X-Sender: RET=${ret} is neither FULL nor HDRS`);
  const recipients = envelope
    .filter((f) => f.name === 'x-receiver')
    .map((f): NewRecipient => {
      const { address, parameters } = withParameters(f.value);
      const notify = parameters.get('NOTIFY')?.split(',');
      if (notify && !notify.every((n) => NOTIFY.has(n))) throw new BadFile(`X-Receiver: NOTIFY=${notify.join(',')} is not valid`);
      return {
        address: mailbox(address, 'X-Receiver'),
        ...(notify ? { notify: notify as NotifyFlag[] } : {}),
        ...(parameters.has('ORCPT') ? { orcpt: parameters.get('ORCPT')! } : {}),
      };
    });
  if (recipients.length === 0) throw new BadFile('no X-Receiver field after X-Sender');
  return {
    mailFrom: mailbox(sender.address, 'X-Sender', true),
    recipients,
    ...(ret ? { dsnRet: ret } : {}),
    ...(sender.parameters.has('ENVID') ? { dsnEnvid: sender.parameters.get('ENVID')! } : {}),
    kept: fields.slice(envelope.length),
  };
}

function addresses(fields: HeaderField[], names: string[]): string[] {
  return fields
    .filter((f) => names.includes(f.name))
    .flatMap((f) => addressparser(f.value, { flatten: true }))
    .map((a) => a.address ?? '')
    .filter((a) => a !== '');
}

/** Pickup: the sender from Sender or From, the recipients from To, Cc and Bcc; Bcc is not stored. */
export function pickupEnvelope(fields: HeaderField[]): FileEnvelope {
  const sender = addresses(fields, ['sender'])[0] ?? addresses(fields, ['from'])[0];
  if (!sender) throw new BadFile('no sender: the file has no From (or Sender) address');
  const recipients = [...new Set(addresses(fields, ['to', 'cc', 'bcc']).map((a) => mailbox(a, 'recipient')))];
  if (recipients.length === 0) throw new BadFile('no recipients: the file has no To, Cc or Bcc address');
  return { mailFrom: mailbox(sender, 'From'), recipients: recipients.map((address) => ({ address })), kept: fields.filter((f) => f.name !== 'bcc') };
}
