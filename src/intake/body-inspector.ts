// Looks at a message body as it streams past, without keeping it: refuses
// bare LF, NUL and over-long lines (IN-5), and keeps the header section (up to
// a bound) to read Message-ID and Subject for QU-3.
import type { ReplyName } from './replies.js';

const CR = 13;
const LF = 10;
const MAX_HEADER_BYTES = 64 * 1024;

export class BodyInspector {
  problem: ReplyName | undefined;
  private lineLength = 0;
  private lastByte = -1;
  private readonly header = Buffer.allocUnsafe(MAX_HEADER_BYTES);
  private headerBytes = 0;
  private headerDone = false;

  constructor(private readonly maxLineLength: number) {}

  inspect(chunk: Buffer): void {
    this.collectHeader(chunk);
    if (this.problem) return;
    if (chunk.includes(0)) this.problem = 'nulOctet';
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

  private collectHeader(chunk: Buffer): void {
    if (this.headerDone) return;
    const searchFrom = Math.max(0, this.headerBytes - 3);
    this.headerBytes += chunk.copy(this.header, this.headerBytes);
    const end = this.header.subarray(0, this.headerBytes).indexOf('\r\n\r\n', searchFrom);
    const emptyHeader = this.headerBytes >= 2 && this.header[0] === CR && this.header[1] === LF;
    if (end !== -1 || emptyHeader || this.headerBytes === MAX_HEADER_BYTES) {
      this.headerBytes = emptyHeader ? 0 : end === -1 ? this.headerBytes : end + 2;
      this.headerDone = true;
    }
  }

  /** Unfolded value of the first header field with this name (case-insensitive), raw (RFC 2047 words undecoded). */
  headerField(name: string): string | undefined {
    const text = this.header.subarray(0, this.headerBytes).toString('utf8').replace(/\r\n[ \t]+/g, ' ');
    const wanted = name.toLowerCase() + ':';
    for (const line of text.split('\r\n')) {
      if (line.toLowerCase().startsWith(wanted)) return line.slice(wanted.length).trim();
    }
    return undefined;
  }
}
