// SMTP AUTH credentials check (IN-1) against `auth.users`: plain text or
// scrypt hashes, compared in constant time.
import { scryptSync, timingSafeEqual, createHash } from 'node:crypto';

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
