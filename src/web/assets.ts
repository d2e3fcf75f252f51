// The viewer's own static assets, kept as modules so that the packaged build
// (dist/) has them without a copy step. htmx comes from its npm package.
import { createRequire } from 'node:module';

export const HTMX_PATH = createRequire(import.meta.url).resolve('htmx.org/dist/htmx.min.js');

export const BASE_STYLE = `
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --accent: #0a58ca; --bad: #b42318; --ok: #1a7f37; --bg: #fff; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.25rem; padding: .6rem 1rem; background: #0d1117; color: #fff; }
header .brand { font-weight: 700; margin-right: .5rem; }
header nav { display: flex; flex-wrap: wrap; gap: .25rem .9rem; flex: 1; }
header a { color: #c9d1d9; text-decoration: none; padding: .15rem .1rem; }
header a[aria-current="page"] { color: #fff; border-bottom: 2px solid #58a6ff; }
header form { margin: 0; }
main { padding: 1rem; max-width: 1500px; margin: 0 auto; }
h1 { font-size: 1.45rem; margin: .2rem 0 .8rem; }
h2 { font-size: 1.1rem; margin: 1.4rem 0 .5rem; }
a { color: var(--accent); }
:focus-visible { outline: 3px solid #58a6ff; outline-offset: 1px; }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .35rem .55rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.err { color: var(--bad); max-width: 28rem; overflow-wrap: anywhere; }
td.wrap { max-width: 22rem; overflow-wrap: anywhere; }
caption { text-align: left; padding: .3rem .55rem; color: var(--muted); caption-side: bottom; }
button { font: inherit; padding: .25rem .7rem; border: 1px solid var(--line); border-radius: 5px; background: var(--soft); color: var(--fg); cursor: pointer; }
button:hover { background: #eaeef2; }
button.primary { background: var(--accent); color: #fff; border-color: var(--accent); }
button.danger { color: var(--bad); }
header button { background: transparent; color: #c9d1d9; border-color: #30363d; }
.actions { display: flex; flex-wrap: wrap; gap: .3rem; margin: 0; }
input[type=text], input[type=password], input[type=search] { font: 15px ui-monospace, SFMono-Regular, Menlo, monospace; padding: .35rem .5rem; border: 1px solid var(--line); border-radius: 5px; width: 100%; }
.filter { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin-bottom: .75rem; }
.filter label { display: block; font-weight: 600; margin-bottom: .2rem; }
.filter .field { flex: 1 1 24rem; }
.flash { padding: .5rem .75rem; border-radius: 6px; background: #ddf4ff; border: 1px solid #54aeff; margin-bottom: .8rem; }
.flash.bad, .problem { background: #ffebe9; border: 1px solid #ff8182; }
.problem { padding: .5rem .75rem; border-radius: 6px; margin: .5rem 0; }
.problem pre { margin: .3rem 0 0; font: 14px ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre; overflow-x: auto; }
.bulk { display: flex; flex-wrap: wrap; gap: .4rem 1rem; align-items: center; margin: .6rem 0; padding: .5rem; background: var(--soft); border: 1px solid var(--line); border-radius: 6px; }
.bulk fieldset { border: 0; margin: 0; padding: 0; display: flex; gap: .8rem; flex-wrap: wrap; }
.bulk legend { font-weight: 600; float: left; margin-right: .6rem; }
.pager { display: flex; gap: 1rem; margin: .6rem 0; align-items: center; }
.muted { color: var(--muted); }
.status-Suspended, .status-Retry, .status-PendingSuspend, .status-PendingRemove { font-weight: 600; }
.status-Retry, .status-Failed { color: var(--bad); }
.status-Suspended { color: #9a6700; }
.status-Delivered { color: var(--ok); }
dl.props { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.props dt { font-weight: 600; }
dl.props dd { margin: 0; overflow-wrap: anywhere; }
pre.block { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: .6rem; overflow-x: auto; font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; }
.login { max-width: 24rem; margin: 10vh auto; padding: 1.2rem; border: 1px solid var(--line); border-radius: 8px; }
.login label { display: block; font-weight: 600; margin-bottom: .3rem; }
.login button { margin-top: .8rem; }
@media (max-width: 700px) { main { padding: .6rem; } th, td { padding: .3rem .4rem; } table { width: max-content; min-width: 100%; } .actions { flex-wrap: nowrap; } td.err, td.wrap { max-width: 16rem; } }
`;

/** "Select all on this page" for the message list; no inline script, so the CSP can forbid them. */
export const APP_SCRIPT = `
document.addEventListener('change', (event) => {
  const all = event.target.closest && event.target.closest('[data-select-all]');
  if (!all) return;
  for (const box of document.querySelectorAll('input[name="id"]')) box.checked = all.checked;
});
`;

export const CHART_STYLE = `
.chart { margin: 0 0 1rem; max-width: 900px; }
.chart svg { display: block; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
.chart figcaption { font-size: .85rem; color: var(--muted); margin-top: .3rem; }
.key::before { content: ""; display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem; vertical-align: -1px; border-radius: 2px; }
.key.depth::before { background: #0a58ca; }
.key.rate { margin-left: 1rem; }
.key.rate::before { background: #8cc5ff; }
progress { width: 100%; max-width: 40rem; height: 1.2rem; }
`;

export const STYLE = BASE_STYLE + CHART_STYLE;
