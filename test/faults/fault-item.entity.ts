import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** The `fault_item` table's name; the fault runner creates the table, the app never synchronises it. */
export const FAULT_ITEM_TABLE = 'fault_item';

/**
 * A row the fault app changes. `revision` starts at 1 and every committed update adds
 * exactly one (under a row lock), so the runner can name each committed update of a row
 * and look for its record in `audit_log`.
 */
@Entity(FAULT_ITEM_TABLE)
export class FaultItem {
  @PrimaryGeneratedColumn()
  id!: number;

  /** The `x-request-id` of the request that inserted the row. */
  @Column({ name: 'request_id', type: 'varchar', length: 128, nullable: true })
  requestId!: string | null;

  @Column({ type: 'varchar', length: 255 })
  label!: string;

  @Column({ type: 'int', default: 0 })
  value!: number;

  @Column({ type: 'int', default: 1 })
  revision!: number;

  /** Free text; carries hostile strings in the hostile-values scenario. */
  @Column({ type: 'text', nullable: true })
  note!: string | null;

  /** Free JSON; carries hostile strings in the hostile-values scenario. */
  @Column({ type: 'json', nullable: true })
  payload!: Record<string, unknown> | null;
}
