import mysql from 'mysql2/promise';
import { MARIADB } from './database-probe.js';
import type { TestDatabase } from './test-database.js';

/**
 * On MariaDB, the statements and locks of the deadlock InnoDB detected last (`SHOW ENGINE
 * INNODB STATUS`), if it involved one of `databases`; `''` otherwise and elsewhere. For the
 * messages of load tests that count transactions lost to each other.
 */
export async function latestDeadlock(databases: readonly TestDatabase[]): Promise<string> {
  if (!databases.some((db) => db.kind === 'mariadb')) return '';
  const admin = await mysql.createConnection(MARIADB);
  try {
    const [rows] = (await admin.query('SHOW ENGINE INNODB STATUS')) as unknown as [Array<{ Status: string }>];
    const status = rows[0]?.Status ?? '';
    const section = status.slice(status.indexOf('LATEST DETECTED DEADLOCK'), status.indexOf('\nTRANSACTIONS\n'));
    if (!databases.some((db) => section.includes(String(db.options.database)))) return '';
    return section
      .split('\n')
      .filter((line) => /^(DELETE|INSERT|SELECT|UPDATE)|lock_mode|ROLL BACK/.test(line))
      .map((line) => line.slice(0, 160))
      .join('\n');
  } finally {
    await admin.end();
  }
}
