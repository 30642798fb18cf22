import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  plugins: [swc.vite({ module: { type: 'es6' } })],
  resolve: {
    // Code that imports the package by name (the sample app) is tested against the source.
    alias: { 'nestjs-system-audit': fileURLToPath(new URL('./lib/index.ts', import.meta.url)) },
  },
  test: {
    include: ['test/**/*.spec.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Files mostly wait on databases and child processes: at least 4 at a time, not Vitest's cores - 1 (one file on 2 cores).
    maxWorkers: Math.max(4, availableParallelism() - 1),
    // As behind a proxy that passes large headers on: the module, not Node, must bound them.
    execArgv: ['--max-http-header-size=131072'],
    reporters: ['default'],
  },
});
