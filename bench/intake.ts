// The `intake` benchmark: how fast Sluice accepts mail (its 250 comes after the fsync) and how
// long each 250 takes, then Postfix under the very same load in the same run, one after the
// other so they never share the CPU; the headline is the ratio of accepted msg/s. Both relay
// everything to a local smtp-sink meanwhile (or, with --no-sink, to a closed port: they defer).
import { measurePostfix, measureSluice, summary, type Measured, type RunSettings } from './measure.js';
import { comparedRunOptions, describeLoad, loadOptions, loadSettings, readOptions, toggle } from './options.js';
import type { BenchContext } from './run.js';
import { ratioOf } from './support.js';

/** Stage target: Sluice accepts at least this many times as many msg/s as Postfix. */
const TARGET_RATIO = 2;

export const INTAKE_OPTIONS = {
  ...loadOptions({ n: 20_000, sessions: 20, size: 5120 }),
  'no-sink': toggle('SINK', '0'),
  ...comparedRunOptions,
};

export async function runIntake(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const values = readOptions(context, INTAKE_OPTIONS);
  const settings: RunSettings = { load: loadSettings(values), sink: !values['no-sink'], endToEndTimeoutMs: 0, cpuProfileDir: values['cpu-prof'] };
  const { messages, sessions, bodyBytes, pipelining } = settings.load;
  context.progress(`N=${messages} SESSIONS=${sessions} SIZE=${bodyBytes} pipelining=${pipelining}`);

  const sluice = await measureSluice(context, 'intake', settings);
  context.progress(`sluice: ${summary(sluice.load)}`);
  const postfix = values['sluice-only'] ? { skipped: 'disabled (--sluice-only)' } : await measurePostfix(context, settings);
  if ('load' in postfix) context.progress(`postfix: ${summary(postfix.load)}`);
  else context.progress(`postfix skipped: ${postfix.skipped}`);

  const ratio = 'load' in postfix ? ratioOf(sluice.load.acceptedPerSecond, postfix.load.acceptedPerSecond) : null;
  if (ratio !== null) context.progress(`ratio sluice/postfix (accepted msg/s): ${ratio} (target >= ${TARGET_RATIO})`);
  return {
    load: describeLoad(settings.load),
    sluice: flatten(sluice),
    postfix: 'load' in postfix ? flatten(postfix) : postfix,
    ratio,
    target: TARGET_RATIO,
    meetsTarget: ratio === null ? null : ratio >= TARGET_RATIO,
    problems: [...sluice.problems, ...('load' in postfix ? postfix.problems : [])],
  };
}

function flatten(measured: Measured): Record<string, unknown> {
  return { ...measured.load, ...measured.details };
}
