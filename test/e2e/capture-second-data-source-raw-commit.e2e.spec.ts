import { Body, Controller, Post, UseGuards } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Audited, AuditJournalEntity, AuditLogEntity, AuditService } from '../../lib/index.js';
import { runSteps, type StepsResult } from '../app/commit-point-steps.js';
import { Order } from '../app/order.entity.js';
import { TokenGuard } from '../app/token.guard.js';
import { expectRecordedOnce, storedNotes } from '../support/commit-point-contract.js';
import { createTestDatabase, databases, type TestDatabase } from '../support/test-database.js';
import { twoDataSourceInstance, type TwoDataSourceInstance } from '../support/two-data-source-instances.js';

/** Runs steps (see runSteps) on the app's main data source, whose changes are journaled there and stored in the `audit` one. */
@Controller('main-steps')
@UseGuards(TokenGuard)
class MainStepsController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly audit: AuditService,
  ) {}

  @Post()
  @Audited('orders.stepped')
  run(@Body() body: { steps: string[] }): Promise<StepsResult> {
    return runSteps(this.dataSource, this.audit, body.steps);
  }
}

// The app's entities (and a journal) live in its default data source; `audit_log` in a
// second one. A transaction of the main data source journals its records there at its
// commit; they are stored in the audit data source once it has committed.
describe.each(databases())('a commit point sent by hand on a data source other than the audit one, on %s', (kind) => {
  let main: TestDatabase;
  let audit: TestDatabase;
  let app: TwoDataSourceInstance;
  let requestCount = 0;

  beforeAll(async () => {
    main = await createTestDatabase(kind);
    audit = await createTestDatabase(kind);
    app = await twoDataSourceInstance(main, audit, {}, [MainStepsController]);
  });
  afterAll(async () => {
    await app?.app.close();
    await main?.drop();
    await audit?.drop();
  });
  beforeEach(async () => {
    await app.main.getRepository(Order).clear();
    await expect.poll(() => app.main.getRepository(AuditJournalEntity).count(), { timeout: 5000 }).toBe(0);
    await app.audit.getRepository(AuditLogEntity).clear();
  });

  const rows = () => app.audit.getRepository(AuditLogEntity).find({ order: { occurredAt: 'ASC', id: 'ASC' } });
  const journals = () => [app.main, app.audit];
  const outside = (steps: string[]) => runSteps(app.main, app.app.get(AuditService), steps);
  const request = async (steps: string[]): Promise<StepsResult & { requestId: string }> => {
    const requestId = `second-${kind}-${++requestCount}`;
    const response = await fetch(`${app.url}/main-steps`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer alice-token', 'x-request-id': requestId },
      body: JSON.stringify({ steps }),
    });
    expect(response.status).toBe(201);
    return { ...((await response.json()) as StepsResult), requestId };
  };
  const expectClaimedByRequest = async (requestId: string, committed: string[]) => {
    expect(await storedNotes(app.main)).toEqual([...committed].sort());
    const inserts = await expectRecordedOnce(rows, journals(), committed);
    for (const insert of inserts) {
      expect([insert.row.action, insert.row.kind, insert.row.actorId, insert.row.requestId]).toEqual(['orders.stepped', 'intent', '1', requestId]);
    }
    expect((await rows()).map((row) => [row.action, row.requestId])).toEqual([['orders.stepped', requestId]]);
  };

  it('a raw COMMIT, a save after it (autocommitted), a late commitTransaction(): each insert is claimed once by the request', async () => {
    const { requestId } = await request(['start', 'save:a', 'sql:COMMIT', 'save:b', 'try-commit']);
    await expectClaimedByRequest(requestId, ['a', 'b']);
  });

  it('a raw ROLLBACK: the insert is in no record, nothing is left in either journal', async () => {
    const { requestId } = await request(['start', 'save:a', 'sql:ROLLBACK', 'try-rollback']);
    await expectClaimedByRequest(requestId, []);
  });

  it('a raw savepoint still set at the raw COMMIT commits with it', async () => {
    const { requestId } = await request(['start', 'save:a', 'sql:SAVEPOINT s', 'save:b', 'sql:COMMIT', 'try-commit']);
    await expectClaimedByRequest(requestId, ['a', 'b']);
  });

  it.runIf(kind !== 'sqlite')('COMMIT AND CHAIN, then ROLLBACK AND CHAIN, then commitTransaction(): the committed inserts once, the rolled-back one never', async () => {
    const { requestId } = await request(['start', 'save:a', 'sql:COMMIT AND CHAIN', 'save:b', 'sql:ROLLBACK AND CHAIN', 'save:c', 'commit']);
    await expectClaimedByRequest(requestId, ['a', 'c']);
  });

  it.runIf(kind === 'mariadb')('MariaDB: BEGIN by hand commits the transaction: its insert is recorded once, the rolled-back one after it is not', async () => {
    const { requestId } = await request(['start', 'save:a', 'sql:BEGIN', 'save:b', 'rollback']);
    await expectClaimedByRequest(requestId, ['a']);
  });

  it('outside a unit of work: a raw COMMIT has each insert stored once as a fallback event of the system, a log() event with the insert it targets', async () => {
    const { ids } = await outside(['start', 'save:a', 'save:b', 'log:b', 'sql:COMMIT', 'try-commit']);
    expect(await storedNotes(app.main)).toEqual(['a', 'b']);
    const inserts = await expectRecordedOnce(rows, journals(), ['a', 'b']);
    const byNote = Object.fromEntries(inserts.map((insert) => [insert.note, [insert.row.action, insert.row.kind, insert.row.actorType, insert.row.targetId]]));
    expect(byNote).toEqual({
      a: ['order.created', 'change', 'system', String(ids['a'])],
      b: ['order.reviewed', 'intent', 'system', String(ids['b'])],
    });
    expect(await rows()).toHaveLength(2);
  });

  it('outside a unit of work: a raw ROLLBACK leaves neither the insert nor the log() event', async () => {
    await outside(['start', 'save:a', 'log:a', 'sql:ROLLBACK', 'try-rollback']);
    expect(await storedNotes(app.main)).toEqual([]);
    await expectRecordedOnce(rows, journals(), []);
    expect(await rows()).toEqual([]);
  });
});
