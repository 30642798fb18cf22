import type { DataSource, EntityManager } from 'typeorm';
import { driverErrorCode } from './database-errors.js';
import { MYSQL_DRIVERS } from './drivers.js';


/** Data sources whose server refused a write under READ COMMITTED (statement-based binary logging). */
const refused = new WeakSet<DataSource>();

/**
 * Runs `work` in a transaction of its own, opened through the data source or the manager;
 * on MySQL and MariaDB at READ COMMITTED, so that its locking reads and DELETEs lock the
 * rows they find and no gaps (under REPEATABLE READ, InnoDB's default, their next-key
 * locks made concurrent transactions on the journal deadlock, and held up the INSERTs of
 * other units' rows), and each plain read sees the rows committed before it. A server
 * logging statements (`binlog_format = STATEMENT`) refuses InnoDB writes under READ
 * COMMITTED (error 1665): there, `work` runs again at the session's own level, as it does
 * from then on.
 */
export async function readCommittedTransaction<T>(on: DataSource | EntityManager, work: (manager: EntityManager) => Promise<T>): Promise<T> {
  const dataSource = 'connection' in on ? on.connection : on;
  if (!MYSQL_DRIVERS.has(String(dataSource.driver.options.type)) || refused.has(dataSource)) return on.transaction(work);
  try {
    return await on.transaction('READ COMMITTED', work);
  } catch (error) {
    if (driverErrorCode(error) !== 'ER_BINLOG_STMT_MODE_AND_ROW_ENGINE') throw error;
    refused.add(dataSource);
    return on.transaction(work);
  }
}
