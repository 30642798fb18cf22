/**
 * The viewer's one stylesheet, served by the module itself from `path/viewer.css` (a string
 * here, so that both builds of the package carry it without an asset to copy).
 */
export const VIEWER_CSS = `:root {
  color-scheme: light;
  --fg: #1d232a; --muted: #5b6570; --line: #d9dee3; --bg: #ffffff; --panel: #f5f7f9;
  --accent: #0b5cad; --ok: #1a7f37; --bad: #b42318; --warn: #9a6700;
  --from: #fdecea; --to: #e6f4ea;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header.bar { display: flex; align-items: baseline; gap: 1rem; padding: .75rem 1.25rem; border-bottom: 1px solid var(--line); background: var(--panel); }
header.bar h1 { margin: 0; font-size: 1.15rem; }
header.bar a { color: var(--accent); text-decoration: none; }
main { padding: 1rem 1.25rem 2rem; max-width: 78rem; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
a { color: var(--accent); }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .86rem; }
pre { background: var(--panel); border: 1px solid var(--line); padding: .6rem .75rem; overflow-x: auto; white-space: pre-wrap; word-break: break-word; margin: 0; }
form.search { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: .6rem .9rem; padding: .9rem; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; }
form.search label { display: flex; flex-direction: column; font-size: .8rem; color: var(--muted); gap: .2rem; }
form.search input, form.search select { font: inherit; padding: .35rem .45rem; border: 1px solid var(--line); border-radius: 4px; background: #fff; color: var(--fg); min-width: 0; }
form.search .actions { grid-column: 1 / -1; display: flex; gap: .75rem; align-items: center; }
button { font: inherit; padding: .4rem 1rem; border: 1px solid var(--accent); background: var(--accent); color: #fff; border-radius: 4px; cursor: pointer; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .4rem .5rem; border-bottom: 1px solid var(--line); word-break: break-word; }
th { font-size: .8rem; color: var(--muted); font-weight: 600; }
.outcome-success { color: var(--ok); }
.outcome-failure { color: var(--bad); font-weight: 600; }
.outcome-unknown { color: var(--warn); }
.pager { margin-top: 1rem; display: flex; gap: 1rem; }
.empty, .muted { color: var(--muted); }
.error { border: 1px solid var(--bad); color: var(--bad); background: var(--from); padding: .75rem 1rem; border-radius: 6px; }
dl.fields { display: grid; grid-template-columns: 11rem minmax(0, 1fr); gap: .35rem 1rem; margin: 0; }
dl.fields dt { color: var(--muted); font-size: .85rem; }
dl.fields dd { margin: 0; word-break: break-word; }
.change { border: 1px solid var(--line); border-radius: 6px; margin: .6rem 0; }
.change h3 { margin: 0; padding: .45rem .6rem; font-size: .9rem; background: var(--panel); border-bottom: 1px solid var(--line); }
.change table td, .change table th { border-bottom: 1px solid var(--line); }
.diff-from { background: var(--from); }
.diff-to { background: var(--to); }
.badge { display: inline-block; font-size: .75rem; padding: 0 .4rem; border-radius: 3px; border: 1px solid var(--line); background: var(--panel); }
.proof-ok { color: var(--ok); font-weight: 600; }
.proof-bad { color: var(--bad); font-weight: 600; }
ol.timeline { list-style: none; padding: 0; margin: 0; }
ol.timeline > li { border-left: 3px solid var(--line); padding: .25rem 0 .75rem 1rem; }
@media (max-width: 600px) {
  header.bar { flex-direction: column; gap: .25rem; padding: .6rem .8rem; }
  main { padding: .75rem .8rem 1.5rem; }
  form.search { grid-template-columns: 1fr; }
  table.events thead { display: none; }
  table.events, table.events tbody, table.events tr, table.events td { display: block; width: 100%; }
  table.events tr { border-bottom: 1px solid var(--line); padding: .4rem 0; }
  table.events td { border: 0; padding: .1rem 0; }
  table.events td::before { content: attr(data-label) ": "; color: var(--muted); font-size: .8rem; }
  dl.fields { grid-template-columns: 1fr; }
  dl.fields dd { margin-bottom: .4rem; }
}
`;
