// Sessions of the web viewer: kept in memory on the server (a restart logs
// everyone out), named by a random id in an HttpOnly, SameSite=Strict cookie,
// each with its own CSRF token (synchronizer token) that every form posts back.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface Session {
  id: string;
  csrf: string;
  expiresAt: number;
  /** One message for the next page shown (the outcome of an action). */
  flash?: string;
}

export const COOKIE = 'sluice_session';
/** Idle time after which a session ends. */
const IDLE_MS = 8 * 60 * 60 * 1000;
const MAX_SESSIONS = 1000;

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Constant-time comparison of two secrets of any length. */
export const sameSecret = (given: string, expected: string) => timingSafeEqual(digest(given), digest(expected));

export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly now: () => number = Date.now) {}

  create(): Session {
    this.sweep();
    // the oldest sessions give way first, so memory stays bounded
    while (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const session: Session = { id: randomBytes(32).toString('base64url'), csrf: randomBytes(32).toString('base64url'), expiresAt: this.now() + IDLE_MS };
    this.sessions.set(session.id, session);
    return session;
  }

  /** The live session with this id, its expiry moved on; undefined for an unknown or expired one. */
  get(id: string | undefined): Session | undefined {
    if (!id) return undefined;
    const session = this.sessions.get(id);
    if (!session) return undefined;
    if (session.expiresAt <= this.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    session.expiresAt = this.now() + IDLE_MS;
    return session;
  }

  end(id: string): void {
    this.sessions.delete(id);
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, session] of this.sessions) if (session.expiresAt <= now) this.sessions.delete(id);
  }
}

export function cookieOf(header: string | undefined): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === COOKIE) return rest.join('=');
  }
  return undefined;
}

export const setCookie = (id: string) => `${COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict`;
export const clearCookie = () => `${COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
