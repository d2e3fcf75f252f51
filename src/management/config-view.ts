// The running configuration as an operator may see it (MG-4): every secret
// (passwords, the management token, credentials in URLs) replaced.
export const REDACTED = '(redacted)';

const SECRET_KEY = /password|token|secret|passphrase/i;

export function redactConfig(value: unknown, key = ''): unknown {
  if (value === null || value === undefined) return value;
  if (SECRET_KEY.test(key) && (typeof value === 'string' || typeof value === 'number')) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => redactConfig(item));
  if (typeof value === 'object') return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, redactConfig(v, k)]));
  // a URL with a password in it (postgres://user:secret@host/db)
  if (typeof value === 'string') return value.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*):[^@/\s]*@/i, `$1:${REDACTED}@`);
  return value;
}
