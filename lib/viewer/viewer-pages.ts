import type {
  AuditActor,
  AuditChange,
  AuditEvent,
  AuditFieldChange,
  AuditRelationChange,
  AuditTarget,
} from '../interfaces/audit-event.interface.js';
import type { AuditInclusionStatus } from '../read/audit-event-reader.js';
import { href, html, type Html, type HtmlPart } from './html.js';
import type { SearchForm } from './viewer-query.js';

/** What every page knows: where the viewer is mounted (as the browser reached it) and its title. */
export interface PageFrame {
  base: string;
  title: string;
}

/** The whole document: no script, one stylesheet from the viewer itself. */
function layout(frame: PageFrame, heading: string, body: HtmlPart): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${heading} · ${frame.title}</title>
<link rel="stylesheet" href="${href(frame.base, ['viewer.css'])}">
</head>
<body>
<header class="bar"><h1><a href="${href(frame.base)}">${frame.title}</a></h1><span class="muted">read-only · times in UTC</span></header>
<main>
${body}
</main>
</body>
</html>
`.markup;
}

/** An event's time in UTC; a stored value that is no time (a row made by hand) said to be so, with what is stored, rather than failing the page. */
const time = (event: AuditEvent): string =>
  Number.isNaN(event.occurredAt.getTime())
    ? `not a valid time (stored as ${event.unreadable?.occurredAt !== undefined ? JSON.stringify(event.unreadable.occurredAt) : 'it is'})`
    : event.occurredAt.toISOString().replace('T', ' ').replace('Z', ' UTC');

/** The values of a row changed by hand that cannot be read, each as stored (nothing when there is none). */
function unreadable(event: AuditEvent): Html | '' {
  const fields = Object.entries(event.unreadable ?? {});
  if (!fields.length) return '';
  return html`<div class="error" role="alert"><p>This row holds values the module never writes (it was changed outside the module; <code>verify()</code> reports it as modified). As stored:</p>
<dl class="fields">${fields.map(([name, stored]) => html`<dt>${name}</dt><dd><code>${stored}</code></dd>`)}</dl></div>`;
}

function actorText(actor: AuditActor): string {
  return `${actor.type}${actor.id !== undefined ? `:${actor.id}` : ''}${actor.display ? ` (${actor.display})` : ''}`;
}

function targetLink(frame: PageFrame, target: AuditTarget | undefined): Html {
  if (!target) return html`<span class="muted">—</span>`;
  return html`<a href="${href(frame.base, ['timeline'], { type: target.type, id: target.id })}">${target.type} #${target.id}</a>`;
}

function outcome(value: string): Html {
  return html`<span class="${`outcome-${value}`}">${value}</span>`;
}

/** A stored value as JSON text (strings quoted, so `"null"` and `null` differ); absent as a dash. */
function value(v: unknown): Html {
  if (v === undefined) return html`<span class="muted">—</span>`;
  return html`<code>${JSON.stringify(v)}</code>`;
}

function json(v: unknown): Html {
  return html`<pre>${JSON.stringify(v, null, 2)}</pre>`;
}

const SOURCES = ['http', 'graphql', 'rpc', 'ws', 'job', 'cli', 'system'];

function input(form: SearchForm, name: keyof SearchForm, label: string, type = 'text', extra: { list?: string; placeholder?: string } = {}): Html {
  return html`<label>${label}<input type="${type}" name="${name}" value="${form[name]}"${extra.list ? html` list="${extra.list}"` : ''}${extra.placeholder ? html` placeholder="${extra.placeholder}"` : ''}></label>`;
}

function select(form: SearchForm, name: keyof SearchForm, label: string, options: readonly string[]): Html {
  return html`<label>${label}<select name="${name}"><option value="">any</option>${options.map(
    (option) => html`<option value="${option}"${form[name] === option ? html` selected` : ''}>${option}</option>`,
  )}</select></label>`;
}

function searchForm(frame: PageFrame, form: SearchForm): Html {
  return html`<form class="search" method="get" action="${href(frame.base)}">
${input(form, 'actorType', 'Actor type', 'text', { placeholder: 'user' })}
${input(form, 'actorId', 'Actor id')}
${input(form, 'targetType', 'Target type', 'text', { placeholder: 'order' })}
${input(form, 'targetId', 'Target id')}
${input(form, 'action', 'Action', 'text', { placeholder: 'order.updated' })}
${input(form, 'source', 'Source', 'text', { list: 'audit-sources' })}
${select(form, 'outcome', 'Outcome', ['success', 'failure', 'unknown'])}
${select(form, 'kind', 'Kind', ['intent', 'change'])}
${input(form, 'from', 'From (UTC)', 'datetime-local')}
${input(form, 'to', 'To (UTC, excluded)', 'datetime-local')}
${input(form, 'requestId', 'Request id')}
<datalist id="audit-sources">${SOURCES.map((source) => html`<option value="${source}"></option>`)}</datalist>
<div class="actions"><button type="submit">Search</button><a href="${href(frame.base)}">Clear</a></div>
</form>`;
}

function eventRows(frame: PageFrame, events: readonly AuditEvent[]): Html {
  return html`<table class="events">
<thead><tr><th>Time</th><th>Action</th><th>Outcome</th><th>Actor</th><th>Target</th><th>Source</th></tr></thead>
<tbody>
${events.map(
  (event) => html`<tr>
<td data-label="Time"><a class="mono" href="${href(frame.base, ['events', event.id])}">${time(event)}</a></td>
<td data-label="Action"><a href="${href(frame.base, ['events', event.id])}">${event.action}</a>${event.kind === 'change' ? html` <span class="badge">change</span>` : ''}</td>
<td data-label="Outcome">${outcome(event.outcome)}</td>
<td data-label="Actor">${actorText(event.actor)}</td>
<td data-label="Target">${targetLink(frame, event.target)}</td>
<td data-label="Source">${event.source}</td>
</tr>
`,
)}</tbody>
</table>`;
}

/** The search form and one page of results, newest first, with an "Older" link. */
export function searchPage(frame: PageFrame, form: SearchForm, events: readonly AuditEvent[], nextCursor: string | null): string {
  const filters: Record<string, string> = {};
  for (const [name, text] of Object.entries(form)) if (name !== 'cursor' && text) filters[name] = text;
  return layout(
    frame,
    'Search',
    html`${searchForm(frame, form)}
<h2>${events.length ? `Events${form.cursor ? ' (older page)' : ''}` : 'No events match'}</h2>
${events.length ? eventRows(frame, events) : html`<p class="empty">Nothing in the trail matches these filters.</p>`}
<nav class="pager">${form.cursor ? html`<a href="${href(frame.base, [], filters)}">Newest</a>` : ''}${
      nextCursor ? html`<a rel="next" href="${href(frame.base, [], { ...filters, cursor: nextCursor })}">Older →</a>` : ''
    }</nav>`,
  );
}

const OPERATIONS: Record<string, string> = { insert: 'created', update: 'updated', delete: 'deleted' };

function isRelation(change: AuditFieldChange | AuditRelationChange): change is AuditRelationChange {
  return Array.isArray((change as AuditRelationChange).added) && Array.isArray((change as AuditRelationChange).removed);
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** A field's row: its diff, or (a value of no known shape, as an older or hand-made row may hold) the value as stored. */
function fieldRow(name: string, diff: unknown): Html {
  if (!isObject(diff) || (('added' in diff || 'removed' in diff) && !isRelation(diff))) {
    return html`<tr><td>${name}</td><td colspan="2" class="diff-to">stored as <code>${JSON.stringify(diff) ?? String(diff)}</code></td></tr>
`;
  }
  if (isRelation(diff)) {
    return html`<tr><td>${name}</td><td class="diff-from">${diff.removed.length ? html`removed links: ${diff.removed.join(', ')}` : html`<span class="muted">—</span>`}</td><td class="diff-to">${diff.added.length ? html`added links: ${diff.added.join(', ')}` : html`<span class="muted">—</span>`}</td></tr>
`;
  }
  return html`<tr><td>${name}</td><td class="diff-from">${value(diff['from'])}</td><td class="diff-to">${value(diff['to'])}</td></tr>
`;
}

/** One entity's change as a field diff: field, from, to; links added and removed. */
function changeDiff(change: AuditChange): Html {
  if (!isObject(change)) return html`<section class="change"><p class="muted">A change stored as <code>${JSON.stringify(change) ?? String(change)}</code></p></section>`;
  const fields = isObject(change.fields) ? Object.entries(change.fields) : [];
  const notes = [
    change.partial ? 'recorded in part' : '',
    change.count !== undefined ? `${change.count} rows` : '',
    change.table ? `table ${change.table}` : '',
  ].filter(Boolean);
  return html`<section class="change">
<h3>${change.entity}${change.id !== null ? ` #${change.id}` : ''} · ${OPERATIONS[change.operation] ?? change.operation}${notes.length ? html` <span class="badge">${notes.join(', ')}</span>` : ''}</h3>
${
  fields.length
    ? html`<table><thead><tr><th>Field</th><th>From</th><th>To</th></tr></thead><tbody>
${fields.map(([name, diff]) => fieldRow(name, diff))}</tbody></table>`
    : html`<p class="muted">No field recorded.</p>`
}
</section>`;
}

function changes(list: readonly AuditChange[]): Html {
  return Array.isArray(list) && list.length ? html`${list.map(changeDiff)}` : html`<p class="muted">No changes recorded.</p>`;
}

function inclusion(status: AuditInclusionStatus): Html {
  switch (status.state) {
    case 'off':
      return html`<p class="muted">Integrity (the Merkle tree and signed checkpoints) is not configured.</p>`;
    case 'unsequenced':
      return html`<p>Not sequenced yet: the event gets its place in the tree within about a second of being stored.</p>`;
    case 'uncovered':
      return html`<p>Sequenced as <strong>#${status.seq}</strong>; no signed checkpoint covers it yet (${
        status.checkpoint ? `the latest is of tree size ${status.checkpoint.treeSize}` : 'none is stored yet'
      }).</p>`;
    case 'broken':
      return html`<p class="proof-bad">No valid proof: ${status.message}</p>`;
    case 'proved':
      return html`<p class="${status.verified.ok ? 'proof-ok' : 'proof-bad'}">${
        status.verified.ok ? 'Inclusion proof verified against the signed checkpoint.' : `Inclusion proof does not verify: ${status.verified.reason}`
      }</p>
<dl class="fields">
<dt>Seq</dt><dd>${status.proof.seq}</dd>
<dt>Tree size</dt><dd>${status.proof.treeSize}</dd>
<dt>Leaf hash</dt><dd class="mono">${status.proof.leafHash}</dd>
<dt>Audit path</dt><dd class="mono">${status.proof.path.length} hashes</dd>
<dt>Checkpoint</dt><dd>${html`<pre>${status.proof.checkpoint.note}</pre>`}</dd>
</dl>`;
  }
}

/** Every field of one event, its changes as diffs, and its inclusion proof. */
export function eventPage(frame: PageFrame, event: AuditEvent, status: AuditInclusionStatus): string {
  const row = (label: string, content: HtmlPart): Html => html`<dt>${label}</dt><dd>${content}</dd>`;
  const none = html`<span class="muted">—</span>`;
  return layout(
    frame,
    event.action,
    html`<h2>${event.action} ${outcome(event.outcome)}</h2>
${unreadable(event)}
<dl class="fields">
${row('Id', html`<span class="mono">${event.id}</span>`)}
${row('Seq', event.seq ?? none)}
${row('Occurred at', time(event))}
${row('Action', event.action)}
${row('Outcome', outcome(event.outcome))}
${row('Kind', event.kind)}
${row('Source', event.source)}
${row('Actor', actorText(event.actor))}
${row('Target', targetLink(frame, event.target))}
${row('Request', Object.keys(event.request).length ? json(event.request) : none)}
${row('Reason', event.reason ?? none)}
${row('Error', event.error ? json(event.error) : none)}
${row('Context', event.context ? json(event.context) : none)}
</dl>
<h2>Changes</h2>
${changes(event.changes)}
<h2>Integrity</h2>
${inclusion(status)}
${event.request.requestId ? html`<p><a href="${href(frame.base, [], { requestId: event.request.requestId })}">Other events of this request</a></p>` : ''}`,
  );
}

/** A target's history, oldest first, each event with its diffs. */
export function timelinePage(frame: PageFrame, target: AuditTarget, events: readonly AuditEvent[], limit: number): string {
  return layout(
    frame,
    `${target.type} #${target.id}`,
    html`<form class="search" method="get" action="${href(frame.base, ['timeline'])}">
<label>Target type<input type="text" name="type" value="${target.type}"></label>
<label>Target id<input type="text" name="id" value="${target.id}"></label>
<div class="actions"><button type="submit">Show timeline</button></div>
</form>
<h2>Timeline of ${target.type} #${target.id}, oldest first</h2>
${
  events.length
    ? html`<ol class="timeline">${events.map(
        (event) => html`<li>
<p><a class="mono" href="${href(frame.base, ['events', event.id])}">${time(event)}</a> · <strong>${event.action}</strong> ${outcome(event.outcome)} · ${actorText(event.actor)} · ${event.source}${event.reason ? html` · <em>${event.reason}</em>` : ''}</p>
${changes(event.changes)}
</li>
`,
      )}</ol>${events.length >= limit ? html`<p class="muted">Showing the first ${limit} events.</p>` : ''}`
    : html`<p class="empty">No event is about this target.</p>`
}`,
  );
}

/** A request the viewer could not answer: the reason, and a way back. */
export function errorPage(frame: PageFrame, status: number, message: string): string {
  return layout(frame, `Error ${status}`, html`<p class="error" role="alert">${message}</p><p><a href="${href(frame.base)}">Back to the search</a></p>`);
}
