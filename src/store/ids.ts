// Queue ids: 16 characters, Crockford base-32, time-ordered (10 characters of
// milliseconds, then 6 random), so ids sort roughly by receipt and never repeat
// across restarts or nodes.
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function newQueueId(now: number): string {
  let time = '';
  for (let value = now, i = 0; i < 10; i++, value = Math.floor(value / 32)) {
    time = ALPHABET[value % 32] + time;
  }
  const random = randomBytes(6);
  let tail = '';
  for (const byte of random) tail += ALPHABET[byte % 32];
  return time + tail;
}
