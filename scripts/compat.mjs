// Proves the published package works for both of its user populations:
//
//   compat/nest11      CommonJS app on NestJS 11 + TypeORM 0.3 (dist/cjs), and the
//                      repository's own e2e and unit suites run against that older pair;
//   compat/nest12-esm  ESM app on NestJS 12 + TypeORM 1 (dist/esm).
//
// Both apps install the package from the tarball `npm pack` makes here (which builds it
// via `prepack`), exactly as a user would, never from lib/ or a link. The tarball's file
// list is checked too: both builds with their .d.ts, README.md and docs/, no tests or sources.
// Each project gets `npm ci` only when its node_modules is missing or stale.
//
//   npm run test:compat        # or: node scripts/compat.mjs [--verbose] [--strict]
//
// --verbose streams every command's output; --strict counts KNOWN_ISSUES failures too.
// Full logs go to a temporary folder, kept (and named in the summary) when a step fails.
//
// CI=true is passed through: as in the main suite, PostgreSQL and MariaDB are then
// mandatory (the global test setup and the smoke apps fail when they are unreachable);
// otherwise their parts are skipped loudly. Exits non-zero when any step fails.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VERBOSE = process.argv.includes('--verbose');
const STRICT = process.argv.includes('--strict');
const IS_WINDOWS = process.platform === 'win32';

/**
 * Failures of the NestJS 11 + TypeORM 0.3 suite run that are still run and shown but do
 * not fail the command, each with the reason. A failed test is attributed to an entry when
 * its describe/test titles contain "on <key>" (the suites' `describe.each(databases())`
 * titles); any other failure counts. `--strict` makes these count too. Remove an entry once
 * it passes: the summary says when it does.
 */
const KNOWN_ISSUES = {};

const PROJECTS = [
  {
    name: 'nest11',
    dir: join(ROOT, 'compat', 'nest11'),
    // tsconfig.json emits (module: commonjs); tsconfig.nodenext.json only type-checks the
    // package's require-condition types the way a `module: nodenext` CommonJS app sees them.
    tsconfigs: ['tsconfig.json', 'tsconfig.nodenext.json'],
    suite: true,
  },
  {
    name: 'nest12-esm',
    dir: join(ROOT, 'compat', 'nest12-esm'),
    tsconfigs: ['tsconfig.json'],
    suite: false,
  },
];

const work = mkdtempSync(join(tmpdir(), 'nestjs-system-audit-compat-'));
const logs = join(work, 'logs');
mkdirSync(logs);

/** @type {Array<{ label: string, status: 'PASS' | 'FAIL' | 'SKIP' | 'KNOWN', detail: string, ms: number }>} */
const results = [];
const started = Date.now();

function record(label, status, detail, ms = 0) {
  results.push({ label, status, detail, ms });
  const time = ms ? ` (${(ms / 1000).toFixed(1)}s)` : '';
  console.log(`[compat] ${status.padEnd(5)} ${label}${detail ? ` — ${detail}` : ''}${time}`);
}

/**
 * Runs a command, capturing stdout and stderr together into a log file (and to the
 * console with --verbose). Resolves with the exit code and the captured output.
 */
function run(label, command, args, { cwd = ROOT, env = {} } = {}) {
  const file = join(logs, `${label.replace(/[^\w.-]+/g, '_')}.log`);
  const begin = Date.now();
  if (VERBOSE) console.log(`[compat] $ (${cwd}) ${command} ${args.join(' ')}`);
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      shell: IS_WINDOWS,
    });
    let output = '';
    let stdout = '';
    const collect = (chunk) => {
      output += chunk;
      if (VERBOSE) process.stdout.write(chunk);
    };
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      collect(chunk);
    });
    child.stderr.on('data', collect);
    child.on('error', (error) => collect(`\n${error.stack ?? error}\n`));
    child.on('close', (code, signal) => {
      writeFileSync(file, output);
      resolve({ code: code ?? 1, signal, output, stdout, ms: Date.now() - begin, log: file });
    });
  });
}

/** The last lines of a step's output, for the console when it fails (the full log is on disk). */
function tail(output, lines = 60) {
  const all = output.trimEnd().split('\n');
  return (all.length > lines ? [`… (${all.length - lines} earlier lines in the log)`] : []).concat(all.slice(-lines)).join('\n');
}

function fail(label, result, detail) {
  record(label, 'FAIL', `${detail}; log: ${result.log}`, result.ms);
  if (!VERBOSE) console.log(tail(result.output).replace(/^/gm, '    | '));
}

const npm = IS_WINDOWS ? 'npm.cmd' : 'npm';

/** A fingerprint of what `npm ci` installed from: the lock file and the Node ABI (native modules). */
function depsFingerprint(dir) {
  const hash = createHash('sha256');
  hash.update(readFileSync(join(dir, 'package-lock.json')));
  hash.update(readFileSync(join(dir, 'package.json')));
  hash.update(`${process.platform}-${process.arch}-${process.versions.modules}`);
  return hash.digest('hex');
}

/** `npm ci` when node_modules is missing or was installed from another lock file or Node ABI. */
async function ensureDependencies(project) {
  const label = `${project.name}: dependencies`;
  const stamp = join(project.dir, 'node_modules', '.compat-fingerprint');
  const fingerprint = depsFingerprint(project.dir);
  const current = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : undefined;
  if (current === fingerprint) {
    record(label, 'PASS', 'node_modules up to date with package-lock.json');
    return true;
  }
  const why = existsSync(join(project.dir, 'node_modules')) ? 'stale' : 'missing';
  const result = await run(`${project.name}-npm-ci`, npm, ['ci', '--no-audit', '--no-fund'], { cwd: project.dir });
  if (result.code !== 0) {
    fail(label, result, `npm ci failed (node_modules was ${why})`);
    return false;
  }
  writeFileSync(stamp, `${fingerprint}\n`);
  record(label, 'PASS', `npm ci (node_modules was ${why})`, result.ms);
  return true;
}

/** `npm pack` at the root (prepack builds dist/); returns the tarball path and its file list. */
async function pack() {
  const label = 'pack';
  if (!existsSync(join(ROOT, 'node_modules', 'typescript'))) {
    record(label, 'FAIL', 'the repository has no node_modules: run `npm ci` at its root first');
    return undefined;
  }
  const destination = join(work, 'pack');
  mkdirSync(destination);
  const result = await run('npm-pack', npm, ['pack', '--json', '--pack-destination', destination]);
  const tarballs = existsSync(destination) ? readdirSync(destination).filter((name) => name.endsWith('.tgz')) : [];
  if (result.code !== 0 || tarballs.length !== 1) {
    fail(label, result, `npm pack failed (exit ${result.code})`);
    return undefined;
  }
  // prepack's own output (the build's) precedes npm's JSON report on stdout.
  let files;
  try {
    files = JSON.parse(result.stdout.slice(result.stdout.search(/^\[\s*$/m)))[0].files.map((file) => file.path);
  } catch {
    fail(label, result, 'could not read the file list from `npm pack --json`');
    return undefined;
  }
  record(label, 'PASS', `${tarballs[0]}, ${files.length} files`, result.ms);
  return { tarball: join(destination, tarballs[0]), files };
}

/** What the published package must (and must not) contain. */
function checkContents(files) {
  const label = 'package contents';
  const problems = [];
  const has = new Set(files);
  // README.md links to docs/: the reference pages ship with it.
  const required = ['package.json', 'README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  for (const format of ['esm', 'cjs']) {
    required.push(`dist/${format}/index.js`, `dist/${format}/index.d.ts`, `dist/${format}/package.json`);
    for (const file of files.filter((f) => f.startsWith(`dist/${format}/`) && f.endsWith('.js'))) {
      if (!has.has(file.replace(/\.js$/, '.d.ts'))) problems.push(`${file} has no .d.ts`);
    }
  }
  for (const file of required) if (!has.has(file)) problems.push(`missing ${file}`);
  const strip = (format) => new Set(files.filter((f) => f.startsWith(`dist/${format}/`)).map((f) => f.slice(`dist/${format}/`.length)));
  const [esm, cjs] = [strip('esm'), strip('cjs')];
  for (const file of esm) if (!cjs.has(file)) problems.push(`dist/esm/${file} has no dist/cjs counterpart`);
  for (const file of cjs) if (!esm.has(file)) problems.push(`dist/cjs/${file} has no dist/esm counterpart`);
  const allowedOutsideDist = /^(package\.json|README\.md|CHANGELOG\.md|LICEN[CS]E(\.md|\.txt)?|docs\/[a-z0-9-]+\.md|docs\/images\/[a-z0-9-]+\.png|bin\/nestjs-system-audit\.mjs)$/i;
  for (const file of files) {
    if (/(^|\/)(test|tests|__tests__)\/|\.(spec|test)\.[cm]?[jt]s$/.test(file)) problems.push(`test file shipped: ${file}`);
    else if (!file.startsWith('dist/') && !allowedOutsideDist.test(file)) problems.push(`unexpected file shipped: ${file}`);
  }
  const count = (prefix, suffix) => files.filter((f) => f.startsWith(prefix) && f.endsWith(suffix)).length;
  const summary =
    `dist/esm ${count('dist/esm/', '.js')} js + ${count('dist/esm/', '.d.ts')} d.ts, ` +
    `dist/cjs ${count('dist/cjs/', '.js')} js + ${count('dist/cjs/', '.d.ts')} d.ts, ` +
    `${['README.md', 'CHANGELOG.md', 'package.json'].map((f) => `${f} ${has.has(f) ? 'yes' : 'no'}`).join(', ')}`;
  if (problems.length) {
    record(label, 'FAIL', `${summary}\n    - ${problems.join('\n    - ')}`);
    return false;
  }
  record(label, 'PASS', summary);
  return true;
}

/** Installs the tarball, compiles the smoke app with tsc and runs it. */
async function smoke(project, tarball) {
  // The tarball keeps its name from one build to the next: remove the old copy so npm installs this one.
  rmSync(join(project.dir, 'node_modules', 'nestjs-system-audit'), { recursive: true, force: true });
  const install = await run(`${project.name}-install-tarball`, npm, ['install', '--no-save', '--no-audit', '--no-fund', tarball], {
    cwd: project.dir,
  });
  if (install.code !== 0) {
    fail(`${project.name}: install tarball`, install, 'npm install --no-save <tarball> failed');
    return false;
  }
  record(`${project.name}: install tarball`, 'PASS', 'npm install --no-save', install.ms);

  rmSync(join(project.dir, 'dist'), { recursive: true, force: true });
  const tsc = join(project.dir, 'node_modules', 'typescript', 'bin', 'tsc');
  for (const tsconfig of project.tsconfigs) {
    const label = `${project.name}: tsc -p ${tsconfig}`;
    const result = await run(`${project.name}-tsc-${tsconfig}`, process.execPath, [tsc, '-p', tsconfig], { cwd: project.dir });
    if (result.code !== 0) {
      fail(label, result, 'type errors');
      return false;
    }
    record(label, 'PASS', '', result.ms);
  }

  const label = `${project.name}: smoke app`;
  const result = await run(`${project.name}-smoke`, process.execPath, ['dist/smoke.js'], { cwd: project.dir });
  const lines = result.output.trimEnd().split('\n');
  if (result.code !== 0) {
    fail(label, result, `exit ${result.code}`);
    return false;
  }
  const scenarios = lines.filter((line) => /^\s+ok\s/.test(line)).map((line) => line.trim().replace(/^ok\s+/, ''));
  const skipped = lines.filter((line) => line.includes('SKIPPING'));
  record(label, 'PASS', `${scenarios.join('; ')}${skipped.length ? ` [${skipped.join(' ')}]` : ''}`, result.ms);
  return true;
}

/** The repository's e2e and unit suites under NestJS 11 + TypeORM 0.3, on every reachable database. */
async function suite(project) {
  const label = `${project.name}: test/e2e + test/unit (lib/ sources)`;
  const report = join(logs, `${project.name}-vitest.json`);
  const result = await run(
    `${project.name}-vitest`,
    process.execPath,
    [
      join(project.dir, 'node_modules', 'vitest', 'vitest.mjs'),
      'run',
      '--config',
      'vitest.config.mts',
      '--reporter=default',
      '--reporter=json',
      `--outputFile.json=${report}`,
    ],
    { cwd: project.dir },
  );
  const counts = ['Test Files', 'Tests']
    .map((name) => new RegExp(`^\\s*${name}\\s+(.+?)\\s*$`, 'm').exec(result.output)?.[1])
    .filter(Boolean)
    .map((text, i) => `${i ? 'tests' : 'files'}: ${text}`)
    .join('; ');
  // Sort the failures: those of a known issue, and the rest.
  let json;
  try {
    json = JSON.parse(readFileSync(report, 'utf8'));
  } catch {
    json = undefined;
  }
  const known = new Map();
  const other = [];
  for (const file of json?.testResults ?? []) {
    const failed = file.assertionResults.filter((test) => test.status === 'failed');
    if (file.status === 'failed' && failed.length === 0) other.push(`${file.name.replace(ROOT, '')}: ${(file.message || 'failed').split('\n')[0]}`);
    for (const test of failed) {
      const name = [...test.ancestorTitles, test.title].join(' > ');
      const issue = Object.keys(KNOWN_ISSUES).find((key) => new RegExp(`\\bon ${key}\\b`).test(name));
      if (issue && !STRICT) known.set(issue, [...(known.get(issue) ?? []), name]);
      else other.push(`${file.name.replace(ROOT, '')} > ${name}`);
    }
  }

  const notes = Object.keys(KNOWN_ISSUES)
    .filter((issue) => result.code === 0 || (json && !known.has(issue)))
    .map((issue) => `known issue "${issue}" passes now: remove it from KNOWN_ISSUES in scripts/compat.mjs`);
  if (result.code === 0) {
    record(label, 'PASS', [counts, ...notes].join('; '), result.ms);
    return true;
  }
  if (json && other.length === 0 && known.size > 0) {
    const total = [...known.values()].flat().length;
    record(label, 'PASS', [`${counts} — every failure (${total}) is a known issue, below`, ...notes].join('; '), result.ms);
    for (const [issue, names] of known) {
      record(`${project.name}: known issue "${issue}"`, 'KNOWN', `${names.length} failing tests not counted: ${KNOWN_ISSUES[issue]}; log: ${result.log}`);
      if (!VERBOSE) console.log(names.map((name) => `FAIL ${name}`).join('\n').replace(/^/gm, '    | '));
    }
    return true;
  }
  const knownCount = [...known.values()].flat().length;
  fail(label, result, `${counts || `exit ${result.code}`}${knownCount ? ` (${knownCount} of the failures are known issues, ${other.length} are not)` : ''}`);
  if (other.length && !VERBOSE) console.log(`    failures that count:\n${other.map((line) => `    - ${line}`).join('\n')}`);
  return false;
}

async function main() {
  console.log(`[compat] nestjs-system-audit compatibility run (CI=${process.env.CI ?? ''}); logs in ${logs}`);

  // Packing (tsc builds) and installing the two projects (native better-sqlite3 builds) overlap.
  const [packed, ...installed] = await Promise.all([pack(), ...PROJECTS.map(ensureDependencies)]);
  const contentsOk = packed ? checkContents(packed.files) : false;

  const smokes = await Promise.all(
    PROJECTS.map((project, i) => {
      if (!installed[i] || !packed) {
        record(`${project.name}: smoke app`, 'SKIP', !packed ? 'no tarball' : 'dependencies not installed');
        return false;
      }
      return smoke(project, packed.tarball);
    }),
  );

  const suites = [];
  for (const [i, project] of PROJECTS.entries()) {
    if (!project.suite) continue;
    if (!installed[i]) {
      record(`${project.name}: test/e2e + test/unit`, 'SKIP', 'dependencies not installed');
      suites.push(false);
      continue;
    }
    suites.push(await suite(project));
  }

  const failed = results.filter((result) => result.status === 'FAIL' || result.status === 'SKIP');
  const ok = contentsOk && smokes.every(Boolean) && suites.every(Boolean) && failed.length === 0;
  const width = Math.max(...results.map((result) => result.label.length));
  console.log(`\n[compat] summary (${((Date.now() - started) / 1000).toFixed(0)}s)`);
  for (const result of results) {
    const time = result.ms ? `${(result.ms / 1000).toFixed(1)}s`.padStart(7) : ''.padStart(7);
    console.log(`  ${result.status.padEnd(5)} ${result.label.padEnd(width)} ${time}  ${result.detail.split('\n')[0]}`);
  }
  if (ok) {
    rmSync(work, { recursive: true, force: true });
    console.log('[compat] OK: the packed package works on NestJS 11 (CommonJS) and NestJS 12 (ESM).');
  } else {
    console.log(`[compat] FAILED: ${failed.map((result) => result.label).join(', ')}. Logs and tarball kept in ${work}`);
  }
  process.exitCode = ok ? 0 : 1;
}

main().catch((error) => {
  console.error(`[compat] crashed: ${error?.stack ?? error}`);
  process.exitCode = 1;
});
