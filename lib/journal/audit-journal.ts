import { Inject, Injectable, Logger } from '@nestjs/common';
import type { DataSource, EntityManager } from 'typeorm';
import { AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import type { CapturedChange } from '../capture/change-set.js';
import type { UnitOfWork } from '../context/unit-of-work.js';
import { AuditEventBuilder } from '../events/audit-event.builder.js';
import { actorForStorage, journalActor } from '../events/actor-pseudonyms.js';
import { ownStatement } from '../capture/own-statements.js';
import { shrinkChange } from '../events/event-bounds.js';
import { toJsonSafe } from '../events/json-safe.js';
import { uuidv7 } from '../events/uuid-v7.js';
import type { AuditActor } from '../interfaces/audit-event.interface.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditJournalEntity } from '../storage/audit-journal.entity.js';
import { escapedTable, placeholders } from '../storage/sql.js';
import { UtcDateTimeParameter } from '../storage/utc-date.transformer.js';
import { commitCarriesStatements, postgresLiteral, sendWithCommit } from '../integrations/typeorm-commit-statements.js';
import type { JournalChange, JournalEntry } from './journal-entry.js';

/**
 * Writes a unit of work's committed changes to `audit_journal`, inside the transaction
 * that makes them, so that no change commits without its record (and a rolled-back
 * change leaves none). Values are redacted and made storable before they are written,
 * exactly as they will be in `audit_log`; a transaction's changes are split over several
 * rows past `maxChangesPerEvent` changes or `maxEventBytes` bytes.
 */
@Injectable()
export class AuditJournal {
  private readonly logger = new Logger('Audit');
  /** This app instance (process): the owner of the journal rows it writes. */
  readonly instanceId = uuidv7();
  private readonly heads = new WeakMap<object, string>();

  constructor(
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly builder: AuditEventBuilder,
  ) {}

  /**
   * Writes `changes` of `unit` through `manager` (inside its transaction, when it has one).
   * Returns the ids of the journal rows written. Throws when the write fails: the
   * transaction must then not commit.
   *
   * With `atCommit` (the transaction's COMMIT comes next) on PostgreSQL, the rows go in
   * one INSERT sent in the COMMIT's own message, ahead of it: no round trip of their own.
   * If that INSERT fails, the COMMIT fails with it and nothing is committed.
   */
  async write(manager: EntityManager, unit: UnitOfWork, changes: readonly CapturedChange[], spilled = false, atCommit = false): Promise<string[]> {
    if (changes.length === 0) return [];
    const attribution = { ...(await this.attribution(unit)), ...(spilled ? { spilled } : {}) };
    const journalChanges = changes.map((change) => this.journalChange(change));
    const entries = this.split(attribution, journalChanges);
    const connection = manager.connection;
    const metadata = connection.getMetadata(AuditJournalEntity);
    const createdAt = metadata.findColumnWithPropertyName('createdAt')!;
    const now = connection.driver.preparePersistentValue(new Date(), createdAt) as unknown;
    const runner = manager.queryRunner;
    if (atCommit && runner && now instanceof UtcDateTimeParameter && commitCarriesStatements(runner)) {
      const ids = entries.map(() => uuidv7());
      const at = postgresLiteral(now.text);
      const unitId = postgresLiteral(unit.id);
      const instanceId = postgresLiteral(this.instanceId);
      const tuples = entries.map((entry, index) => `(${postgresLiteral(ids[index]!)}, ${unitId}, ${instanceId}, ${at}, ${postgresLiteral(entry)})`);
      sendWithCommit(runner, `${this.insertInto(connection)} VALUES ${tuples.join(', ')}`);
      return ids;
    }
    // One statement per row: a row is at most `maxEventBytes`, so each fits any packet size.
    const sql = `${this.insertInto(connection)} VALUES (${placeholders(connection, 5, 0)})`;
    const ids: string[] = [];
    for (const entry of entries) {
      const id = uuidv7();
      await manager.query(sql, ownStatement([id, unit.id, this.instanceId, now, entry]));
      ids.push(id);
    }
    return ids;
  }

  /** The journal entries' JSON texts: one, or several when the changes are too many or too large. */
  private split(attribution: Omit<JournalEntry, 'changes'>, changes: JournalChange[]): string[] {
    const { maxChangesPerEvent, maxEventBytes } = this.options;
    const out: string[] = [];
    const push = (chunk: JournalChange[]): void => {
      const text = JSON.stringify({ ...attribution, changes: chunk } satisfies JournalEntry);
      const tooLarge = Buffer.byteLength(text) > maxEventBytes;
      if (chunk.length > 1 && (chunk.length > maxChangesPerEvent || tooLarge)) {
        const half = Math.ceil(chunk.length / 2);
        push(chunk.slice(0, half));
        push(chunk.slice(half));
      } else if (tooLarge && chunk.length === 1) {
        // One change too large to store (a huge list in a JSON column): its values give way
        // to size markers, as they will in its event, rather than fail the transaction.
        const [change] = chunk as [JournalChange];
        out.push(JSON.stringify({ ...attribution, changes: [{ ...change, ...shrinkChange(change, maxEventBytes - 4096) }] } satisfies JournalEntry));
      } else {
        out.push(text);
      }
    };
    if (changes.length > maxChangesPerEvent) {
      for (let start = 0; start < changes.length; start += maxChangesPerEvent) push(changes.slice(start, start + maxChangesPerEvent));
    } else {
      push(changes);
    }
    return out;
  }

  private journalChange(change: CapturedChange): JournalChange {
    const [safe] = this.builder.sanitiseChanges([change]);
    return { ...safe!, at: change.at.getTime(), ...(change.deleteDateField ? { deleteDateField: change.deleteDateField } : {}) };
  }

  /** The unit's attribution as known now: source, request data, actor (resolved), `@Audited` action. */
  private async attribution(unit: UnitOfWork): Promise<Omit<JournalEntry, 'changes'>> {
    let actor: AuditActor | undefined;
    try {
      actor = await unit.knownActorNow();
    } catch (error) {
      this.logger.warn(`The audit actor resolver threw while journaling; recovery would record no actor: ${String(error)}`);
    }
    // Storable: a NUL or lone surrogate in an actor or header must not fail the user's transaction.
    const rest = toJsonSafe({
      source: unit.source,
      // Only what an event stores of an actor (a resolver may return more: a session's
      // token), in the form it is stored: pseudonymised when configured.
      ...(actor ? { actor: journalActor(actorForStorage(actor, this.options.pseudonymizer)) } : {}),
      ...(unit.audited ? { action: unit.audited.action } : {}),
      ...(unit.originRequestId ? { originRequestId: unit.originRequestId } : {}),
    }) as Omit<JournalEntry, 'changes' | 'request'>;
    return { ...rest, request: this.storableRequest(unit.request) };
  }

  /** A unit's request data never changes: made storable once per unit, not per transaction. */
  private readonly storableRequests = new WeakMap<object, JournalEntry['request']>();

  private storableRequest(request: UnitOfWork['request']): JournalEntry['request'] {
    let storable = this.storableRequests.get(request);
    if (!storable) this.storableRequests.set(request, (storable = toJsonSafe(request) as JournalEntry['request']));
    return storable;
  }

  private insertInto(connection: DataSource): string {
    let head = this.heads.get(connection.driver);
    if (!head) {
      const metadata = connection.getMetadata(AuditJournalEntity);
      const column = (name: string) => connection.driver.escape(metadata.findColumnWithPropertyName(name)!.databaseName);
      head = `INSERT INTO ${escapedTable(connection, metadata)} (${['id', 'unitId', 'instanceId', 'createdAt', 'entry'].map(column).join(', ')})`;
      this.heads.set(connection.driver, head);
    }
    return head;
  }
}
