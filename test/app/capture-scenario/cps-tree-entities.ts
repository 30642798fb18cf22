import { Column, Entity, PrimaryGeneratedColumn, Tree, TreeChildren, TreeParent } from 'typeorm';

/** Categories kept in a closure table, as TypeORM's tree repositories keep them. */
@Entity('cps_category')
@Tree('closure-table')
export class CpsCategory {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

  @TreeChildren()
  children!: CpsCategory[];

  @TreeParent({ onDelete: 'CASCADE' })
  parent!: CpsCategory | null;
}

/** Sections kept with a materialized path. */
@Entity('cps_section')
@Tree('materialized-path')
export class CpsSection {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

  @TreeChildren()
  children!: CpsSection[];

  @TreeParent()
  parent!: CpsSection | null;
}

export const CPS_TREE_ENTITIES = [CpsCategory, CpsSection];
