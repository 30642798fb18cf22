import { TableIndex, type MigrationInterface, type QueryRunner } from 'typeorm';
import { AUDIT_TREE_TABLE } from '../../audit.constants.js';
import { createIndexIfMissing, prefixed } from './portable-table.js';

/** The unique index this migration adds to `audit_tree`. */
export const AUDIT_TREE_EVENT_INDEX = 'idx_audit_tree_event';

/**
 * A unique index on `audit_tree.event_id`: one leaf per event (inner nodes name none, and
 * NULLs do not collide). An event whose `seq` was set back to NULL outside the integrator
 * cannot be taken into the tree a second time, under a new seq, with a content changed
 * meanwhile: the integrator's batch fails on it and it says which event and leaf. Fails
 * when the tree already names an event twice (a tree that was altered): `verify()` reports
 * the event.
 */
export class AddAuditTreeEventIndex1796601600000 implements MigrationInterface {
  name = 'AddAuditTreeEventIndex1796601600000';

  async up(queryRunner: QueryRunner): Promise<void> {
    await createIndexIfMissing(queryRunner, prefixed(queryRunner, AUDIT_TREE_TABLE), new TableIndex({ name: AUDIT_TREE_EVENT_INDEX, columnNames: ['event_id'], isUnique: true }));
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropIndex(prefixed(queryRunner, AUDIT_TREE_TABLE), AUDIT_TREE_EVENT_INDEX);
  }
}
