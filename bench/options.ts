// Flags and environment variables of the benchmarks, declared once per benchmark as a table:
// the dispatcher prints the table as usage, and readOptions turns it into typed values (a flag
// wins over its environment variable, which wins over the default). Also the shared load options.
import { parseArgs } from 'node:util';
import type { BenchContext } from './run.js';
import type { LoadOptions } from './smtp-load.js';

export interface IntegerOption {
  kind: 'integer';
  env: string;
  default: number;
}
export interface SwitchOption {
  kind: 'switch';
  env: string;
  /** The value of `env` that turns the switch on, e.g. "0" for SINK=0 and --no-sink. */
  on: string;
}
export interface TextOption {
  kind: 'text';
  env: string;
}
export type OptionSpec = IntegerOption | SwitchOption | TextOption;
export type OptionSpecs = Record<string, OptionSpec>;
export type OptionValues<S extends OptionSpecs> = {
  [K in keyof S]: S[K] extends IntegerOption ? number : S[K] extends SwitchOption ? boolean : string | undefined;
};

export const integer = (env: string, defaultValue: number): IntegerOption => ({ kind: 'integer', env, default: defaultValue });
export const toggle = (env: string, on: string): SwitchOption => ({ kind: 'switch', env, on });
export const text = (env: string): TextOption => ({ kind: 'text', env });

/** One usage line: `[--n N] [--no-sink] …` (the placeholder is the environment variable's name). */
export function usageOf(specs: OptionSpecs): string {
  return Object.entries(specs)
    .map(([name, spec]) => (spec.kind === 'switch' ? `[--${name}]` : `[--${name} ${spec.env}]`))
    .join(' ');
}

export function readOptions<S extends OptionSpecs>(context: BenchContext, specs: S): OptionValues<S> {
  const flags = parseFlags(context, specs);
  const values: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(specs)) values[name] = valueOf(context, name, spec, flags[name]);
  return values as OptionValues<S>;
}

function parseFlags(context: BenchContext, specs: OptionSpecs): Record<string, string | boolean | undefined> {
  const options = Object.fromEntries(Object.entries(specs).map(([name, spec]) => [name, { type: spec.kind === 'switch' ? 'boolean' : 'string' } as const]));
  try {
    return parseArgs({ args: context.args, options, strict: true }).values as Record<string, string | boolean | undefined>;
  } catch (error) {
    throw context.usageError((error as Error).message);
  }
}

function valueOf(context: BenchContext, name: string, spec: OptionSpec, flag: string | boolean | undefined): unknown {
  const fromEnv = context.env[spec.env];
  switch (spec.kind) {
    case 'switch':
      return flag === true || fromEnv === spec.on;
    case 'text':
      return typeof flag === 'string' ? flag : fromEnv;
    case 'integer':
      return positiveInteger(context, `--${name} (${spec.env})`, typeof flag === 'string' ? flag : (fromEnv ?? String(spec.default)));
  }
}

function positiveInteger(context: BenchContext, name: string, value: string): number {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1) throw context.usageError(`${name} must be a positive integer, got "${value}"`);
  return number;
}

/** The load every SMTP benchmark sends: how many messages, over how many sessions, how big. */
export type LoadSettings = Omit<LoadOptions, 'host' | 'port' | 'signal'>;

/** The load options with a benchmark's defaults; `prefix` names its environment variables (SCALE_N…). */
export function loadOptions(defaults: { n: number; sessions: number; size: number }, prefix = '') {
  return {
    n: integer(`${prefix}N`, defaults.n),
    sessions: integer(`${prefix}SESSIONS`, defaults.sessions),
    size: integer(`${prefix}SIZE`, defaults.size),
    'reply-timeout': integer('REPLY_TIMEOUT_S', 30),
    'no-pipelining': toggle('PIPELINING', '0'),
  };
}

/** How long a benchmark waits for every message to reach the sink. */
export const deliveryTimeoutOption = { 'delivery-timeout': integer('DELIVERY_TIMEOUT_S', 600) };

/** Options of the benchmarks that compare Sluice with Postfix in one run. */
/** Sluice's queue store in `intake` and `relay`: sqlite (default), postgres (a fresh schema in SLUICE_BENCH_PG_URL), or both, each measured in turn before Postfix. */
export const storeOption = { store: text('SLUICE_BENCH_STORE') };

export const comparedRunOptions = {
  'sluice-only': toggle('SLUICE_ONLY', '1'),
  'cpu-prof': text('SLUICE_CPU_PROF'),
};

export function loadSettings(values: OptionValues<ReturnType<typeof loadOptions>>): LoadSettings {
  return {
    messages: values.n,
    sessions: values.sessions,
    bodyBytes: values.size,
    replyTimeoutMs: values['reply-timeout'] * 1000,
    pipelining: !values['no-pipelining'],
  };
}

/** The load as it goes into a result. */
export function describeLoad(load: LoadSettings): Record<string, unknown> {
  const { messages, sessions, bodyBytes, pipelining, replyTimeoutMs } = load;
  return { messages, sessions, bodyBytes, pipelining, replyTimeoutMs };
}
