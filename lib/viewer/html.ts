/*
 * The only way the viewer writes markup: every value goes through `text()` (element text
 * and attribute values alike), every link through `href()`. Markup is built from the
 * `Html` values these return, never from plain strings.
 */

/** A piece of markup known to be safe: built by `html` from escaped values. */
export class Html {
  constructor(readonly markup: string) {}
  toString(): string {
    return this.markup;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** HTML-escapes text for element content and quoted attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (char) => ENTITIES[char]!);
}

/** Something `html` can interpolate: markup, text (escaped), or a list of either. */
export type HtmlPart = Html | string | number | null | undefined | false | readonly HtmlPart[];

/** Template tag: literal parts are markup, every interpolated value is escaped unless it is `Html`. */
export function html(strings: TemplateStringsArray, ...values: HtmlPart[]): Html {
  let out = strings[0]!;
  values.forEach((value, index) => {
    out += render(value) + strings[index + 1]!;
  });
  return new Html(out);
}

function render(value: HtmlPart): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.markup;
  if (Array.isArray(value)) return value.map((item: HtmlPart) => render(item)).join('');
  return escapeHtml(String(value as string | number));
}

/** A link under the viewer's base path: path segments percent-encoded, the query built with URLSearchParams. */
export function href(base: string, segments: readonly string[] = [], query: Record<string, string | undefined> = {}): string {
  const path = [base, ...segments.map((segment) => encodeURIComponent(segment))].join('/');
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== '') params.set(key, value);
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}
