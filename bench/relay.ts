// The `relay` benchmark: accept → deliver to a local smtp-sink, timed until the sink has every
// accepted message (end to end), for Sluice and then for Postfix under the same load in the same
// run; the headline is the ratio of end-to-end msg/s (accepted msg/s is reported beside it).
import { measurePostfix, measureSluice, summary, type EndToEnd, type Measured, type RunSettings } from './measure.js';
import { comparedRunOptions, deliveryTimeoutOption, describeLoad, loadOptions, loadSettings, readOptions } from './options.js';
import type { BenchContext } from './run.js';
import { ratioOf } from './support.js';

/** Stage target: Sluice's end-to-end msg/s at least this many times Postfix's. */
const TARGET_RATIO = 1.5;

export const RELAY_OPTIONS = {
  ...loadOptions({ n: 20_000, sessions: 20, size: 5120 }),
  ...deliveryTimeoutOption,
  ...comparedRunOptions,
};

export async function runRelay(context: BenchContext): Promise<Record<string, unknown> & { problems: string[] }> {
  const values = readOptions(context, RELAY_OPTIONS);
  const settings: RunSettings = { load: loadSettings(values), sink: true, endToEndTimeoutMs: values['delivery-timeout'] * 1000, cpuProfileDir: values['cpu-prof'] };
  context.progress(`N=${settings.load.messages} SESSIONS=${settings.load.sessions} SIZE=${settings.load.bodyBytes}`);

  const sluice = await measureSluice(context, 'relay', settings);
  report(context, 'sluice', sluice);
  const postfix = values['sluice-only'] ? { skipped: 'disabled (--sluice-only)' } : await measurePostfix(context, settings);
  if ('load' in postfix) report(context, 'postfix', postfix);
  else context.progress(`postfix skipped: ${postfix.skipped}`);

  const measuredPostfix = 'load' in postfix && postfix.endToEnd ? postfix : undefined;
  const ratio = ratioOf(sluice.endToEnd?.perSecond, measuredPostfix?.endToEnd?.perSecond);
  if (ratio !== null) context.progress(`ratio sluice/postfix (end-to-end msg/s): ${ratio} (target >= ${TARGET_RATIO})`);
  return {
    load: describeLoad(settings.load),
    sluice: resultOf(sluice),
    postfix: 'load' in postfix ? resultOf(postfix) : postfix,
    ratio,
    acceptedRatio: ratioOf(sluice.load.acceptedPerSecond, measuredPostfix?.load.acceptedPerSecond),
    target: TARGET_RATIO,
    meetsTarget: ratio === null ? null : ratio >= TARGET_RATIO,
    problems: [...sluice.problems, ...('load' in postfix ? postfix.problems : [])],
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
