// The `intake` benchmark: how fast Sluice accepts mail (its 250 comes after the fsync) and how
// long each 250 takes, then Postfix under the very same load in the same run, one after the
// other so they never share the CPU; the headline is the ratio of accepted msg/s. Both relay
// everything to a local smtp-sink meanwhile (or, with --no-sink, to a closed port: they defer).
import { measurePostfix, measureSluice, summary, type Measured, type RunSettings } from './measure.js';
import { comparedRunOptions, describeLoad, loadOptions, loadSettings, readOptions, storeOption, toggle } from './options.js';
import { storesOf, type StoreName } from './postgres.js';
import type { BenchContext } from './run.js';
import { ratioOf } from './support.js';

/** Stage target: Sluice accepts at least this many times as many msg/s as Postfix. */
const TARGET_RATIO = 2;

export const INTAKE_OPTIONS = {
  ...loadOptions({ n: 20_000, sessions: 20, size: 5120 }),
  'no-sink': toggle('SINK', '0'),
  ...storeOption,
  ...comparedRunOptions,
};

export async function runIntake(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const values = readOptions(context, INTAKE_OPTIONS);
  const stores = storesOf(context, values.store);
  const settings: RunSettings = { load: loadSettings(values), sink: !values['no-sink'], endToEndTimeoutMs: 0, cpuProfileDir: values['cpu-prof'] };
  const { messages, sessions, bodyBytes, pipelining } = settings.load;
  context.progress(`N=${messages} SESSIONS=${sessions} SIZE=${bodyBytes} pipelining=${pipelining} store=${stores.join('+')}`);

  const measured = new Map<StoreName, Measured>();
  for (const store of stores) {
    const result = await measureSluice(context, store === 'sqlite' ? 'intake' : `intake-${store}`, { ...settings, store });
    context.progress(`sluice (${store}): ${summary(result.load)}`);
    measured.set(store, result);
  }
  const sluice = measured.get(stores[0]!)!;
  const postgres = stores.length > 1 ? measured.get('postgres') : undefined;
  const postfix = values['sluice-only'] ? { skipped: 'disabled (--sluice-only)' } : await measurePostfix(context, settings);
  if ('load' in postfix) context.progress(`postfix: ${summary(postfix.load)}`);
  else context.progress(`postfix skipped: ${postfix.skipped}`);

  const ratio = 'load' in postfix ? ratioOf(sluice.load.acceptedPerSecond, postfix.load.acceptedPerSecond) : null;
  if (ratio !== null) context.progress(`ratio sluice/postfix (accepted msg/s): ${ratio} (target >= ${TARGET_RATIO})`);
  return {
    load: describeLoad(settings.load),
    stores,
    sluice: flatten(sluice),
    ...(postgres ? { sluicePostgres: flatten(postgres), postgresToSqliteAccepted: ratioOf(postgres.load.acceptedPerSecond, sluice.load.acceptedPerSecond) } : {}),
    postfix: 'load' in postfix ? flatten(postfix) : postfix,
    ratio,
    target: TARGET_RATIO,
    meetsTarget: ratio === null ? null : ratio >= TARGET_RATIO,
    problems: [...[...measured.values()].flatMap((m) => m.problems), ...('load' in postfix ? postfix.problems : [])],
  };
}

function flatten(measured: Measured): Record<string, unknown> {
  return { ...measured.load, ...measured.details };
}
