import { statSync } from 'node:fs';
import { DataSource, type DataSourceOptions } from 'typeorm';
import { AuditEntities } from '../storage/audit-entities.js';
import { CliUsageError } from './usage-error.js';

/** Where the audit tables are: `--url`, `--schema`, `--table-prefix`. */
export interface DatabaseArguments {
  url: string;
  schema?: string;
  tablePrefix?: string;
}

/**
 * The TypeORM options of a database URL: `postgres://` or `postgresql://` (node-postgres),
 * `mysql://` or `mariadb://` (mysql2), `sqlite:<path>` (better-sqlite3, opened read-only).
 */
export function dataSourceOptions(args: DatabaseArguments, readonly = true): DataSourceOptions {
  const { url, schema, tablePrefix } = args;
  const entities: DataSourceOptions['entities'] = [...AuditEntities];
  const common = { entities, entityPrefix: tablePrefix, logging: false };
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (schema !== undefined && scheme !== 'postgres' && scheme !== 'postgresql') {
    throw new CliUsageError('--schema is for PostgreSQL only (on MySQL/MariaDB, name the database in the URL)');
  }
  switch (scheme) {
    case 'postgres':
    case 'postgresql':
      return { ...common, type: 'postgres', url, schema };
    case 'mysql':
      return { ...common, type: 'mysql', url };
    case 'mariadb':
      return { ...common, type: 'mariadb', url: `mysql:${url.slice('mariadb:'.length)}` };
    case 'sqlite': {
      const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
      if (path === '') throw new CliUsageError('--url sqlite:<path> names no file');
      return { ...common, type: 'better-sqlite3', database: path, readonly };
    }
    default:
      throw new CliUsageError(
        `--url ${JSON.stringify(redact(url))} is not a database URL: use postgres://…, postgresql://…, mysql://…, mariadb://… or sqlite:<path>`,
      );
  }
}

/** Opens the database; a failure is reported as `Cannot connect to …` (exit code 2). */
export async function openDatabase(args: DatabaseArguments, readonly = true): Promise<DataSource> {
  const options = dataSourceOptions(args, readonly);
  try {
    // The driver package is loaded here: a missing one is the user's to install, not a crash.
    return await new DataSource(options).initialize();
  } catch (err) {
    if ((err as Error).name === 'DriverPackageNotInstalledError') {
      const driver = DRIVER_PACKAGES[options.type] ?? options.type;
      throw new DatabaseUnavailableError(`Cannot open ${redact(args.url)}: its driver package ${driver} is not installed (npm install ${driver})`);
    }
    throw new DatabaseUnavailableError(`Cannot connect to ${redact(args.url)}: ${(err as Error).message}${reservedCharacterHint(args.url)}`);
  }
}

/**
 * A hint when the URL's user name or password holds a character URLs reserve (`@`, `/`,
 * `#`, `?`) left as it is: the driver then reads another host or user than meant.
 */
function reservedCharacterHint(url: string): string {
  const rest = url.replace(URL_SCHEME, '');
  const at = rest.lastIndexOf('@');
  if (at < 0 || !/[@/#?]/.test(rest.slice(0, at))) return '';
  return ' (the user name or password in the URL holds @, /, # or ?: percent-encode them, e.g. %40 for @ and %2F for /)';
}

/** The npm package TypeORM loads for each data source type the command line opens. */
const DRIVER_PACKAGES: Record<string, string> = { postgres: 'pg', mysql: 'mysql2', mariadb: 'mysql2', 'better-sqlite3': 'better-sqlite3' };

/** The database could not be opened or its audit tables read (exit code 2). */
export class DatabaseUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseUnavailableError';
  }
}

/** The start of a URL with an authority (`scheme://`). */
export const URL_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/** Query parameters the drivers take a password from (node-postgres, mysql2). */
const PASSWORD_PARAMETER = /([?&](?:password|sslpassword|passphrase)=)[^&#]*/gi;

/** `text` with the password of every URL in it masked (see {@link redact}): what the command line prints of an error. */
export function redactUrls(text: string): string {
  return text.replace(/[a-z][a-z0-9+.-]*:\/\/[^\s"'`]+/gi, (url) => redact(url));
}

/**
 * The URL without its password: the one after the user name (up to the last `@`, as a
 * password may hold a `/` or an `@` the URL did not percent-encode; masking too much is
 * safe) and those given as query parameters.
 */
export function redact(url: string): string {
  const scheme = URL_SCHEME.exec(url)?.[0];
  let masked = url;
  if (scheme !== undefined) {
    const rest = url.slice(scheme.length);
    const at = rest.lastIndexOf('@');
    const colon = rest.indexOf(':');
    if (at >= 0 && colon >= 0 && colon < at) masked = `${scheme}${rest.slice(0, colon)}:***${rest.slice(at)}`;
  }
  return masked.replace(PASSWORD_PARAMETER, '$1***');
}

/**
 * Refuses an output file (`--out`) that is the SQLite database being read, or its journal
 * or write-ahead log, by any path (a symbolic link, `./`): opening it for writing would
 * truncate the audit trail.
 * @throws CliUsageError for such a path.
 */
export function refuseOutputOverDatabase(args: DatabaseArguments, out: string | undefined): void {
  if (out === undefined) return;
  const options = dataSourceOptions(args);
  if (options.type !== 'better-sqlite3' || typeof options.database !== 'string') return;
  const target = fileId(out);
  if (target === undefined) return;
  for (const file of ['', '-wal', '-shm', '-journal'].map((suffix) => `${options.database as string}${suffix}`)) {
    if (fileId(file) === target) throw new CliUsageError(`--out ${out} is the database being read: write elsewhere`);
  }
}

/** A file's device and inode, `undefined` when it does not exist. */
function fileId(path: string): string | undefined {
  try {
    const stat = statSync(path);
    return `${stat.dev}:${stat.ino}`;
  } catch {
    return undefined;
  }
}
