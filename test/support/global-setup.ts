import type { TestProject } from 'vitest/node';
import { probeDatabases, type DatabaseKind } from './database-probe.js';

declare module 'vitest' {
  export interface ProvidedContext {
    databases: DatabaseKind[];
  }
}

/**
 * Finds which database servers are reachable. With CI=true PostgreSQL and MariaDB are
 * mandatory: the run fails if either is down. Elsewhere their suites are skipped,
 * loudly, and everything still runs on SQLite.
 */
export default async function setup(project: TestProject): Promise<void> {
  const { available, missing } = await probeDatabases();
  if (missing.length) {
    const lines = missing.map(({ kind, error }) => `  - ${kind}: ${error}`).join('\n');
    if (process.env['CI'] === 'true') {
      throw new Error(`CI=true and the database suites are mandatory, but these servers are unreachable:\n${lines}`);
    }
    const bar = '!'.repeat(78);
    console.warn(`\n${bar}\n!! SKIPPING database suites (set CI=true to make them mandatory):\n${lines}\n${bar}\n`);
  }
  project.provide('databases', ['sqlite', ...available]);
}
