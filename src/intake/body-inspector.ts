// Looks at a message body as it streams past, without keeping it: refuses
// bare LF, bare CR, NUL and over-long lines (IN-5), and keeps the header section (up to
// a bound) to read Message-ID and Subject for QU-3.
import type { ReplyName } from './replies.js';

const CR = 13;
const LF = 10;
const MAX_HEADER_BYTES = 64 * 1024;

export class BodyInspector {
  problem: ReplyName | undefined;
  private lineLength = 0;
  private lastByte = -1;
  private headerPieces: Buffer[] = [];
  private headerBytes = 0;
  /** The last octets seen, starting as CRLF: a body that opens with CRLF has no header. */
  private headerTail = Buffer.from('\r\n');
  private headerDone = false;

  constructor(private readonly maxLineLength: number) {}

  inspect(chunk: Buffer): void {
    this.collectHeader(chunk);
    if (this.problem) return;
    if (chunk.includes(0)) this.problem = 'nulOctet';
    this.findBareCr(chunk);
    let lineStart = 0;
    for (let lf = chunk.indexOf(LF); lf !== -1; lf = chunk.indexOf(LF, lf + 1)) {
      const previous = lf > 0 ? chunk[lf - 1] : this.lastByte;
      if (previous !== CR) this.problem ??= 'bareLf';
      const length = this.lineLength + (lf - lineStart) - 1;
      if (length > this.maxLineLength) this.problem ??= 'lineTooLong';
      this.lineLength = 0;
      lineStart = lf + 1;
    }
    this.lineLength += chunk.length - lineStart;
    if (this.lineLength > this.maxLineLength + 1) this.problem ??= 'lineTooLong';
    this.lastByte = chunk.length > 0 ? chunk[chunk.length - 1]! : this.lastByte;
  }

  /** A CR not followed by LF: the next hop would see a line end where the sender wrote none (SMTP smuggling). */
  private findBareCr(chunk: Buffer): void {
    if (this.lastByte === CR && chunk.length > 0 && chunk[0] !== LF) this.problem ??= 'bareCr';
    for (let cr = chunk.indexOf(CR); cr !== -1 && cr < chunk.length - 1; cr = chunk.indexOf(CR, cr + 1)) {
      if (chunk[cr + 1] !== LF) {
        this.problem ??= 'bareCr';
        return;
      }
    }
  }

  private collectHeader(chunk: Buffer): void {
    if (this.headerDone) return;
    // the blank line may straddle chunks: search the new piece with the octets before it
    const piece = chunk.subarray(0, MAX_HEADER_BYTES - this.headerBytes);
    const window = Buffer.concat([this.headerTail, piece]);
    const end = window.indexOf('\r\n\r\n');
    const keep = end === -1 ? piece : piece.subarray(0, Math.max(0, end + 2 - this.headerTail.length));
    this.headerPieces.push(keep);
    this.headerBytes += keep.length;
    this.headerTail = window.subarray(-3);
    this.headerDone = end !== -1 || this.headerBytes >= MAX_HEADER_BYTES;
  }

  /** Unfolded value of the first header field with this name (case-insensitive), raw (RFC 2047 words undecoded). */
  headerField(name: string): string | undefined {
    const text = Buffer.concat(this.headerPieces).toString('utf8').replace(/\r\n[ \t]+/g, ' ');
    const wanted = name.toLowerCase() + ':';
    for (const line of text.split('\r\n')) {
      if (line.toLowerCase().startsWith(wanted)) return line.slice(wanted.length).trim();
    }
    return undefined;
  }
}
