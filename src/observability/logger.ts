// Structured logs (MG-5): JSON lines on stdout through pino. Every part gets a
// child logger named after its module, so `jq 'select(.module=="intake")'` works.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, destination: NodeJS.WritableStream = process.stdout): Logger {
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
