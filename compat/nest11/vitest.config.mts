// Runs the repository's own test suite (test/e2e and test/unit, against lib/ sources)
// on NestJS 11 + TypeORM 0.3 instead of the repository's NestJS 12 + TypeORM 1.
//
// Every bare import made by lib/ and test/ of the packages below is aliased into this
// project's node_modules, so a test never loads one of them from the repository's own
// node_modules. `vitest` itself is aliased too: the specs must talk to the runner that
// is executing them, which is this project's copy.
//
//   cd compat/nest11 && npx vitest run --config vitest.config.mts
import { fileURLToPath } from 'node:url';
import swc from 'unplugin-swc';
import { defineConfig, type Alias } from 'vitest/config';

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
  'typeorm',
  'rxjs',
  'reflect-metadata',
  // The package's own dependency, as a user's install would provide it.
  'class-validator',
  // Database clients used by test/support to create and drop the per-suite databases.
  'pg',
  'mysql2',
  // The runner.
  'vitest',
];

const escape = (name: string) => name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** `name` exactly, and `name/<subpath>`, both resolved inside this project's node_modules. */
const aliases: Alias[] = ALIASED_PACKAGES.map((name) => ({
  find: new RegExp(`^${escape(name)}(/.*)?$`),
  replacement: `${nodeModules}/${name}$1`,
}));

export default defineConfig({
  root: repoRoot,
  cacheDir: `${nodeModules}/.vite`,
  plugins: [swc.vite({ module: { type: 'es6' } })],
  resolve: { alias: aliases },
  test: {
    include: ['test/e2e/**/*.spec.ts', 'test/unit/**/*.spec.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
