// Empties the sample app's database, so that `npm start` begins again from order 1:
//
//   npm run sample:reset                                   # SQLite: deletes sample-app/.data/
//   DATABASE_URL=postgres://… npm run sample:reset         # drops the schema sample_app
//   DATABASE_URL=mysql://…/orders_sample npm run sample:reset   # drops the URL's database
//
// Stop the sample first. Give the same DATABASE_URL as to `npm start`.
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const url = process.env.DATABASE_URL ?? '';
const scheme = /^([a-z0-9+]+):\/\//i.exec(url)?.[1]?.toLowerCase();

if (!scheme) {
  const folder = fileURLToPath(new URL('../sample-app/.data/', import.meta.url));
  rmSync(folder, { recursive: true, force: true });
  console.log(`sample:reset: deleted ${folder}`);
} else if (scheme === 'postgres' || scheme === 'postgresql') {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('DROP SCHEMA IF EXISTS "sample_app" CASCADE');
  } finally {
    await client.end();
  }
  console.log('sample:reset: dropped the schema sample_app');
} else if (scheme === 'mysql' || scheme === 'mariadb') {
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`DATABASE_URL must name a database, e.g. ${scheme}://root@127.0.0.1:3306/orders_sample`);
  const server = new URL(url);
  server.pathname = '/';
  server.protocol = 'mysql:';
  const { default: mysql } = await import('mysql2/promise');
  const connection = await mysql.createConnection(server.href);
  try {
    await connection.query(`DROP DATABASE IF EXISTS \`${name}\``);
  } finally {
    await connection.end();
  }
  console.log(`sample:reset: dropped the database ${name}`);
} else {
  throw new Error(`DATABASE_URL: unsupported scheme "${scheme}:" (use postgres://, mysql:// or mariadb://, or leave it unset for SQLite)`);
}
