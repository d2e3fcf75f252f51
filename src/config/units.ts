// Sizes ("35MB") and durations ("72h", "5m", "1s") as written in sluice.yaml,
// parsed in one place. Sizes are binary (1KB = 1024 bytes), as Exchange and
// the ESA count them; a bare number is bytes. A bare number duration is seconds.

const SIZE_UNITS: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export type ParseResult = { ok: true; value: number } | { ok: false; error: string };

export function parseSize(input: string | number): ParseResult {
  if (typeof input === 'number') {
    return Number.isSafeInteger(input) && input >= 0 ? { ok: true, value: input } : { ok: false, error: `size must be a whole number of bytes, got ${input}` };
  }
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(input);
  const factor = match ? SIZE_UNITS[(match[2] || 'B').toUpperCase()] : undefined;
  if (!match || factor === undefined) {
    return { ok: false, error: `invalid size "${input}" (expected e.g. 512KB, 35MB, 10GB)` };
  }
  return { ok: true, value: Math.round(Number(match[1]) * factor) };
}

/** A duration longer than zero: every duration of the config is a timeout, an interval or an age. */
export function parseDuration(input: string | number): ParseResult {
  if (typeof input === 'number') {
    return Number.isFinite(input) && input > 0 ? { ok: true, value: Math.round(input * 1000) } : { ok: false, error: `duration must be a number of seconds above 0, got ${input}` };
  }
  if (/^\s*-/.test(input)) return { ok: false, error: `duration "${input}" is negative; it must be longer than 0` };
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(input);
  if (!match) {
    return { ok: false, error: `invalid duration "${input}" (expected e.g. 500ms, 30s, 5m, 72h, 2d)` };
  }
  const value = Math.round(Number(match[1]) * DURATION_UNITS[match[2]!]!);
  return value > 0 ? { ok: true, value } : { ok: false, error: `duration "${input}" is zero; it must be longer than 0` };
}

/** host:port or [v6]:port; port 0 asks the OS for a free port. */
export function parseListenAddress(input: string): { ok: true; host: string; port: number } | { ok: false; error: string } {
  const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(-?\d+)$/.exec(input.trim());
  if (!match) return { ok: false, error: `invalid address "${input}" (expected host:port, e.g. 0.0.0.0:25 or [::1]:2525)` };
  const port = Number(match[3]);
  if (port < 0 || port > 65535) return { ok: false, error: `port ${match[3]} of "${input}" is out of range: a port is 1 to 65535 (0 picks a free one)` };
  return { ok: true, host: (match[1] ?? match[2])!, port };
}
