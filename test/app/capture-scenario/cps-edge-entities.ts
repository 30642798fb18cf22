import {
  Column,
  DeleteDateColumn,
  Entity,
  Index,
  JoinTable,
  ManyToMany,
  PrimaryColumn,
  PrimaryGeneratedColumn,
  UpdateDateColumn,
  VersionColumn,
} from 'typeorm';

export class CpsAddress {
  @Column({ default: '' })
  street!: string;

  @Column({ default: '' })
  city!: string;
}

/** One entity with the column kinds whose change detection is delicate. */
@Entity('cps_item')
export class CpsItem {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

  @Column({ default: 0 })
  stock!: number;

  @Column({ type: 'decimal', precision: 10, scale: 2, default: 0 })
  price!: string;

  @Column({ type: 'simple-json', nullable: true })
  meta!: { colour: string; sizes: number[] } | null;

  @Column({ type: Date, nullable: true })
  releasedAt!: Date | null;

  @Column({ select: false, default: 'internal' })
  note!: string;

  @Column(() => CpsAddress)
  address!: CpsAddress;

  @VersionColumn()
  version!: number;

  @UpdateDateColumn()
  updatedAt!: Date;

  @DeleteDateColumn({ nullable: true })
  deletedAt!: Date | null;
}

/** Indexed in the board's join column order too: TypeORM 0.3 references the pair in that order, which MariaDB needs an index for. */
@Entity('cps_pair')
@Index(['right', 'left'])
export class CpsPair {
  @PrimaryColumn()
  left!: number;

  @PrimaryColumn()
  right!: number;

  @Column()
  label!: string;
}

@Entity('cps_group')
export class CpsGroup {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  @ManyToMany(() => CpsItem)
  @JoinTable({ name: 'cps_group_members', joinColumn: { name: 'grp_ref', referencedColumnName: 'id' }, inverseJoinColumn: { name: 'itm_ref', referencedColumnName: 'id' } })
  items!: CpsItem[];
}


/** Shelves and books linked through their codes, not their keys. */
@Entity('cps_book')
export class CpsBook {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ unique: true })
  isbn!: string;
}

@Entity('cps_shelf')
export class CpsShelf {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ unique: true })
  code!: string;

  @ManyToMany(() => CpsBook)
  @JoinTable({
    name: 'cps_shelf_books',
    joinColumn: { name: 'shelf_code', referencedColumnName: 'code' },
    inverseJoinColumn: { name: 'book_isbn', referencedColumnName: 'isbn' },
  })
  books!: CpsBook[];
}

/** A row keyed by a code given by the app. */
@Entity('cps_code')
export class CpsCode {
  @PrimaryColumn()
  code!: string;

  @Column()
  label!: string;
}

/** A board pinning pairs (a composite key), its join columns listed in another order than the key's. */
@Entity('cps_board')
export class CpsBoard {
  @PrimaryGeneratedColumn()
  id!: number;

  @ManyToMany(() => CpsPair)
  @JoinTable({
    name: 'cps_board_pairs',
    joinColumns: [{ name: 'board_id', referencedColumnName: 'id' }],
    inverseJoinColumns: [
      { name: 'pair_right', referencedColumnName: 'right' },
      { name: 'pair_left', referencedColumnName: 'left' },
    ],
  })
  pairs!: CpsPair[];
}

export const CPS_EDGE_ENTITIES = [CpsItem, CpsPair, CpsGroup, CpsBook, CpsShelf, CpsCode, CpsBoard];
