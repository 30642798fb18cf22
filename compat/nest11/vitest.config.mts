// Runs the repository's own test suite (test/e2e and test/unit, against lib/ sources)
// on NestJS 11 + TypeORM 0.3 instead of the repository's NestJS 12 + TypeORM 1.
//
// Every bare import made by lib/ and test/ of the packages below is aliased into this
// project's node_modules, so a test never loads one of them from the repository's own
// node_modules. `vitest` itself is aliased too: the specs must talk to the runner that
// is executing them, which is this project's copy.
//
// The test options (timeouts, pool, execArgv, global setup, …) are the repository's own,
// read from its vitest.config.ts, so the two runs cannot drift apart; only `include`,
// the aliases and the SWC plugin instance are this project's.
//
//   cd compat/nest11 && npx vitest run --config vitest.config.mts
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import swc from 'unplugin-swc';
import { configDefaults, defineConfig, type Alias, type Plugin, type UserConfig } from 'vitest/config';
import repoConfigExport from '../../vitest.config.ts';

const here = fileURLToPath(new URL('.', import.meta.url));
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const nodeModules = `${here}node_modules`;

/** The packages whose copy under test is this project's, not the repository's. */
export const ALIASED_PACKAGES = [
  '@nestjs/common',
  '@nestjs/core',
  '@nestjs/platform-express',
  '@nestjs/platform-fastify',
  '@nestjs/testing',
  '@nestjs/typeorm',
  // Used by the test fixtures, in their NestJS 11 lines (schedule 6, graphql/apollo 13).
  '@nestjs/schedule',
  '@nestjs/graphql',
  '@nestjs/apollo',
  '@nestjs/microservices',
  '@nestjs/websockets',
  '@nestjs/platform-ws',
  '@nestjs/platform-socket.io',
  'socket.io-client',
  // NATS headers built by test/e2e/microservice.e2e.spec.ts (NestJS 11's NATS transport itself uses `nats`).
  '@nats-io/transport-node',
  // The gRPC client and proto loader of test/e2e/grpc.e2e.spec.ts (NestJS' gRPC transport loads its own).
  '@grpc/grpc-js',
  '@grpc/proto-loader',
  'ws',
  // Transactions through the two libraries apps most use for them (test/e2e/cls-transactional.e2e.spec.ts,
  // test/e2e/typeorm-transactional*.e2e.spec.ts), on NestJS 11 and TypeORM 0.3.
  'nestjs-cls',
  '@nestjs-cls/transactional',
  '@nestjs-cls/transactional-adapter-typeorm',
  'typeorm-transactional',
  'typeorm',
  'rxjs',
  'reflect-metadata',
  // The package's own dependencies, as a user's install would provide them.
  'class-validator',
  'canonicalize',
  'csv-stringify',
  // Database clients used by test/support to create and drop the per-suite databases.
  'pg',
  'mysql2',
  // The runner.
  'vitest',
];

const escape = (name: string) => name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * Subpaths that exist only in a package's `exports` map (no file at that path): resolved
 * to the file the map names for `import`, before the general rule below.
 */
const EXPORTED_SUBPATHS: Alias[] = [{ find: /^csv-stringify\/sync$/, replacement: `${nodeModules}/csv-stringify/lib/sync.js` }];

/** `name` exactly, and `name/<subpath>`, both resolved inside this project's node_modules. */
const aliases: Alias[] = [
  ...EXPORTED_SUBPATHS,
  ...ALIASED_PACKAGES.map((name) => ({
    find: new RegExp(`^${escape(name)}(/.*)?$`),
    replacement: `${nodeModules}/${name}$1`,
  })),
];

/**
 * Fails the run when lib/ or test/ imports a package that is not aliased above: it would
 * silently load from the repository's node_modules (NestJS 12 / TypeORM 1 side).
 */
const onlyAliasedPackages: Plugin = {
  name: 'compat-only-aliased-packages',
  enforce: 'pre',
  resolveId(source, importer) {
    if (!importer?.startsWith(`${repoRoot}lib/`) && !importer?.startsWith(`${repoRoot}test/`)) return null;
    if (/^[./\0]|^[a-zA-Z]:[\\/]|^node:/.test(source) || builtinModules.includes(source.split('/')[0]!)) return null;
    this.error(
      `${importer.slice(repoRoot.length)} imports "${source}", which compat/nest11 does not provide: ` +
        'add it to compat/nest11/package.json and to ALIASED_PACKAGES in compat/nest11/vitest.config.mts',
    );
  },
};

const repoConfig: UserConfig =
  typeof repoConfigExport === 'function' ? await (repoConfigExport as (env: object) => UserConfig | Promise<UserConfig>)({ mode: 'test', command: 'serve' }) : repoConfigExport;
const { include: _repoInclude, ...repoTest } = repoConfig.test ?? {};
const repoAliases: Alias[] = Array.isArray(repoConfig.resolve?.alias)
  ? repoConfig.resolve.alias
  : Object.entries(repoConfig.resolve?.alias ?? {}).map(([find, replacement]) => ({ find, replacement: replacement as string }));

export default defineConfig({
  root: repoRoot,
  cacheDir: `${nodeModules}/.vite`,
  plugins: [onlyAliasedPackages, swc.vite({ module: { type: 'es6' } })],
  resolve: { alias: [...aliases, ...repoAliases] },
  test: {
    ...repoTest,
    include: ['test/e2e/**/*.spec.ts', 'test/unit/**/*.spec.ts'],
    // NestJS 11 does not apply global interceptors or guards to WebSocket gateways
    // (@nestjs/websockets 11 builds their context creators without the application
    // config), so gateway calls are not recorded there: WebSocket recording is NestJS 12+.
    // The README's quick start is compiled with TypeScript and booted by the repository's
    // own run; here a NestJS 11 install is covered by the smoke app of scripts/compat.mjs.
    // The viewer's browser spec drives Chromium through playwright-core, which this project
    // does not install: what it checks is the HTML in a browser, the same whichever NestJS
    // served it; the viewer's HTTP spec (test/e2e/viewer.e2e.spec.ts) runs here on NestJS 11.
    exclude: [...configDefaults.exclude, 'test/e2e/websocket.e2e.spec.ts', 'test/e2e/quick-start.e2e.spec.ts', 'test/e2e/viewer.browser.e2e.spec.ts'],
  },
});
