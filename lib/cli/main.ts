import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InvalidAuditProofError } from '../exceptions/invalid-audit-proof.error.js';
import { InvalidNoteKeyError } from '../exceptions/invalid-note-key.error.js';
import { MalformedAuditExportError } from '../exceptions/malformed-audit-export.error.js';
import {
  checkpointsCommand,
  exportCommand,
  keygenCommand,
  proveCommand,
  verifyCommand,
  verifyProofCommand,
  type CommandOptions,
} from './commands.js';
import { DatabaseUnavailableError, redact, redactUrls, URL_SCHEME } from './database.js';
import { processIo, type CliIo } from './output.js';
import { CliUsageError } from './usage-error.js';

/*
 * `npx nestjs-system-audit <command>`: checks an audit log's integrity from outside the
 * application. Exit codes: 0 all good, 1 problems found (or a proof that does not hold),
 * 2 the command could not run (usage, unreadable file, database unreachable).
 */

type Options = NonNullable<ParseArgsConfig['options']>;

const DATABASE: Options = {
  url: { type: 'string' },
  schema: { type: 'string' },
  'table-prefix': { type: 'string' },
};
const KEYS: Options = { 'public-key': { type: 'string', multiple: true } };
const HELP: Options = { help: { type: 'boolean', short: 'h' } };

const DATABASE_HELP = `  --url <url>             postgres://…, postgresql://…, mysql://…, mariadb://… or sqlite:<path>
  --schema <schema>       the PostgreSQL schema of the audit tables
  --table-prefix <p>      the data source's entityPrefix, if any`;
const KEYS_HELP = `  --public-key <key>      a file (PEM key, or a verifier key string) or a verifier key
                          string <name>+<key id>+<base64>; repeat for earlier keys`;

interface Command {
  summary: string;
  usage: string;
  options: Options;
  positionals?: boolean;
  run(options: CommandOptions, positionals: string[], io: CliIo): Promise<number> | number;
}

const COMMANDS: Record<string, Command> = {
  verify: {
    summary: 'check the whole log against its Merkle tree and signed checkpoints',
    usage: `nestjs-system-audit verify --url <url> --public-key <key> [--checkpoints <file>]
nestjs-system-audit verify --events <export.jsonl> --checkpoints <file> --public-key <key>

The database URL (or the export) may also be given as the argument: verify <url> …
Without --public-key everything but the checkpoints' signatures is checked, and the
output says so: whoever can write the database can also write checkpoints that agree.

Checks every sequenced event against its stored leaf, the tree against every signed
checkpoint (those stored, and those of --checkpoints, e.g. the anchor's file), or an
export against its checkpoints. Prints each problem found, one per line
("kind seq=… id=… treeSize=… message"), then a summary.
Exit code: 0 no problem, 1 problems found, 2 the check could not run.

${DATABASE_HELP}
${KEYS_HELP}
  --checkpoints <file>    signed checkpoints kept outside the database (checkpoints file)
  --events <file>         a JSON Lines export (see "export") instead of the database`,
    options: { ...DATABASE, ...KEYS, checkpoints: { type: 'string' }, events: { type: 'string' } },
    positionals: true,
    run: (options, positionals, io) => verifyCommand(withSourceArgument(options, positionals, 0, true), io),
  },
  'verify-proof': {
    summary: "check an event's inclusion proof, and optionally the event it names",
    usage: `nestjs-system-audit verify-proof <proof.json> --public-key <key> [--url <url> | --events <file>]

Checks the proof's signed checkpoint and audit path; with --url or --events, also that
the event the proof names is there, at its seq, and hashes to the proof's leaf.
Exit code: 0 the proof holds, 1 it does not, 2 the check could not run.

${KEYS_HELP}
${DATABASE_HELP}
  --events <file>         a JSON Lines export holding the event`,
    options: { ...DATABASE, ...KEYS, events: { type: 'string' } },
    positionals: true,
    run: (options, positionals, io) => verifyProofCommand(positionals[0], options, io),
  },
  export: {
    summary: 'write the events (all, or those matching filters) as JSON Lines or CSV',
    usage: `nestjs-system-audit export --url <url> [--format jsonl|csv] [filters] [--out <file>]
(or export <url> …)

JSON Lines (default): one line per event, the canonical JSON of the event (the content
of its Merkle leaf) with its "seq". Without filters: every sequenced event ascending by
seq, then those not sequenced yet ("seq":null); check it with "verify --events".
With filters, or as CSV: the matching events ascending by time (then id).
CSV: a header row, then one record per event (RFC 4180, CRLF line ends); a cell that
starts with =, +, -, @, a tab or a carriage return gets a leading ' so that a
spreadsheet does not run it as a formula.

${DATABASE_HELP}
  --format <f>            jsonl (default) or csv
  --since <time>          events at or after this ISO 8601 time (2026-01-31, 2026-01-31T12:00:00Z)
  --until <time>          events before this ISO 8601 time
  --actor <id>            events by this actor id, as stored (hmac:… when pseudonymised)
  --actor-type <type>     events by actors of this type (user, system, …)
  --action <action>       events with this action; repeat for several
  --target <type>:<id>    events about this resource, e.g. order:42
  --source <source>       events from this source (http, graphql, rpc, ws, job, cli, system, …)
  --outcome <outcome>     success, failure or unknown
  --out <file>            write there instead of standard output`,
    options: {
      ...DATABASE,
      out: { type: 'string' },
      format: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      actor: { type: 'string' },
      'actor-type': { type: 'string' },
      action: { type: 'string', multiple: true },
      target: { type: 'string' },
      source: { type: 'string' },
      outcome: { type: 'string' },
    },
    positionals: true,
    run: (options, positionals, io) => exportCommand(withSourceArgument(options, positionals, 0, false), io),
  },
  checkpoints: {
    summary: 'write the stored signed checkpoints and purge records as a checkpoints file',
    usage: `nestjs-system-audit checkpoints --url <url> [--out <file>]
(or checkpoints <url> …)

The stored checkpoint notes, and the purge records of the retention purge, ascending by
tree size, each followed by a blank line: the file "verify --checkpoints" reads.

${DATABASE_HELP}
  --out <file>            write there instead of standard output`,
    options: { ...DATABASE, out: { type: 'string' } },
    positionals: true,
    run: (options, positionals, io) => checkpointsCommand(withSourceArgument(options, positionals, 0, false), io),
  },
  keygen: {
    summary: 'print a new Ed25519 signing key and its verifier key',
    usage: `nestjs-system-audit keygen [--name <key name>]

Prints a new Ed25519 private key (PKCS#8 PEM: integrity.signingKey) and, on the last
line, its verifier key string <name>+<key id>+<base64> to check checkpoints with.
Writes nothing else.

  --name <key name>       the key name in signature lines (default "audit"; use the
                          integrity keyName, or its origin)`,
    options: { name: { type: 'string' } },
    run: (options, _, io) => keygenCommand(options, io),
  },
  prove: {
    summary: "print one event's inclusion proof (JSON) in the tree of the last checkpoint",
    usage: `nestjs-system-audit prove <id> --url <url> [--out <file>]
(or prove <id> <url> …)

The inclusion proof of event <id> in the tree of the last stored checkpoint: the JSON
that "verify-proof" and verifyInclusion() check. An event no checkpoint covers yet is
an error until the app signs the next checkpoint.
Exit code: 0 printed, 1 no proof (unknown event, not covered yet, or the event no longer
matches its leaf), 2 the command could not run.

${DATABASE_HELP}
  --out <file>            write there instead of standard output`,
    options: { ...DATABASE, out: { type: 'string' } },
    positionals: true,
    run: (options, positionals, io) => proveCommand(positionals[0], withSourceArgument(options, positionals, 1, false), io),
  },
};

const GENERAL_HELP = `Usage: nestjs-system-audit <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, command]) => `  ${name.padEnd(14)}${command.summary}`)
  .join('\n')}

Run "nestjs-system-audit <command> --help" for a command's options.
Exit codes: 0 ok, 1 problems found, 2 the command could not run.`;

/**
 * Runs the command line `argv` (without `node` and the script), writing to `io` (the
 * process's standard output and error by default); resolves to the exit code. It sets no
 * `process.exitCode` and leaves nothing open: it can run many times in one process.
 */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout).write(`${GENERAL_HELP}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    io.stderr.write(`nestjs-system-audit: unknown command ${JSON.stringify(name)}\n\n${GENERAL_HELP}\n`);
    return 2;
  }
  try {
    const { values, positionals } = parseArgs({
      args: [...rest],
      options: { ...command.options, ...HELP },
      allowPositionals: command.positionals ?? false,
      strict: true,
    });
    if (values['help']) {
      io.stdout.write(`Usage: ${command.usage}\n`);
      return 0;
    }
    return await command.run(values as CommandOptions, positionals, io);
  } catch (err) {
    if (isUsageError(err)) {
      io.stderr.write(`nestjs-system-audit ${name}: ${redactUrls((err as Error).message)}\n(see nestjs-system-audit ${name} --help)\n`);
      return 2;
    }
    if (
      err instanceof DatabaseUnavailableError ||
      err instanceof MalformedAuditExportError ||
      err instanceof InvalidAuditProofError ||
      err instanceof InvalidNoteKeyError ||
      isFileError(err)
    ) {
      io.stderr.write(`nestjs-system-audit ${name}: ${redactUrls((err as Error).message)}\n`);
      return 2;
    }
    throw err;
  }
}

/** A database URL as the command line takes it (see `dataSourceOptions`). */
const DATABASE_URL = /^(postgres|postgresql|mysql|mariadb|sqlite):/i;

/**
 * The options with the command's argument at `at` (if any) read as where the events are:
 * a database URL (`--url`), or for verify (`events`) a JSON Lines export (`--events`).
 * @throws CliUsageError for a second argument, or a source also given by option.
 */
function withSourceArgument(options: CommandOptions, positionals: string[], at: number, events: boolean): CommandOptions {
  if (positionals.length > at + 1) throw new CliUsageError(`unexpected argument ${JSON.stringify(redact(positionals[at + 1]!))}`);
  const given = positionals[at];
  if (given === undefined) return options;
  const isUrl = DATABASE_URL.test(given);
  // Never the password of a URL.
  const shown = JSON.stringify(redact(given));
  // Only verify takes an export (a file path); `scheme://…` is meant as a URL, in a scheme not taken.
  if (!isUrl && (!events || URL_SCHEME.test(given))) throw new CliUsageError(`${shown} is not a database URL (postgres://…, mysql://…, mariadb://… or sqlite:<path>)`);
  if (options.url !== undefined || options.events !== undefined) throw new CliUsageError(`${shown}: the events are already named by ${options.url !== undefined ? '--url' : '--events'}`);
  return isUrl ? { ...options, url: given } : { ...options, events: given };
}

/** A usage error of ours, or one of parseArgs (unknown option, missing value). */
function isUsageError(err: unknown): boolean {
  if (err instanceof CliUsageError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

/** A file that cannot be read or written (ENOENT, EACCES, …). */
function isFileError(err: unknown): boolean {
  const error = err as { code?: unknown; syscall?: unknown } | null;
  return typeof error?.code === 'string' && typeof error.syscall === 'string';
}
