// Databases of the integrity scenarios, named as a user's would be (a table prefix, a
// PostgreSQL schema or MariaDB database of mixed case), and a signed-note writer made
// from the C2SP signed-note specification alone, for checkpoints forged with a stolen key.
import { createHash, createPublicKey, randomBytes, sign, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import type { DataSource, DataSourceOptions } from 'typeorm';
import { MARIADB, POSTGRES, type DatabaseKind } from './database-probe.js';
import type { TestDatabase } from './test-database.js';

export const RVA_PREFIX = 'intS_';

/** A database of one's own, with the CLI arguments that name it, and a way to copy its audit tables elsewhere. */
export interface ScenarioDatabase {
  db: TestDatabase;
  /** `--url …` (and `--schema …`) and `--table-prefix intS_`. */
  url: string[];
  /** Copies the audit tables, as they are now, to a fresh database; returns the CLI arguments naming the copy. */
  copy(dataSource: DataSource): Promise<string[]>;
}

const pgUrl = `postgres://${POSTGRES.user}@${POSTGRES.host}:${POSTGRES.port}/${POSTGRES.database}`;
const mariaUrl = (database: string) => `mariadb://${MARIADB.user}@${MARIADB.host}:${MARIADB.port}/${database}`;
const AUDIT_TABLES = ['audit_log', 'audit_tree', 'audit_checkpoint'];

export async function scenarioDatabase(kind: DatabaseKind, dir: string): Promise<ScenarioDatabase> {
  const suffix = randomBytes(4).toString('hex');
  const cleanups: Array<() => Promise<void>> = [];
  if (kind === 'sqlite') {
    const file = join(dir, `intS-${suffix}.sqlite`);
    const options = { type: 'better-sqlite3', database: file, entityPrefix: RVA_PREFIX } as DataSourceOptions;
    return {
      db: { kind, options, drop: async () => undefined },
      url: ['--url', `sqlite:${file}`, '--table-prefix', RVA_PREFIX],
      copy: async (dataSource) => {
        const target = join(dir, `intS-copy-${randomBytes(4).toString('hex')}.sqlite`);
        await dataSource.query(`VACUUM INTO '${target}'`);
        return ['--url', `sqlite:${target}`, '--table-prefix', RVA_PREFIX];
      },
    };
  }
  if (kind === 'postgres') {
    const schema = `intS_${suffix}`;
    const run = async (sql: string) => {
      const client = new pg.Client(POSTGRES);
      await client.connect();
      try {
        await client.query(sql);
      } finally {
        await client.end();
      }
    };
    await run(`CREATE SCHEMA "${schema}"`);
    cleanups.push(() => run(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
    const options = {
      type: 'postgres',
      host: POSTGRES.host,
      port: POSTGRES.port,
      username: POSTGRES.user,
      password: POSTGRES.password,
      database: POSTGRES.database,
      schema,
      entityPrefix: RVA_PREFIX,
      extra: { max: 20 },
    } as DataSourceOptions;
    return {
      db: { kind, options, drop: async () => { for (const c of cleanups) await c(); } },
      url: ['--url', pgUrl, '--schema', schema, '--table-prefix', RVA_PREFIX],
      copy: async () => {
        const target = `intS_copy_${randomBytes(4).toString('hex')}`;
        await run(`CREATE SCHEMA "${target}"`);
        cleanups.push(() => run(`DROP SCHEMA IF EXISTS "${target}" CASCADE`));
        for (const t of AUDIT_TABLES) {
          const name = `${RVA_PREFIX}${t}`;
          await run(`CREATE TABLE "${target}"."${name}" (LIKE "${schema}"."${name}" INCLUDING ALL)`);
          await run(`INSERT INTO "${target}"."${name}" SELECT * FROM "${schema}"."${name}"`);
        }
        return ['--url', pgUrl, '--schema', target, '--table-prefix', RVA_PREFIX];
      },
    };
  }
  const database = `intS_${suffix}`;
  const run = async (sql: string) => {
    const client = await mysql.createConnection(MARIADB);
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await run(`CREATE DATABASE \`${database}\``);
  cleanups.push(() => run(`DROP DATABASE IF EXISTS \`${database}\``));
  const options = {
    type: 'mariadb',
    host: MARIADB.host,
    port: MARIADB.port,
    username: MARIADB.user,
    password: MARIADB.password,
    database,
    entityPrefix: RVA_PREFIX,
    extra: { connectionLimit: 20 },
  } as DataSourceOptions;
  return {
    db: { kind, options, drop: async () => { for (const c of cleanups) await c(); } },
    url: ['--url', mariaUrl(database), '--table-prefix', RVA_PREFIX],
    copy: async () => {
      const target = `intS_copy_${randomBytes(4).toString('hex')}`;
      await run(`CREATE DATABASE \`${target}\``);
      cleanups.push(() => run(`DROP DATABASE IF EXISTS \`${target}\``));
      for (const t of AUDIT_TABLES) {
        const name = `${RVA_PREFIX}${t}`;
        await run(`CREATE TABLE \`${target}\`.\`${name}\` LIKE \`${database}\`.\`${name}\``);
        await run(`INSERT INTO \`${target}\`.\`${name}\` SELECT * FROM \`${database}\`.\`${name}\``);
      }
      return ['--url', mariaUrl(target), '--table-prefix', RVA_PREFIX];
    },
  };
}

/** The raw 32 bytes of an Ed25519 public key. */
function rawPublicKey(key: KeyObject): Buffer {
  const jwk = createPublicKey(key).export({ format: 'jwk' }) as { x: string };
  return Buffer.from(jwk.x, 'base64url');
}

/** The 4-byte key id of the C2SP signed-note spec: SHA-256(name || 0x0A || 0x01 || key)[:4]. */
function keyId(name: string, key: KeyObject): Buffer {
  return createHash('sha256')
    .update(Buffer.concat([Buffer.from(`${name}\n`), Buffer.from([0x01]), rawPublicKey(key)]))
    .digest()
    .subarray(0, 4);
}

/** The verifier key string `<name>+<hex key id>+<base64(0x01 || key)>`. */
export function independentVerifierKey(name: string, key: KeyObject): string {
  return `${name}+${keyId(name, key).toString('hex')}+${Buffer.concat([Buffer.from([0x01]), rawPublicKey(key)]).toString('base64')}`;
}

/** A tlog-checkpoint body: origin, tree size, base64 root hash, each with a newline. */
export function checkpointBody(origin: string, treeSize: number, root: Buffer): string {
  return `${origin}\n${treeSize}\n${root.toString('base64')}\n`;
}

/** A signed note: the body, a blank line, one signature line `— <name> base64(keyid || sig)`. */
export function signNoteIndependently(body: string, name: string, privateKey: KeyObject): string {
  const signature = sign(null, Buffer.from(body), privateKey);
  return `${body}\n\u2014 ${name} ${Buffer.concat([keyId(name, privateKey), signature]).toString('base64')}\n`;
}
