import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { createSampleApp } from './create-sample-app.js';

/** A whole number from the environment, or the default; anything else stops the start. */
function intFromEnv(name: string, fallback: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > max) throw new Error(`${name} must be a whole number from 0 to ${max}, got "${raw}"`);
  return value;
}

async function main(): Promise<void> {
  // Compiled to sample-app/.build/main.js, so the default database is sample-app/.data/.
  const sqliteFile = fileURLToPath(new URL('../.data/sample.sqlite', import.meta.url));
  const { app, url, database } = await createSampleApp({
    database: process.env['DATABASE_URL'] || sqliteFile,
    port: intFromEnv('PORT', 3000, 65535),
    expiryIntervalSeconds: intFromEnv('EXPIRY_INTERVAL_SECONDS', 60, 86_400),
    orderTtlSeconds: intFromEnv('ORDER_TTL_SECONDS', 1800, 31_536_000),
  });
  app.enableShutdownHooks();

  const bob = `-H 'Authorization: Bearer bob-token'`;
  const alice = `-H 'Authorization: Bearer alice-token'`;
  console.log(`
Orders sample listening on ${url}
Database: ${database.label}
Tokens: alice-token (admin), bob-token, carol-token

Try (the first command returns the order's id; 1 on a fresh database):
  curl -s -X POST ${url}/orders ${bob} -H 'Content-Type: application/json' -d '{"description":"Espresso beans, 1 kg","totalCents":2400}'
  curl -s -X POST ${url}/orders/1/pay ${bob}
  curl -s '${url}/api/audit?targetType=order&targetId=1' ${alice}

The trail in a browser (admins): ${url}/audit?token=alice-token
`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exit(1);
});
