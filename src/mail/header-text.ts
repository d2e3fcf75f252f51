// Header text as people read it: RFC 2047 encoded words (=?UTF-8?B?...?=,
// =?ISO-8859-1?Q?...?=) decoded by libmime, which knows the charsets. The
// Subject is decoded when a message is accepted, so filters match what the
// operator sees, and again when it is shown (messages stored by an earlier
// Sluice kept the raw text); decoding text without encoded words changes nothing.
import libmime from 'libmime';

/** The decoded text; the text as given when it cannot be decoded (an unknown charset, a broken word). */
export function decodeHeaderText(raw: string): string;
export function decodeHeaderText(raw: string | undefined): string | undefined;
export function decodeHeaderText(raw: string | null): string | null;
export function decodeHeaderText(raw: string | null | undefined): string | null | undefined {
  if (raw === null || raw === undefined || !raw.includes('=?')) return raw;
  try {
    return libmime.decodeWords(raw);
  } catch {
    return raw;
  }
}
