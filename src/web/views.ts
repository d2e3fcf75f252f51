// The pages of the web viewer, rendered on the server. Every value is escaped
// by the html template; the pages need no script of their own but htmx (the
// queue table polls) and a select-all checkbox.
import type { ListenerView } from '../management/listeners.js';
import type { MessageView } from '../management/messages.js';
import type { QueueView } from '../management/queues.js';
import type { ReloadPlan } from '../management/reconfigure.js';
import type { TrackedEvent } from '../observability/tracking.js';
import { html, type Html } from './html.js';

export type Section = 'queues' | 'messages' | 'listeners' | 'config' | 'none';

export interface PageContext {
  csrf: string;
  flash?: { text: string; bad: boolean } | undefined;
}

const NAV: Array<[Exclude<Section, 'none'>, string, string]> = [
  ['queues', '/ui/queues', 'Queues'],
  ['messages', '/ui/messages', 'Messages'],
  ['listeners', '/ui/listeners', 'Listeners'],
  ['config', '/ui/config', 'Configuration'],
];

function document(title: string, body: Html): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="htmx-config" content='{"includeIndicatorStyles":false}'>
<title>${title} · Sluice</title>
<link rel="stylesheet" href="/ui/static/app.css">
<script src="/ui/static/htmx.min.js" defer></script>
<script src="/ui/static/app.js" defer></script>
</head>
<body>
${body}
</body>
</html>`.text;
}

export const csrfField = (csrf: string) => html`<input type="hidden" name="csrf" value="${csrf}">`;

export function page(section: Section, title: string, context: PageContext, content: Html): string {
  const flash = context.flash ? html`<div class="flash${context.flash.bad ? ' bad' : ''}" role="status">${context.flash.text}</div>` : '';
  return document(
    title,
    html`<header>
<span class="brand">Sluice</span>
<nav aria-label="Main">${NAV.map(([key, href, label]) => html`<a href="${href}"${key === section ? html` aria-current="page"` : ''}>${label}</a>`)}</nav>
<form method="post" action="/ui/logout">${csrfField(context.csrf)}<button type="submit">Log out</button></form>
</header>
<main>
${flash}
${content}
</main>`,
  );
}

export function loginPage(state: 'new' | 'failed' | 'out'): string {
  const note =
    state === 'failed'
      ? html`<div class="flash bad" role="alert">Login failed.</div>`
      : state === 'out'
        ? html`<div class="flash" role="status">You are logged out.</div>`
        : '';
  return document(
    'Log in',
    html`<main><form class="login" method="post" action="/ui/login">
<h1>Sluice</h1>
${note}
<label for="token">Management token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
<button type="submit" class="primary">Log in</button>
</form></main>`,
  );
}

const when = (iso: string | null) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');
const status = (value: string) => html`<span class="status-${value}">${value}</span>`;

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// ---- queues

export type Samples = ReadonlyArray<{ at: number; depth: number; delivered: number }>;

export function queueTable(queues: QueueView[], csrf: string, samples: Samples): Html {
  const rows = queues.map(
    (q) => html`<tr>
<th scope="row">${q.Identity}</th><td>${q.DeliveryType}</td><td>${status(q.Status)}</td><td class="num">${q.MessageCount}</td><td>${when(q.NextRetryTime)}</td><td class="err">${q.LastError ?? ''}</td>
<td><form class="actions" method="post" action="/ui/queues/action">${csrfField(csrf)}<input type="hidden" name="identity" value="${q.Identity}">
<button name="action" value="suspend">Suspend</button><button name="action" value="resume">Resume</button><button name="action" value="retry">Retry</button><button name="action" value="resubmit">Resubmit</button>
</form></td></tr>`,
  );
  // the chart ends at the depth this table shows, not at the last sample
  const live = [...samples.slice(-119), { at: Date.now(), depth: queues.reduce((sum, q) => sum + q.MessageCount, 0), delivered: 0 }];
  // polls while the keyboard focus is elsewhere, so a refresh never takes the focus away from a button
  return html`<div id="queues" hx-get="/ui/queues/table" hx-trigger="every 2s [!this.contains(document.activeElement)]" hx-swap="outerHTML">
${queueChart(live)}
<div class="table-wrap"><table>
<caption>Refreshed every 2 seconds. ${queues.length} queues.</caption>
<thead><tr><th scope="col">Identity</th><th scope="col">DeliveryType</th><th scope="col">Status</th><th scope="col">MessageCount</th><th scope="col">NextRetryTime</th><th scope="col">LastError</th><th scope="col">Actions</th></tr></thead>
<tbody>${rows}</tbody>
</table></div></div>`;
}

export const queuesPage = (queues: QueueView[], samples: Samples, context: PageContext) =>
  page('queues', 'Queues', context, html`<h1>Queues</h1>${queueTable(queues, context.csrf, samples)}`);

// ---- messages

export interface FilterProblem {
  message: string;
  column: number;
}

export const MESSAGE_ACTIONS = [
  ['suspend', 'Suspend'],
  ['resume', 'Resume'],
  ['remove', 'Remove'],
  ['remove-ndr', 'Remove with NDR'],
  ['retry', 'Retry'],
  ['export', 'Export'],
] as const;
export type BulkAction = (typeof MESSAGE_ACTIONS)[number][0];

const pageLink = (filter: string, after?: string) => {
  const query = new URLSearchParams();
  if (filter) query.set('filter', filter);
  if (after) query.set('after', after);
  const text = query.toString();
  return `/ui/messages${text ? `?${text}` : ''}`;
};

export function messagesPage(
  input: { filter: string; after: string | undefined; messages: MessageView[]; next: string | null; problem?: FilterProblem },
  context: PageContext,
): string {
  const { filter, problem } = input;
  const filterProblem = problem
    ? html`<div class="problem" id="filter-error" role="alert"><strong>Bad filter at column ${problem.column}:</strong> ${problem.message}
<pre aria-hidden="true"><code>${filter}
${' '.repeat(Math.max(0, problem.column - 1))}^</code></pre></div>`
    : '';
  const rows = input.messages.map(
    (m) => html`<tr>
<td><input type="checkbox" name="id" value="${m.Identity}" aria-label="Select ${m.Identity}"></td>
<td><a href="/ui/message?identity=${encodeURIComponent(m.Identity)}">${m.Identity}</a></td><td>${status(m.Status)}</td><td class="wrap">${m.FromAddress || '<>'}</td>
<td class="wrap">${m.Recipients.map((r) => r.Address).join(', ')}</td><td class="wrap">${m.Subject ?? ''}</td><td class="num">${size(m.Size)}</td>
<td>${when(m.DateReceived)}</td><td class="num">${m.RetryCount}</td><td class="err">${m.LastError ?? ''}</td></tr>`,
  );
  const pager = html`<nav class="pager" aria-label="Pages">
${input.after ? html`<a href="${pageLink(filter)}">First page</a>` : ''}
${input.next ? html`<a href="${pageLink(filter, input.next)}">Next page</a>` : ''}
<span class="muted">${input.messages.length} shown${input.next ? ', more follow' : ''}</span></nav>`;
  return page(
    'messages',
    'Messages',
    context,
    html`<h1>Messages</h1>
<form class="filter" method="get" action="/ui/messages" role="search">
<div class="field"><label for="filter">Filter</label>
<input type="text" id="filter" name="filter" value="${filter}" placeholder='{Status -eq "Retry" -and FromAddress -like "*@example.net"}'${problem ? html` aria-invalid="true" aria-describedby="filter-error"` : ''}></div>
<button type="submit">Apply</button>
</form>
${filterProblem}
${
  problem
    ? ''
    : html`<form method="post" action="/ui/messages/confirm">
${csrfField(context.csrf)}<input type="hidden" name="filter" value="${filter}">
<div class="bulk">
<fieldset><legend>Act on</legend>
<label><input type="radio" name="scope" value="selected" checked> Selected rows</label>
<label><input type="radio" name="scope" value="all"> All that match the filter</label>
</fieldset>
<div class="actions">${MESSAGE_ACTIONS.map(([value, label]) => html`<button name="action" value="${value}"${value.startsWith('remove') ? html` class="danger"` : ''}>${label}</button>`)}</div>
</div>
<div class="table-wrap"><table>
<thead><tr><th scope="col"><input type="checkbox" data-select-all aria-label="Select all on this page"></th><th scope="col">Identity</th><th scope="col">Status</th><th scope="col">From</th><th scope="col">Recipients</th><th scope="col">Subject</th><th scope="col">Size</th><th scope="col">DateReceived</th><th scope="col">RetryCount</th><th scope="col">LastError</th></tr></thead>
<tbody>${rows}</tbody>
</table></div>
</form>
${pager}`
}`,
  );
}

export const ACTION_WORDS: Record<BulkAction, string> = {
  suspend: 'Suspend',
  resume: 'Resume',
  remove: 'Remove',
  'remove-ndr': 'Remove with a non-delivery report to the sender',
  retry: 'Retry',
  export: 'Export',
};

export function confirmPage(
  input: { action: BulkAction; scope: 'selected' | 'all'; filter: string; ids: string[]; count: number; more: boolean; note?: string },
  context: PageContext,
): string {
  const many = `${input.more ? 'more than ' : ''}${input.count} message${input.count === 1 && !input.more ? '' : 's'}`;
  const back = pageLink(input.filter);
  return page(
    'messages',
    'Confirm',
    context,
    html`<h1>Confirm: ${ACTION_WORDS[input.action]}</h1>
<p id="confirm-text">${ACTION_WORDS[input.action]} ${many}${input.scope === 'all' ? html` that match the filter <code>${input.filter}</code>` : ' selected'}?</p>
${input.note ? html`<p class="muted">${input.note}</p>` : ''}
${
  input.count === 0
    ? html`<p>Nothing to do.</p><p><a href="${back}">Back to messages</a></p>`
    : html`<form method="post" action="/ui/messages/act" class="actions">
${csrfField(context.csrf)}<input type="hidden" name="action" value="${input.action}"><input type="hidden" name="scope" value="${input.scope}"><input type="hidden" name="filter" value="${input.filter}">
${input.ids.map((id) => html`<input type="hidden" name="id" value="${id}">`)}
<button type="submit" class="primary">Confirm</button> <a href="${back}">Cancel</a>
</form>`
}`,
  );
}

// ---- one message

export function messagePage(
  input: { identity: string; entries: MessageView[]; events: TrackedEvent[]; headers: string },
  context: PageContext,
): string {
  const first = input.entries[0]!;
  const props = (m: MessageView) => {
    const pairs: Array<[string, string | number | null]> = [
      ['Identity', m.Identity],
      ['Queue', m.Queue],
      ['Status', m.Status],
      ['DateReceived', when(m.DateReceived)],
      ['ExpirationTime', when(m.ExpirationTime)],
      ['FromAddress', m.FromAddress || '<>'],
      ['InternetMessageId', m.InternetMessageId],
      ['Subject', m.Subject],
      ['Size', `${size(m.Size)} (${m.Size} bytes)`],
      ['RetryCount', m.RetryCount],
      ['LastError', m.LastError],
      ['MessageSourceName', m.MessageSourceName],
      ['SourceIP', m.SourceIP],
      ['SCL', m.SCL],
    ];
    return html`<dl class="props">${pairs.map(([k, v]) => html`<dt>${k}</dt><dd>${v ?? ''}</dd>`)}</dl>`;
  };
  const entry = (m: MessageView) => html`<section aria-label="${m.Queue}">
<h2>In ${m.Queue}</h2>
${props(m)}
<h3>Recipients</h3>
<div class="table-wrap"><table><thead><tr><th scope="col">Address</th><th scope="col">Status</th><th scope="col">Last reply</th></tr></thead>
<tbody>${m.Recipients.map((r) => html`<tr><td>${r.Address}</td><td>${status(r.Status)}</td><td class="err">${r.LastError ?? ''}</td></tr>`)}</tbody></table></div>
<form method="post" action="/ui/messages/confirm" class="actions">${csrfField(context.csrf)}<input type="hidden" name="scope" value="selected"><input type="hidden" name="id" value="${m.Identity}">
${MESSAGE_ACTIONS.filter(([value]) => value !== 'export').map(([value, label]) => html`<button name="action" value="${value}">${label}</button>`)}</form>
</section>`;
  const detail = (event: TrackedEvent) => {
    const { event: _name, queueId: _id, messageId: _mid, sender: _sender, recipients: _rcpts, time: _time, ...rest } = event;
    return Object.entries(rest)
      .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join('; ');
  };
  return page(
    'messages',
    `Message ${first.Identity}`,
    context,
    html`<h1>Message ${input.identity}</h1>
<p><a href="/ui/message/eml?identity=${encodeURIComponent(input.identity)}" download>Download .eml</a> · <a href="/ui/messages">Back to messages</a></p>
${input.entries.map(entry)}
<h2>Tracking history</h2>
<div class="table-wrap"><table><thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Recipients</th><th scope="col">Details</th></tr></thead>
<tbody>${input.events.map((e) => html`<tr><td>${when(e.time)}</td><td>${e.event}</td><td class="wrap">${e.recipients.join(', ')}</td><td class="wrap">${detail(e)}</td></tr>`)}</tbody></table></div>
<h2>Headers</h2>
<pre class="block">${input.headers}</pre>`,
  );
}

// ---- listeners

export function listenersPage(listeners: ListenerView[], context: PageContext): string {
  return page(
    'listeners',
    'Listeners',
    context,
    html`<h1>Listeners</h1>
<div class="table-wrap"><table><thead><tr><th scope="col">Name</th><th scope="col">Address</th><th scope="col">Status</th><th scope="col">Actions</th></tr></thead>
<tbody>${listeners.map(
      (l) => html`<tr><th scope="row">${l.Name}</th><td>${l.Address}</td><td>${status(l.Status)}</td>
<td><form method="post" action="/ui/listeners/action" class="actions">${csrfField(context.csrf)}<input type="hidden" name="name" value="${l.Name}">
<button name="action" value="suspend">Suspend</button><button name="action" value="resume">Resume</button></form></td></tr>`,
    )}</tbody></table></div>
<p class="muted">A suspended listener answers new connections with 421 4.3.2; sessions in progress finish. The suspension is kept across restarts.</p>`,
  );
}

// ---- configuration

export function planView(plan: ReloadPlan): Html {
  const none = (list: unknown[]) => (list.length === 0 ? html`<p class="muted">None.</p>` : '');
  return html`<h2>Queues</h2>${none(plan.Queues)}
${
  plan.Queues.length > 0
    ? html`<div class="table-wrap"><table><thead><tr><th scope="col">Identity</th><th scope="col">Action</th><th scope="col">Reason</th><th scope="col">Messages</th><th scope="col">To</th></tr></thead>
<tbody>${plan.Queues.map(
        (q) =>
          html`<tr><td>${q.Identity}</td><td>${q.Action}</td><td>${q.Reason}</td><td class="num">${q.Messages}</td><td>${Object.entries(q.To ?? {})
            .map(([to, n]) => `${to}: ${n}`)
            .join(', ')}${q.Sampled ? ' (sampled)' : ''}</td></tr>`,
      )}</tbody></table></div>`
    : ''
}
<h2>Listeners</h2>${none(plan.Listeners)}<ul>${plan.Listeners.map((l) => html`<li>${l.Name}: ${l.Change}</li>`)}</ul>
<h2>Routes</h2>${none(plan.Routes)}<ul>${plan.Routes.map((r) => html`<li>${r.Name}: ${r.Change}</li>`)}</ul>
<h2>Wait for a restart</h2>${none(plan.RestartNeeded)}<ul>${plan.RestartNeeded.map((k) => html`<li><code>${k}</code></li>`)}</ul>`;
}

export function configPage(yamlText: string, context: PageContext): string {
  return page(
    'config',
    'Configuration',
    context,
    html`<h1>Configuration</h1>
<form method="post" action="/ui/config/plan" class="actions">${csrfField(context.csrf)}<button type="submit" class="primary">Reload</button></form>
<p class="muted">Reload reads the configuration file again and shows what it would change; nothing changes until you apply it.</p>
<h2>Running configuration</h2>
<pre class="block" aria-label="Running configuration">${yamlText}</pre>`,
  );
}

export function planPage(plan: ReloadPlan, fingerprint: string, context: PageContext, changed = false): string {
  return page(
    'config',
    'Reload plan',
    context,
    html`<h1>Reload plan</h1>
${changed ? html`<div class="problem" role="alert">The configuration file changed after the plan was shown, so nothing was applied. This is the plan for the file as it is now.</div>` : ''}
<p>This is what reloading the configuration file would change. Nothing has changed yet.</p>
${planView(plan)}
<form method="post" action="/ui/config/apply" class="actions">${csrfField(context.csrf)}<input type="hidden" name="plan" value="${fingerprint}"><button type="submit" class="primary">Apply</button> <a href="/ui/config">Cancel</a></form>`,
  );
}

export function appliedPage(plan: ReloadPlan, context: PageContext): string {
  return page('config', 'Reloaded', context, html`<h1>Configuration reloaded</h1><p role="status">The new configuration is in force. What changed:</p>${planView(plan)}<p><a href="/ui/config">Back to configuration</a></p>`);
}

export function problemPage(section: Section, title: string, detail: string, context: PageContext): string {
  return page(section, title, context, html`<h1>${title}</h1><div class="problem" role="alert">${detail}</div>`);
}

// ---- the queue chart

/** Queue depth (line) and recipients delivered per 30 s (bars) over the samples kept, as inline SVG. */
export function queueChart(samples: ReadonlyArray<{ at: number; depth: number; delivered: number }>): Html {
  const width = 720;
  const height = 160;
  const pad = { left: 44, right: 44, top: 10, bottom: 22 };
  const inner = { w: width - pad.left - pad.right, h: height - pad.top - pad.bottom };
  const slots = 120;
  const maxDepth = Math.max(1, ...samples.map((s) => s.depth));
  const maxRate = Math.max(1, ...samples.map((s) => s.delivered));
  const x = (i: number) => pad.left + (inner.w * (slots - samples.length + i)) / (slots - 1);
  const yDepth = (v: number) => pad.top + inner.h - (inner.h * v) / maxDepth;
  const yRate = (v: number) => pad.top + inner.h - (inner.h * v) / maxRate;
  const barWidth = Math.max(1, inner.w / slots - 1);
  const bars = samples.map(
    (s, i) => html`<rect x="${(x(i) - barWidth / 2).toFixed(1)}" y="${yRate(s.delivered).toFixed(1)}" width="${barWidth.toFixed(1)}" height="${(pad.top + inner.h - yRate(s.delivered)).toFixed(1)}" fill="#8cc5ff"></rect>`,
  );
  const line = samples.map((s, i) => `${x(i).toFixed(1)},${yDepth(s.depth).toFixed(1)}`).join(' ');
  const now = samples.at(-1);
  const deliveredHour = samples.reduce((sum, s) => sum + s.delivered, 0);
  const summary = `Queue depth now ${now?.depth ?? 0} messages (highest ${maxDepth}); ${deliveredHour} recipients delivered in the last hour.`;
  return html`<figure class="chart">
<svg viewBox="0 0 ${width} ${height}" role="img" aria-label="${summary}" preserveAspectRatio="none" width="100%" height="${height}">
<line x1="${pad.left}" y1="${pad.top + inner.h}" x2="${pad.left + inner.w}" y2="${pad.top + inner.h}" stroke="#d0d7de"></line>
<line x1="${pad.left}" y1="${pad.top}" x2="${pad.left + inner.w}" y2="${pad.top}" stroke="#eaeef2"></line>
${bars}
${samples.length > 1 ? html`<polyline points="${line}" fill="none" stroke="#0a58ca" stroke-width="2"></polyline>` : ''}
${samples.length === 1 ? html`<circle cx="${x(0).toFixed(1)}" cy="${yDepth(samples[0]!.depth).toFixed(1)}" r="3" fill="#0a58ca"></circle>` : ''}
<text x="${pad.left - 6}" y="${pad.top + 10}" text-anchor="end" font-size="11" fill="#0a58ca">${maxDepth}</text>
<text x="${pad.left - 6}" y="${pad.top + inner.h}" text-anchor="end" font-size="11" fill="#0a58ca">0</text>
<text x="${pad.left + inner.w + 6}" y="${pad.top + 10}" font-size="11" fill="#3b82c4">${maxRate}</text>
<text x="${pad.left}" y="${height - 6}" font-size="11" fill="#57606a">1 hour ago</text>
<text x="${pad.left + inner.w}" y="${height - 6}" text-anchor="end" font-size="11" fill="#57606a">now</text>
</svg>
<figcaption><span class="key depth">Queue depth (messages, left scale)</span> <span class="key rate">Recipients delivered per 30 s (right scale)</span><br>${summary}</figcaption>
</figure>`;
}

// ---- a bulk action in progress

export interface JobView {
  id: string;
  title: string;
  total: number;
  done: number;
  finished: boolean;
  summary?: string;
  failed?: boolean;
  back: string;
}

export function jobProgress(job: JobView): Html {
  if (job.finished) {
    return html`<div id="job"><p class="flash${job.failed ? ' bad' : ''}" role="status">${job.summary ?? 'Done.'}</p>
<progress max="${Math.max(1, job.total)}" value="${Math.max(1, job.total)}" aria-label="Progress">100%</progress>
<p><a href="${job.back}">Back to messages</a></p></div>`;
  }
  const percent = job.total > 0 ? Math.min(100, Math.round((100 * job.done) / job.total)) : 0;
  return html`<div id="job" hx-get="/ui/jobs/${job.id}/progress" hx-trigger="every 1s" hx-swap="outerHTML">
<progress max="${Math.max(1, job.total)}" value="${Math.min(job.done, job.total)}" aria-label="Progress">${percent}%</progress>
<p role="status">${job.done} of ${job.total} messages (${percent}%)</p></div>`;
}

export const jobPage = (job: JobView, context: PageContext) => page('messages', job.title, context, html`<h1>${job.title}</h1>${jobProgress(job)}`);
