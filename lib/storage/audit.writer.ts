import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import type { DataSource, EntityManager } from 'typeorm';
import { AUDIT_DATA_SOURCE } from '../audit.constants.js';
import { AuditLogEntity } from './audit-log.entity.js';

const ROWS_PER_STATEMENT = 500;
/** Batches written at the same time, at most (each holds one pooled connection). */
const BATCHES_IN_FLIGHT = 4;
/** Rows one batch takes from the queue, at most. */
const ROWS_PER_BATCH = 2000;

interface Pending {
  rows: readonly AuditLogEntity[];
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * Stores audit rows with multi-row INSERTs, listeners off (the audit table is never
 * captured).
 *
 * Given a manager, it writes inside that manager's transaction, at once. Otherwise
 * writes from concurrent requests are grouped: while batches are being written, new
 * rows queue up and go together in the next batch (group commit), so many requests
 * cost a few INSERTs rather than one each. Every caller still waits for its own rows
 * to be stored. A batch that fails is retried caller by caller, so one caller's bad
 * rows never fail another's.
 */
@Injectable()
export class AuditWriter implements OnModuleInit {
  private readonly queue: Pending[] = [];
  private inFlight = 0;

  constructor(@Inject(AUDIT_DATA_SOURCE) private readonly dataSource: DataSource) {}

  /** Fails start-up, clearly, when the data source does not know the audit entity. */
  onModuleInit(): void {
    if (this.dataSource.isInitialized && !this.dataSource.hasMetadata(AuditLogEntity)) {
      throw new Error(
        "AuditLogEntity is not an entity of the audit module's TypeORM data source: " +
          'add it to the data source\'s `entities` or set `autoLoadEntities: true`',
      );
    }
  }

  write(rows: readonly AuditLogEntity[], manager?: EntityManager): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    if (manager) return this.insert(rows, manager);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ rows, resolve, reject });
      this.drain();
    });
  }

  private drain(): void {
    while (this.inFlight < BATCHES_IN_FLIGHT && this.queue.length > 0) {
      const batch: Pending[] = [];
      let size = 0;
      while (this.queue.length > 0 && (batch.length === 0 || size + this.queue[0]!.rows.length <= ROWS_PER_BATCH)) {
        const next = this.queue.shift()!;
        batch.push(next);
        size += next.rows.length;
      }
      this.inFlight++;
      void this.flush(batch).finally(() => {
        this.inFlight--;
        this.drain();
      });
    }
  }

  private async flush(batch: Pending[]): Promise<void> {
    try {
      await this.insert(batch.flatMap((pending) => pending.rows));
      for (const pending of batch) pending.resolve();
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      for (const pending of batch) {
        await this.insert(pending.rows).then(pending.resolve, pending.reject);
      }
    }
  }

  private async insert(rows: readonly AuditLogEntity[], manager: EntityManager = this.dataSource.manager): Promise<void> {
    if (rows.length <= ROWS_PER_STATEMENT) return this.statement(rows, manager);
    // Several statements: one transaction, so that the rows are stored all or none.
    const run = (target: EntityManager) => this.statements(rows, target);
    return manager.queryRunner?.isTransactionActive ? run(manager) : manager.transaction(run);
  }

  private async statements(rows: readonly AuditLogEntity[], manager: EntityManager): Promise<void> {
    for (let start = 0; start < rows.length; start += ROWS_PER_STATEMENT) {
      await this.statement(rows.slice(start, start + ROWS_PER_STATEMENT), manager);
    }
  }

  /**
   * One multi-row INSERT, as SQL built here once per shape rather than through TypeORM's
   * query builder (which costs more CPU than the database does for audit-sized rows).
   * Values go through the driver's own conversion, as TypeORM would send them.
   */
  private async statement(rows: readonly AuditLogEntity[], manager: EntityManager): Promise<void> {
    const driver = manager.connection.driver;
    const metadata = manager.connection.getMetadata(AuditLogEntity);
    const columns = metadata.columns;
    const params: unknown[] = [];
    const tuples: string[] = [];
    for (const row of rows) {
      const placeholders: string[] = [];
      for (const column of columns) {
        const value: unknown = driver.preparePersistentValue(column.getEntityValue(row), column);
        placeholders.push(driver.createParameter(`p${params.length}`, params.length));
        params.push(value === undefined ? null : value);
      }
      tuples.push(`(${placeholders.join(', ')})`);
    }
    await manager.query(`${this.insertInto(manager)} VALUES ${tuples.join(', ')}`, params);
  }

  private readonly heads = new WeakMap<object, string>();

  /** `INSERT INTO <table> (<columns>)`, escaped for the manager's driver. */
  private insertInto(manager: EntityManager): string {
    const driver = manager.connection.driver;
    let head = this.heads.get(driver);
    if (!head) {
      const metadata = manager.connection.getMetadata(AuditLogEntity);
      const table = metadata.tablePath
        .split('.')
        .map((part) => (part === '' ? part : driver.escape(part)))
        .join('.');
      head = `INSERT INTO ${table} (${metadata.columns.map((column) => driver.escape(column.databaseName)).join(', ')})`;
      this.heads.set(driver, head);
    }
    return head;
  }
}
