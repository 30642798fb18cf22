import { BeforeInsert, BeforeUpdate, Column, Entity, JoinColumn, JoinTable, ManyToMany, ManyToOne, PrimaryGeneratedColumn, type ValueTransformer } from 'typeorm';

/** Cents in the database, a decimal amount in the app. */
const cents: ValueTransformer = {
  to: (value: number | null | undefined) => (value === null || value === undefined ? value : Math.round(value * 100)),
  from: (value: number | null) => (value === null ? null : value / 100),
};

@Entity('cps_owner')
export class CpsOwner {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;
}

@Entity('cps_label')
export class CpsLabel {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;
}

/** A row with an explicit foreign-key column next to its relation, lazy relations and a transformed column. */
@Entity('cps_doc')
export class CpsDoc {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  @Column({ type: 'int', nullable: true })
  ownerId!: number | null;

  @ManyToOne(() => CpsOwner, { nullable: true })
  @JoinColumn({ name: 'ownerId' })
  owner!: CpsOwner | null;

  @ManyToOne(() => CpsOwner, { lazy: true, nullable: true })
  reviewer!: Promise<CpsOwner | null>;

  @ManyToMany(() => CpsLabel, { lazy: true })
  @JoinTable({ name: 'cps_doc_labels' })
  labels!: Promise<CpsLabel[]>;

  @Column({ type: 'int', transformer: cents, default: 0 })
  amount!: number;

  @Column({ type: 'simple-json', nullable: true })
  meta!: Record<string, unknown> | null;

  @Column({ type: Date, nullable: true })
  dueAt!: Date | null;

  @Column({ type: 'bigint', default: 0 })
  views!: string;
}

/** A row whose listeners derive columns, as RealWorld apps do (a slug from the title, an `updated` stamp). */
@Entity('cps_note')
export class CpsNote {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  @Column({ default: '' })
  slug!: string;

  @Column({ type: Date, nullable: true })
  updated!: Date | null;

  @ManyToOne(() => CpsOwner, { nullable: true })
  owner!: CpsOwner | null;

  @BeforeInsert()
  @BeforeUpdate()
  derive(): void {
    this.slug = this.title.toLowerCase().replace(/\W+/g, '-');
  }

  @BeforeUpdate()
  stamp(): void {
    this.updated = new Date('2030-01-01T00:00:00.000Z');
  }
}

export const CPS_COLUMN_ENTITIES = [CpsOwner, CpsLabel, CpsDoc, CpsNote];
