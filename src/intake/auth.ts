// SMTP AUTH credentials check (IN-1) against `auth.users`: plain text or
// scrypt hashes, compared in constant time.
import { createHash, randomBytes, scrypt, scryptSync, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

export interface UserEntry {
  username: string;
  password: string;
}

const SCRYPT = /^scrypt\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;

export function createAuthenticator(users: UserEntry[]): (username: string, password: string) => boolean {
  const byName = new Map(users.map((u) => [u.username, u.password]));
  return (username, password) => {
    const stored = byName.get(username);
    if (stored === undefined) return false;
    const scrypt = SCRYPT.exec(stored);
    if (scrypt) {
      const expected = Buffer.from(scrypt[2]!, 'base64');
      const actual = scryptSync(password, Buffer.from(scrypt[1]!, 'base64'), expected.length);
      return timingSafeEqual(actual, expected);
    }
    // digests make the lengths equal, as timingSafeEqual requires
    const digest = (value: string) => createHash('sha256').update(value).digest();
    return timingSafeEqual(digest(password), digest(stored));
  };
}

/** A `scrypt$salt$hash` entry for `auth.users` (what `sluice passwd` prints). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = (await promisify(scrypt)(password, salt, 64)) as Buffer;
  return `scrypt$${salt.toString('base64')}$${hash.toString('base64')}`;
}
