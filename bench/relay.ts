// The `relay` benchmark: accept → deliver to a local smtp-sink, timed until the sink has every
// accepted message (end to end), for Sluice and then for Postfix under the same load in the same
// run; the headline is the ratio of end-to-end msg/s (accepted msg/s is reported beside it).
import { measurePostfix, measureSluice, summary, type EndToEnd, type Measured, type RunSettings } from './measure.js';
import { comparedRunOptions, deliveryTimeoutOption, describeLoad, loadOptions, loadSettings, readOptions, storeOption } from './options.js';
import { benchPgUrl, postgresSettings, shownUrl, storesOf, type StoreName } from './postgres.js';
import type { BenchContext } from './run.js';
import { ratioOf } from './support.js';

/** Stage target: Sluice's end-to-end msg/s at least this many times Postfix's. */
const TARGET_RATIO = 1.5;
/** Issue 13: a single PostgreSQL node's end-to-end msg/s within 30 % of SQLite's (same run). */
const POSTGRES_TARGET = 0.7;

export const RELAY_OPTIONS = {
  ...loadOptions({ n: 20_000, sessions: 20, size: 5120 }),
  ...deliveryTimeoutOption,
  ...storeOption,
  ...comparedRunOptions,
};

export async function runRelay(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const values = readOptions(context, RELAY_OPTIONS);
  const stores = storesOf(context, values.store);
  const settings: RunSettings = { load: loadSettings(values), sink: true, endToEndTimeoutMs: values['delivery-timeout'] * 1000, cpuProfileDir: values['cpu-prof'] };
  context.progress(`N=${settings.load.messages} SESSIONS=${settings.load.sessions} SIZE=${settings.load.bodyBytes} store=${stores.join('+')}`);

  // each store in turn (one Sluice at a time, never sharing the CPU), then Postfix
  const measured = new Map<StoreName, Measured>();
  for (const store of stores) {
    const sluice = await measureSluice(context, store === 'sqlite' ? 'relay' : `relay-${store}`, { ...settings, store });
    report(context, `sluice (${store})`, sluice);
    measured.set(store, sluice);
  }
  const postfix = values['sluice-only'] ? { skipped: 'disabled (--sluice-only)' } : await measurePostfix(context, settings);
  if ('load' in postfix) report(context, 'postfix', postfix);
  else context.progress(`postfix skipped: ${postfix.skipped}`);

  const measuredPostfix = 'load' in postfix && postfix.endToEnd ? postfix : undefined;
  const first = measured.get(stores[0]!)!;
  const ratio = ratioOf(first.endToEnd?.perSecond, measuredPostfix?.endToEnd?.perSecond);
  if (ratio !== null) context.progress(`ratio sluice (${stores[0]})/postfix (end-to-end msg/s): ${ratio} (target >= ${TARGET_RATIO})`);
  const sqlite = measured.get('sqlite');
  const postgres = measured.get('postgres');
  const postgresPart = postgres
    ? {
        sluicePostgres: resultOf(postgres),
        postgresRatio: ratioOf(postgres.endToEnd?.perSecond, measuredPostfix?.endToEnd?.perSecond),
        postgresAcceptedRatio: ratioOf(postgres.load.acceptedPerSecond, measuredPostfix?.load.acceptedPerSecond),
        postgresServer: { url: shownUrl(benchPgUrl(context.env)), settings: await postgresSettings(benchPgUrl(context.env)) },
        ...(sqlite ? postgresAgainstSqlite(context, postgres, sqlite) : {}),
      }
    : {};
  return {
    load: describeLoad(settings.load),
    stores,
    // `sluice` is the first store measured (SQLite unless --store postgres), as before this option
    sluice: resultOf(first),
    ...(stores.length > 1 || stores[0] === 'postgres' ? postgresPart : {}),
    postfix: 'load' in postfix ? resultOf(postfix) : postfix,
    ratio,
    acceptedRatio: ratioOf(first.load.acceptedPerSecond, measuredPostfix?.load.acceptedPerSecond),
    target: TARGET_RATIO,
    meetsTarget: ratio === null ? null : ratio >= TARGET_RATIO,
    problems: [...[...measured.values()].flatMap((m) => m.problems), ...('load' in postfix ? postfix.problems : [])],
  };
}

/** PostgreSQL's end-to-end (and accepted) msg/s ÷ SQLite's, same run; the issue-13 target is ≥ 0.7. */
function postgresAgainstSqlite(context: BenchContext, postgres: Measured, sqlite: Measured): Record<string, unknown> {
  const postgresToSqlite = ratioOf(postgres.endToEnd?.perSecond, sqlite.endToEnd?.perSecond);
  if (postgresToSqlite !== null) context.progress(`ratio postgres/sqlite (end-to-end msg/s): ${postgresToSqlite} (target >= ${POSTGRES_TARGET})`);
  return {
    postgresToSqlite,
    postgresToSqliteAccepted: ratioOf(postgres.load.acceptedPerSecond, sqlite.load.acceptedPerSecond),
    postgresTarget: POSTGRES_TARGET,
    meetsPostgresTarget: postgresToSqlite === null ? null : postgresToSqlite >= POSTGRES_TARGET,
  };
}

function report(context: BenchContext, name: string, measured: Measured): void {
  context.progress(`${name}: ${summary(measured.load)}; ${endToEndText(measured.endToEnd)}`);
}

function endToEndText(endToEnd: EndToEnd | undefined): string {
  if (!endToEnd) return 'end to end not measured (no sink of ours to count)';
  return `end to end ${endToEnd.perSecond} msg/s (${endToEnd.delivered} at the sink after ${endToEnd.seconds} s${endToEnd.complete ? '' : ', INCOMPLETE'})`;
}

function resultOf(measured: Measured): Record<string, unknown> {
  const { load, endToEnd, details } = measured;
  return { acceptedPerSecond: load.acceptedPerSecond, endToEndPerSecond: endToEnd?.perSecond ?? null, accept: load, endToEnd: endToEnd ?? null, ...details };
}
