/**
 * Reads SQL text sent by hand (`query()`) far enough to tell which tables it writes.
 * Not a SQL parser: it skips comments, string literals and quoted names, finds each
 * statement's write verb (past a `WITH` list, whose parts may write too) and the name
 * that follows it. What it cannot read but clearly writes is still reported, without
 * a table.
 */

/** The verb of a write statement, lower case. */
export type RawWriteVerb = 'insert' | 'replace' | 'update' | 'delete' | 'merge' | 'truncate';

/** A table a statement names: its last part, and the one before it (schema or database) if any. */
export interface RawTable {
  name: string;
  schema?: string;
  /** Whether the name was quoted (`"x"`, `` `x` ``, `[x]`): then its case is significant. */
  quoted: boolean;
}

/** One write a statement makes: its verb and target, `null` when the target could not be read. */
export interface RawWrite {
  verb: RawWriteVerb;
  table: RawTable | null;
}

/** How the statement's database reads string literals. */
export interface RawDialect {
  /** A backslash escapes the next character in `'…'` (MySQL, MariaDB); `#` starts a comment. */
  mysql?: boolean;
}

const SPACE = 32;
const TAB = 9;
const LF = 10;
const CR = 13;
const DASH = 45;
const SLASH = 47;
const STAR = 42;
const HASH = 35;
const VT = 11;
const FF = 12;
const BANG = 33;

const isSpace = (code: number): boolean => code === SPACE || code === LF || code === CR || code === TAB || code === FF || code === VT;

/** The index of the end of the line at or after `from` (a `--` or `#` comment ends at LF or CR), or -1. */
function lineEnd(sql: string, from: number): number {
  for (let i = from; i < sql.length; i++) {
    const code = sql.charCodeAt(i);
    if (code === LF || code === CR) return i;
  }
  return -1;
}

/**
 * The index past the opening of a MySQL/MariaDB executable comment at `at` (`/*!`,
 * `/*!40000`, `/*M!100100`), whose text the server runs; -1 when there is none at `at`.
 */
function executableCommentBody(sql: string, at: number): number {
  if (sql.charCodeAt(at) !== SLASH || sql.charCodeAt(at + 1) !== STAR) return -1;
  let i = at + 2;
  if ((sql.charCodeAt(i) | 32) === 109 /* m */ && sql.charCodeAt(i + 1) === BANG) i++;
  if (sql.charCodeAt(i) !== BANG) return -1;
  i++;
  while (isDigit(sql.charCodeAt(i))) i++;
  return i;
}
const PAREN = 40;

/** Lower-case first letters of the words a write statement may start with. */
const FIRST_WORDS: ReadonlyArray<readonly string[] | undefined> = (() => {
  const words = ['insert', 'replace', 'update', 'delete', 'merge', 'truncate', 'with'];
  const byLetter: string[][] = [];
  for (const word of words) (byLetter[word.charCodeAt(0)] ??= []).push(word);
  return byLetter;
})();

/**
 * The cheap first check, run for every statement the app sends: whether `sql` may write.
 * True when its first word (past spaces and comments) is a write verb or `WITH`, or when it
 * holds a `;` (several statements). Allocates nothing; false for `SELECT`, `SHOW`, `SET`,
 * `BEGIN`, `SAVEPOINT` and the like.
 */
export function mayWrite(sql: string): boolean {
  const i = firstWordAt(sql);
  if (i === -1) return false;
  const words = FIRST_WORDS[sql.charCodeAt(i) | 32];
  if (words) {
    for (const word of words) {
      if (startsWithWord(sql, i, word)) return true;
    }
  }
  return sql.indexOf(';', i) !== -1;
}

/** The index of the first word of `sql`, past spaces, comments and opening parentheses; -1 when a comment runs to its end. */
function firstWordAt(sql: string): number {
  const length = sql.length;
  let i = 0;
  for (;;) {
    while (i < length && isSpace(sql.charCodeAt(i))) i++;
    const code = sql.charCodeAt(i);
    const executable = executableCommentBody(sql, i);
    if (executable !== -1) {
      // MySQL runs what an executable comment holds (mysqldump writes them): read on inside it.
      i = executable;
    } else if (code === DASH && sql.charCodeAt(i + 1) === DASH) {
      const end = lineEnd(sql, i);
      if (end === -1) return -1;
      i = end + 1;
    } else if (code === SLASH && sql.charCodeAt(i + 1) === STAR) {
      const end = sql.indexOf('*/', i + 2);
      if (end === -1) return -1;
      i = end + 2;
    } else if (code === HASH) {
      const end = lineEnd(sql, i);
      if (end === -1) return -1;
      i = end + 1;
    } else if (code === PAREN) {
      i++;
    } else {
      return i;
    }
  }
}

/** A savepoint statement: `SAVEPOINT x`, `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] x`, `RELEASE [SAVEPOINT] x`. */
export interface RawSavepoint {
  verb: 'savepoint' | 'rollback' | 'release';
  /** The savepoint's name as written, without its quotes. */
  name: string;
  /** Whether the name was quoted (PostgreSQL then compares it as written). */
  quoted: boolean;
}

/**
 * The savepoint statement `sql` is, when it is one statement (a `;` after it allowed) of
 * one of the forms of {@link RawSavepoint}; undefined otherwise. Checks the first word
 * before reading further: allocates nothing for other statements.
 */
export function savepointStatement(sql: string, dialect: RawDialect = {}): RawSavepoint | undefined {
  const at = firstWordAt(sql);
  if (at === -1) return undefined;
  const letter = sql.charCodeAt(at) | 32;
  if (letter !== 115 /* s */ && letter !== 114 /* r */) return undefined;
  if (!startsWithWord(sql, at, 'savepoint') && !startsWithWord(sql, at, 'rollback') && !startsWithWord(sql, at, 'release')) return undefined;
  const tokens = tokenize(sql, dialect);
  let end = tokens.length;
  while (end > 0 && isPunct(tokens[end - 1], ';')) end--;
  // A statement in parentheses is no savepoint statement: only the bare form is read.
  const head = tokens[0];
  const verb = head?.kind === 'word' ? head.text : undefined;
  if (verb !== 'savepoint' && verb !== 'rollback' && verb !== 'release') return undefined;
  let i = 1;
  if (verb === 'rollback') {
    if (isWord(tokens[i], 'work') || isWord(tokens[i], 'transaction')) i++;
    if (!isWord(tokens[i], 'to')) return undefined;
    i++;
  }
  // `RELEASE SAVEPOINT x`, and `RELEASE savepoint` (a savepoint named so).
  if (verb !== 'savepoint' && isWord(tokens[i], 'savepoint') && i + 1 < end) i++;
  const name = tokens[i];
  if (i + 1 !== end || !name || name.kind === 'punct') return undefined;
  return name.kind === 'word' ? { verb, name: name.raw!, quoted: false } : { verb, name: name.text, quoted: true };
}

/** Whether `sql` holds `word` (lower case) at `at`, in any case, followed by a non-word character. */
function startsWithWord(sql: string, at: number, word: string): boolean {
  for (let k = 0; k < word.length; k++) {
    if ((sql.charCodeAt(at + k) | 32) !== word.charCodeAt(k)) return false;
  }
  return !isWordChar(sql.charCodeAt(at + word.length));
}

function isWordChar(code: number): boolean {
  return (
    (code >= 97 && code <= 122) ||
    (code >= 65 && code <= 90) ||
    (code >= 48 && code <= 57) ||
    code === 95 ||
    code === 36 ||
    code > 127
  );
}

/** A token: a word (`kind: 'word'`, `text` lower case), a quoted name, or one punctuation character. */
interface Token {
  kind: 'word' | 'quoted' | 'punct';
  text: string;
  /** The word as written (words only). */
  raw?: string;
}

/** Splits SQL into tokens, dropping comments, string literals, numbers and parameters. */
function tokenize(sql: string, dialect: RawDialect): Token[] {
  const tokens: Token[] = [];
  const length = sql.length;
  let i = 0;
  /** Executable comments (MySQL) open around the text being read. */
  let executable = 0;
  while (i < length) {
    const code = sql.charCodeAt(i);
    const next = sql.charCodeAt(i + 1);
    if (isSpace(code)) {
      i++;
    } else if (code === DASH && next === DASH && (!dialect.mysql || i + 2 >= length || sql.charCodeAt(i + 2) <= SPACE)) {
      // On MySQL and MariaDB `--` starts a comment only before a space or a control character (`v --1` is `v - -1`).
      const end = lineEnd(sql, i);
      i = end === -1 ? length : end + 1;
    } else if (code === HASH && dialect.mysql) {
      const end = lineEnd(sql, i);
      i = end === -1 ? length : end + 1;
    } else if (dialect.mysql && executableCommentBody(sql, i) !== -1) {
      i = executableCommentBody(sql, i);
      executable++;
    } else if (executable > 0 && code === STAR && next === SLASH) {
      executable--;
      i += 2;
    } else if (code === SLASH && next === STAR) {
      i = skipBlockComment(sql, i, dialect.mysql === true);
    } else if (code === 39 /* ' */) {
      // E'…' (PostgreSQL) takes backslash escapes; so does every '…' on MySQL.
      const previous = tokens[tokens.length - 1];
      const escapeString = previous?.kind === 'word' && previous.text === 'e' && (sql.charCodeAt(i - 1) | 32) === 101;
      if (escapeString) tokens.pop();
      i = skipQuoted(sql, i, 39, escapeString || dialect.mysql === true);
    } else if (code === 34 /* " */ && dialect.mysql) {
      // A string on MySQL and MariaDB, with backslash escapes (a name only in ANSI_QUOTES mode: kept as a quoted token).
      const end = skipQuoted(sql, i, 34, true);
      tokens.push({ kind: 'quoted', text: sql.slice(i + 1, Math.max(i + 1, end - 1)) });
      i = end;
    } else if (code === 34 /* " */ || code === 96 /* ` */) {
      const end = quotedEnd(sql, i, code);
      tokens.push({ kind: 'quoted', text: sql.slice(i + 1, end).split(String.fromCharCode(code, code)).join(String.fromCharCode(code)) });
      i = end + 1;
    } else if (code === 91 /* [ */) {
      const end = sql.indexOf(']', i + 1);
      const stop = end === -1 ? length : end;
      tokens.push({ kind: 'quoted', text: sql.slice(i + 1, stop) });
      i = stop + 1;
    } else if (code === 36 /* $ */ && !isDigit(next)) {
      i = skipDollarQuoted(sql, i);
    } else if (isWordChar(code)) {
      let end = i + 1;
      while (end < length && isWordChar(sql.charCodeAt(end))) end++;
      const raw = sql.slice(i, end);
      // Numbers and parameters ($1, :name, ?) say nothing about what is written.
      if (!isDigit(code) && code !== 36) tokens.push({ kind: 'word', text: raw.toLowerCase(), raw });
      i = end;
    } else {
      tokens.push({ kind: 'punct', text: sql[i]! });
      i++;
    }
  }
  return tokens;
}

const isDigit = (code: number): boolean => code >= 48 && code <= 57;

/**
 * The index past a block comment starting at `at`: nested ones too, as PostgreSQL reads
 * them; MySQL and MariaDB end a comment at the first `*\/`.
 */
function skipBlockComment(sql: string, at: number, flat: boolean): number {
  if (flat) {
    const end = sql.indexOf('*/', at + 2);
    return end === -1 ? sql.length : end + 2;
  }
  let depth = 0;
  let i = at;
  while (i < sql.length) {
    if (sql.charCodeAt(i) === SLASH && sql.charCodeAt(i + 1) === STAR) {
      depth++;
      i += 2;
    } else if (sql.charCodeAt(i) === STAR && sql.charCodeAt(i + 1) === SLASH) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else {
      i++;
    }
  }
  return sql.length;
}

/** The index past a `'…'` literal starting at `at` (`''` inside it is a quote). */
function skipQuoted(sql: string, at: number, quote: number, backslashEscapes: boolean): number {
  let i = at + 1;
  while (i < sql.length) {
    const code = sql.charCodeAt(i);
    if (backslashEscapes && code === 92) {
      i += 2;
    } else if (code === quote) {
      if (sql.charCodeAt(i + 1) !== quote) return i + 1;
      i += 2;
    } else {
      i++;
    }
  }
  return sql.length;
}

/** The index of the quote closing a quoted name starting at `at` (a doubled quote is part of the name). */
function quotedEnd(sql: string, at: number, quote: number): number {
  let i = at + 1;
  while (i < sql.length) {
    if (sql.charCodeAt(i) === quote) {
      if (sql.charCodeAt(i + 1) !== quote) return i;
      i += 2;
    } else {
      i++;
    }
  }
  return sql.length;
}

/** The index past a PostgreSQL dollar-quoted string (`$$…$$`, `$tag$…$tag$`) starting at `at`. */
function skipDollarQuoted(sql: string, at: number): number {
  let end = at + 1;
  while (end < sql.length && isWordChar(sql.charCodeAt(end)) && sql.charCodeAt(end) !== 36) end++;
  if (sql.charCodeAt(end) !== 36) return at + 1;
  const tag = sql.slice(at, end + 1);
  const close = sql.indexOf(tag, end + 1);
  return close === -1 ? sql.length : close + tag.length;
}

const WRITE_VERBS: ReadonlySet<string> = new Set<RawWriteVerb>(['insert', 'replace', 'update', 'delete', 'merge', 'truncate']);
/** Words between a verb and its target that name no table (MySQL, SQLite and PostgreSQL modifiers). */
const MODIFIERS: ReadonlySet<string> = new Set(['low_priority', 'delayed', 'high_priority', 'ignore', 'quick', 'only', 'into', 'table']);
/** SQLite's `INSERT OR REPLACE`, `UPDATE OR IGNORE` … */
const CONFLICT_CLAUSES: ReadonlySet<string> = new Set(['replace', 'ignore', 'abort', 'fail', 'rollback']);

/**
 * The writes of `sql`: one per table it writes, in order, across every statement of
 * it and every part of a `WITH` list. Empty when it writes nothing. A write whose target
 * cannot be read has `table: null`.
 */
export function rawWrites(sql: string, dialect: RawDialect = {}): RawWrite[] {
  const tokens = tokenize(sql, dialect);
  const pairs = matchParentheses(tokens);
  const writes: RawWrite[] = [];
  let start = 0;
  let depth = 0;
  for (let i = 0; i <= tokens.length; i++) {
    const token = tokens[i];
    if (token?.kind === 'punct' && token.text === '(') depth++;
    else if (token?.kind === 'punct' && token.text === ')') depth--;
    if (i === tokens.length || (depth === 0 && token?.kind === 'punct' && token.text === ';')) {
      if (i > start) statementWrites(tokens, pairs, start, i, writes, dialect);
      start = i + 1;
    }
  }
  return writes;
}

/** What {@link statementShape} reads of a SQL text. */
export interface StatementShape {
  /**
   * The first word of each statement (lower case; past the parentheses of a statement in
   * parentheses), `''` for one that starts with something else.
   */
  heads: string[];
  /** Every word and quoted name of the text, lower case: the tables it may name among them. */
  names: Set<string>;
}

/**
 * The statements of `sql` by their first words, and the names it holds: what a caller
 * needs to tell plain DML (`insert`, `update`, `with`, …) from statements that end or open
 * a transaction, or make the server commit (`begin`, `commit`, `alter`, …), and to look
 * for tables of a kind among the names.
 */
export function statementShape(sql: string, dialect: RawDialect = {}): StatementShape {
  const tokens = tokenize(sql, dialect);
  const heads: string[] = [];
  const names = new Set<string>();
  let start = 0;
  let depth = 0;
  for (let i = 0; i <= tokens.length; i++) {
    const token = tokens[i];
    if (token?.kind === 'word') names.add(token.text);
    else if (token?.kind === 'quoted') names.add(token.text.toLowerCase());
    else if (token?.kind === 'punct' && token.text === '(') depth++;
    else if (token?.kind === 'punct' && token.text === ')') depth--;
    if (i === tokens.length || (depth === 0 && token?.kind === 'punct' && token.text === ';')) {
      if (i > start) {
        let first = start;
        while (first < i && isPunct(tokens[first], '(')) first++;
        const head = tokens[first];
        heads.push(head?.kind === 'word' ? head.text : '');
      }
      start = i + 1;
    }
  }
  return { heads, names };
}

/** For each `(` token, the index of the `)` closing it (-1 when none does); found once, in one pass. */
function matchParentheses(tokens: Token[]): Int32Array {
  const pairs = new Int32Array(tokens.length).fill(-1);
  const open: number[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind !== 'punct') continue;
    if (token.text === '(') open.push(i);
    else if (token.text === ')' && open.length) pairs[open.pop()!] = i;
  }
  return pairs;
}

/** The index of the `)` closing the `(` at `open` before `end`, or -1. */
function closing(pairs: Int32Array, open: number, end: number): number {
  const close = pairs[open] ?? -1;
  return close < end ? close : -1;
}

const isWord = (token: Token | undefined, text?: string): boolean => token?.kind === 'word' && (text === undefined || token.text === text);
const isPunct = (token: Token | undefined, text: string): boolean => token?.kind === 'punct' && token.text === text;

/** Adds the writes of the statement `tokens[start, end)` to `writes`. */
function statementWrites(tokens: Token[], pairs: Int32Array, start: number, end: number, writes: RawWrite[], dialect: RawDialect): void {
  let i = start;
  // A parenthesised statement: `(WITH …)`, `(INSERT …)`.
  while (isPunct(tokens[i], '(') && closing(pairs, i, end) === end - 1) {
    i++;
    end--;
  }
  if (isWord(tokens[i], 'with')) {
    const parts: RawWrite[] = [];
    const after = withList(tokens, pairs, i + 1, end, parts, dialect);
    if (after !== -1) writes.push(...parts);
    else {
      // A WITH list this reader cannot follow: every write verb that starts a part or the
      // main statement is reported, without a table.
      for (let k = i + 1; k < end; k++) {
        const token = tokens[k]!;
        const startsPart = isPunct(tokens[k - 1], '(') || isPunct(tokens[k - 1], ')');
        if (startsPart && token.kind === 'word' && WRITE_VERBS.has(token.text) && !isPunct(tokens[k + 1], '(')) {
          writes.push({ verb: token.text as RawWriteVerb, table: null });
        }
      }
      return;
    }
    i = after;
  }
  const verbToken = tokens[i];
  if (!verbToken || verbToken.kind !== 'word' || !WRITE_VERBS.has(verbToken.text)) return;
  const verb = verbToken.text as RawWriteVerb;
  i++;
  for (;;) {
    const token = tokens[i];
    if (isWord(token, 'or') && tokens[i + 1]?.kind === 'word' && CONFLICT_CLAUSES.has(tokens[i + 1]!.text)) i += 2;
    else if (token?.kind === 'word' && MODIFIERS.has(token.text)) i++;
    else break;
  }
  if (verb === 'delete' && !isWord(tokens[i], 'from')) {
    // MySQL's multi-table DELETE: `DELETE t1, t2 FROM …` writes the tables before FROM.
    const targets = tableList(tokens, i, end);
    if (targets.tables.length && isWord(tokens[targets.next], 'from')) {
      const aliases = tableAliases(tokens, targets.next + 1, end);
      for (const table of targets.tables) writes.push({ verb, table: (!table.schema && aliases.get(table.name.toLowerCase())) || table });
      return;
    }
  }
  if (isWord(tokens[i], 'from')) {
    i++;
    if (isWord(tokens[i], 'only')) i++;
  }
  if (verb === 'update' && dialect.mysql) {
    const tables = multiTableUpdate(tokens, i, end);
    if (tables) {
      for (const table of tables) writes.push({ verb, table });
      return;
    }
  }
  if (verb === 'truncate') {
    const targets = tableList(tokens, i, end);
    if (targets.tables.length === 0) writes.push({ verb, table: null });
    for (const table of targets.tables) writes.push({ verb, table });
    return;
  }
  writes.push({ verb, table: tableName(tokens, i, end)?.table ?? null });
}

/**
 * Reads a `WITH [RECURSIVE] name [(columns)] AS [[NOT] MATERIALIZED] (body), …` list from
 * `i`, adding the writes of each body. The index of the main statement, or -1 when the
 * list is not of that shape.
 */
function withList(tokens: Token[], pairs: Int32Array, from: number, end: number, writes: RawWrite[], dialect: RawDialect): number {
  let i = from;
  if (isWord(tokens[i], 'recursive')) i++;
  for (;;) {
    const name = tokens[i];
    if (!name || name.kind === 'punct') return -1;
    i++;
    if (isPunct(tokens[i], '(')) {
      const close = closing(pairs, i, end);
      if (close === -1) return -1;
      i = close + 1;
    }
    if (!isWord(tokens[i], 'as')) return -1;
    i++;
    if (isWord(tokens[i], 'not')) i++;
    if (isWord(tokens[i], 'materialized')) i++;
    if (!isPunct(tokens[i], '(')) return -1;
    const close = closing(pairs, i, end);
    if (close === -1) return -1;
    statementWrites(tokens, pairs, i + 1, close, writes, dialect);
    i = close + 1;
    if (!isPunct(tokens[i], ',')) return i;
    i++;
  }
}

/** A possibly qualified name at `i` (`a`, `a.b`, `a.b.c`), and the index past it. */
function tableName(tokens: Token[], i: number, end: number): { table: RawTable; next: number } | undefined {
  const parts: Token[] = [];
  for (;;) {
    const token = tokens[i];
    if (i >= end || !token || token.kind === 'punct') return undefined;
    parts.push(token);
    i++;
    if (!isPunct(tokens[i], '.')) break;
    i++;
  }
  const last = parts[parts.length - 1]!;
  const schema = parts[parts.length - 2];
  const text = (token: Token): string => (token.kind === 'word' ? token.raw! : token.text);
  return {
    table: { name: text(last), quoted: last.kind === 'quoted', ...(schema ? { schema: text(schema) } : {}) },
    next: i,
  };
}

/** A comma-separated list of names at `i` (an optional `ONLY` and trailing `*` on each, as PostgreSQL's TRUNCATE takes). */
function tableList(tokens: Token[], i: number, end: number): { tables: RawTable[]; next: number } {
  const tables: RawTable[] = [];
  for (;;) {
    if (isWord(tokens[i], 'only')) i++;
    const name = tableName(tokens, i, end);
    if (!name) break;
    tables.push(name.table);
    i = name.next;
    if (isPunct(tokens[i], '*')) i++;
    if (!isPunct(tokens[i], ',')) break;
    i++;
  }
  return { tables, next: i };
}

/** Words that end a table reference rather than name its alias. */
const NOT_ALIASES: ReadonlySet<string> = new Set([
  'on', 'using', 'where', 'join', 'inner', 'left', 'right', 'cross', 'natural', 'straight_join', 'outer', 'full', 'set', 'order', 'limit', 'partition', 'use', 'force', 'ignore',
]);

/** The tables of a FROM list by alias (`orders o`, `orders AS o`), for MySQL's multi-table DELETE. */
function tableAliases(tokens: Token[], from: number, end: number): Map<string, RawTable> {
  return tableReferences(tokens, from, end).aliases;
}

/** The tables a FROM list (or a multi-table UPDATE's list) names, and those of them with an alias, by alias. */
function tableReferences(tokens: Token[], from: number, end: number): { tables: RawTable[]; aliases: Map<string, RawTable> } {
  const aliases = new Map<string, RawTable>();
  const tables: RawTable[] = [];
  let depth = 0;
  for (let k = from; k < end; k++) {
    const previous = tokens[k - 1];
    if (isPunct(previous, '(')) depth++;
    else if (isPunct(previous, ')')) depth--;
    if (depth > 0) continue;
    if (!(k === from || isWord(previous, 'join') || isWord(previous, 'straight_join') || isPunct(previous, ','))) continue;
    const name = tableName(tokens, k, end);
    if (!name) continue;
    tables.push(name.table);
    let j = name.next;
    if (isWord(tokens[j], 'as')) j++;
    const alias = tokens[j];
    if (alias && alias.kind !== 'punct' && !(alias.kind === 'word' && NOT_ALIASES.has(alias.text))) {
      aliases.set((alias.kind === 'word' ? alias.text : alias.text.toLowerCase()), name.table);
    }
  }
  return { tables, aliases };
}

/** Words that join one table reference to the next in MySQL's multi-table UPDATE. */
const JOINS: ReadonlySet<string> = new Set(['join', 'inner', 'left', 'right', 'cross', 'natural', 'straight_join', 'outer']);
/** Words that end a SET list at depth 0. */
const AFTER_SET: ReadonlySet<string> = new Set(['where', 'order', 'limit', 'returning']);

/**
 * MySQL's multi-table UPDATE (`UPDATE a x, b y SET y.c = …`, `UPDATE a JOIN b ON … SET …`):
 * the tables its SET list writes — each one a qualified column names, or every table
 * of the statement when a column is not qualified (it may belong to any of them).
 * Undefined for a single-table UPDATE.
 */
function multiTableUpdate(tokens: Token[], from: number, end: number): RawTable[] | undefined {
  let set = -1;
  let multi = false;
  let depth = 0;
  for (let k = from; k < end; k++) {
    const token = tokens[k]!;
    if (isPunct(token, '(')) depth++;
    else if (isPunct(token, ')')) depth--;
    else if (depth > 0) continue;
    else if (isPunct(token, ',') || (token.kind === 'word' && JOINS.has(token.text))) multi = true;
    else if (isWord(token, 'set')) {
      set = k;
      break;
    }
  }
  if (!multi || set === -1) return undefined;
  const { tables, aliases } = tableReferences(tokens, from, set);
  const written = new Set<RawTable>();
  let all = false;
  depth = 0;
  for (let k = set + 1, assignment = true; k < end; k++) {
    const token = tokens[k]!;
    if (isPunct(token, '(')) depth++;
    else if (isPunct(token, ')')) depth--;
    if (depth > 0) continue;
    if (token.kind === 'word' && AFTER_SET.has(token.text)) break;
    if (isPunct(token, ',')) {
      assignment = true;
      continue;
    }
    if (!assignment) continue;
    assignment = false;
    const column = tableName(tokens, k, end);
    const qualifier = column?.table.schema?.toLowerCase();
    const table = qualifier === undefined ? undefined : aliases.get(qualifier) ?? tables.find((candidate) => candidate.name.toLowerCase() === qualifier);
    if (table) written.add(table);
    else all = true;
  }
  return all || written.size === 0 ? tables : tables.filter((table) => written.has(table));
}

/** How a text the app sends in a transaction ends it: committed or rolled back, and whether a new one is then open. */
export interface TransactionEnd {
  ends: 'commit' | 'rollback';
  /** A transaction is open once the text has run (`COMMIT AND CHAIN`; MySQL's `BEGIN` in a transaction). */
  reopens: boolean;
  /**
   * PostgreSQL's `PREPARE TRANSACTION`: the transaction is prepared for a later
   * `COMMIT PREPARED` (whose outcome the session does not see), or, if the statement
   * fails, rolled back. Either way the session is then in no transaction.
   */
  prepares?: true;
}

/** The databases {@link transactionEnd} reads statements of. */
export type TransactionDialect = 'postgres' | 'mysql' | 'sqlite';

/** First words of the statements that may end a transaction, by database: what every other statement skips past at once. */
const ENDING_WORDS: Readonly<Record<TransactionDialect, ReadonlySet<string>>> = {
  postgres: new Set(['commit', 'end', 'rollback', 'abort', 'prepare']),
  sqlite: new Set(['commit', 'end', 'rollback']),
  // MySQL and MariaDB: COMMIT, ROLLBACK, and the statements that commit the transaction before they run.
  mysql: new Set([
    'commit',
    'rollback',
    'begin',
    'start',
    'stop',
    'alter',
    'create',
    'drop',
    'rename',
    'truncate',
    'lock',
    'analyze',
    'check',
    'optimize',
    'repair',
    'cache',
    'load',
    'flush',
    'reset',
    'grant',
    'revoke',
    'set',
    'install',
    'uninstall',
    'change',
  ]),
};

/** MySQL/MariaDB: the table maintenance statements that commit (`ANALYZE TABLE`, not MariaDB's `ANALYZE SELECT`). */
const TABLE_MAINTENANCE: ReadonlySet<string> = new Set(['analyze', 'check', 'optimize', 'repair']);

/**
 * Whether `sql`, sent in an open transaction, ends it: a `COMMIT` (`COMMIT WORK`, `END` on
 * PostgreSQL and SQLite), a `ROLLBACK` (not `ROLLBACK TO SAVEPOINT`; `ABORT` on
 * PostgreSQL), PostgreSQL's `PREPARE TRANSACTION` — and on MySQL and MariaDB each statement that commits the transaction before
 * it runs ("implicit commit": DDL such as `CREATE`, `ALTER`, `DROP`, `RENAME`, `TRUNCATE`,
 * but not `CREATE`/`DROP TEMPORARY TABLE`; `LOCK TABLES`; `BEGIN` and `START TRANSACTION`,
 * which then open a new one; `ANALYZE`/`CHECK`/`OPTIMIZE`/`REPAIR TABLE`, `CACHE INDEX`,
 * `LOAD INDEX INTO CACHE`, `FLUSH`, `RESET`, `GRANT`, `REVOKE`, `SET PASSWORD`,
 * `INSTALL`/`UNINSTALL`, replication's `CHANGE MASTER`, `START`/`STOP SLAVE`). Of a text
 * of several statements, the first that ends the transaction, and whether the text opens
 * another after it. Undefined for anything else, at the cost of one look at the first
 * word for most statements.
 */
export function transactionEnd(sql: string, dialect: TransactionDialect): TransactionEnd | undefined {
  const words = ENDING_WORDS[dialect];
  const first = firstWord(sql, dialect === 'mysql');
  if (!(first !== undefined && words.has(first)) && sql.indexOf(';') === -1) return undefined;
  const tokens = tokenize(sql, { mysql: dialect === 'mysql' });
  let ended: TransactionEnd | undefined;
  let start = 0;
  let depth = 0;
  for (let i = 0; i <= tokens.length; i++) {
    const token = tokens[i];
    if (token?.kind === 'punct' && token.text === '(') depth++;
    else if (token?.kind === 'punct' && token.text === ')') depth--;
    if (i < tokens.length && !(depth === 0 && token?.kind === 'punct' && token.text === ';')) continue;
    const words = tokens.slice(start, i).map((word) => (word.kind === 'word' ? word.text : ''));
    start = i + 1;
    if (words.length === 0) continue;
    if (ended) {
      // Past the end: a text that opens a transaction again leaves one open.
      if (opens(words, dialect)) ended.reopens = true;
      else if (statementEnd(words, dialect)) ended.reopens = statementEnd(words, dialect)!.reopens;
      continue;
    }
    ended = statementEnd(words, dialect);
  }
  return ended;
}

/** Whether a statement (its words) opens a transaction. */
function opens(words: string[], dialect: TransactionDialect): boolean {
  const [first, second] = words;
  // MariaDB's `BEGIN NOT ATOMIC … END` is a compound statement; PostgreSQL's `BEGIN` in a transaction only warns.
  return (first === 'begin' && second !== 'not') || (first === 'start' && second === 'transaction' && dialect !== 'sqlite');
}

/** How one statement (its words, lower case; `''` for what is not a word) ends a transaction it runs in. */
function statementEnd(words: string[], dialect: TransactionDialect): TransactionEnd | undefined {
  const [first = '', second = ''] = words;
  // `AND CHAIN` opens the next transaction at once (`AND NO CHAIN` does not).
  const chains = (): boolean => {
    const and = words.indexOf('and');
    return and !== -1 && words[and + 1] === 'chain';
  };
  if (first === 'commit' || (first === 'end' && dialect !== 'mysql')) {
    // PostgreSQL's `COMMIT PREPARED 'id'` commits another, prepared transaction (and is refused inside one).
    return second === 'prepared' ? undefined : { ends: 'commit', reopens: chains() };
  }
  if (first === 'rollback' || (first === 'abort' && dialect === 'postgres')) {
    if (words.includes('to') || second === 'prepared') return undefined;
    return { ends: 'rollback', reopens: chains() };
  }
  // `PREPARE TRANSACTION 'id'`: the id is a string, which leaves no word. `TRANSACTION` is no
  // reserved word, so `PREPARE transaction [(types)] AS …` prepares a statement of that name.
  if (first === 'prepare' && second === 'transaction' && words.length === 2 && dialect === 'postgres') return { ends: 'commit', reopens: false, prepares: true };
  if (dialect !== 'mysql') return undefined;
  const commits = { ends: 'commit', reopens: false } as const;
  switch (first) {
    case 'begin':
      // MariaDB's `BEGIN NOT ATOMIC … END` is a compound statement, not a transaction.
      return second === 'not' ? undefined : { ends: 'commit', reopens: true };
    case 'start':
      if (second === 'transaction') return { ends: 'commit', reopens: true };
      return second === 'slave' || second === 'replica' ? commits : undefined;
    case 'stop':
      return second === 'slave' || second === 'replica' ? commits : undefined;
    case 'create':
    case 'drop':
    case 'alter': {
      // `CREATE [OR REPLACE] TEMPORARY TABLE` and `DROP TEMPORARY TABLE` do not commit; nor does `DROP PREPARE`.
      const rest = first === 'create' && second === 'or' ? words.slice(3) : words.slice(1);
      if (rest[0] === 'temporary' || (first === 'drop' && rest[0] === 'prepare')) return undefined;
      return commits;
    }
    case 'rename':
    case 'truncate':
    case 'flush':
    case 'reset':
    case 'grant':
    case 'revoke':
    case 'install':
    case 'uninstall':
      return commits;
    case 'lock':
      return second === 'table' || second === 'tables' ? commits : undefined;
    case 'cache':
      return second === 'index' ? commits : undefined;
    case 'load':
      return second === 'index' ? commits : undefined;
    case 'set':
      return second === 'password' ? commits : undefined;
    case 'change':
      return second === 'master' || second === 'replication' ? commits : undefined;
    default:
      if (TABLE_MAINTENANCE.has(first)) {
        const table = words.findIndex((word) => word === 'table' || word === 'tables');
        // `ANALYZE [NO_WRITE_TO_BINLOG | LOCAL] TABLE t`
        return table === 1 || (table === 2 && (second === 'local' || second === 'no_write_to_binlog')) ? commits : undefined;
      }
      return undefined;
  }
}

/** The first word of `sql` in lower case, past spaces, comments and parentheses (undefined when it starts with something else). */
function firstWord(sql: string, mysql: boolean): string | undefined {
  const length = sql.length;
  let i = 0;
  for (;;) {
    while (i < length && isSpace(sql.charCodeAt(i))) i++;
    const code = sql.charCodeAt(i);
    const executable = mysql ? executableCommentBody(sql, i) : -1;
    if (executable !== -1) i = executable;
    else if (code === DASH && sql.charCodeAt(i + 1) === DASH) {
      const end = lineEnd(sql, i);
      if (end === -1) return undefined;
      i = end + 1;
    } else if (code === SLASH && sql.charCodeAt(i + 1) === STAR) {
      const end = sql.indexOf('*/', i + 2);
      if (end === -1) return undefined;
      i = end + 2;
    } else if (code === HASH && mysql) {
      const end = lineEnd(sql, i);
      if (end === -1) return undefined;
      i = end + 1;
    } else if (code === PAREN) i++;
    else break;
  }
  let end = i;
  while (end < length && end - i < 16 && isWordChar(sql.charCodeAt(end))) end++;
  return end > i ? sql.slice(i, end).toLowerCase() : undefined;
}
