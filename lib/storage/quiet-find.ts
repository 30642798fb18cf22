import type { FindManyOptions, FindOneOptions, ObjectLiteral, Repository } from 'typeorm';

/**
 * The module's reads of its own tables: `repository.find()` and `findOne()` with the
 * entity listeners off (`callListeners(false)`, as its query builders' reads and writes of
 * those tables have). An app's subscriber without `listenTo()` hears every entity's
 * `afterLoad`; the module's rows are not the app's, and its recovery, checkpoints, proofs,
 * verification and purges must neither fail with what such a subscriber throws on them
 * nor pay for what it does. Same query as TypeORM's `find()`: its alias, its options.
 */
export function findQuietly<T extends ObjectLiteral>(repository: Repository<T>, options: FindManyOptions<T> = {}): Promise<T[]> {
  return repository.createQueryBuilder(repository.metadata.name).setFindOptions(options).callListeners(false).getMany();
}

/** {@link findQuietly}'s `findOne()`: the first row `options` find, or null. */
export function findOneQuietly<T extends ObjectLiteral>(repository: Repository<T>, options: FindOneOptions<T>): Promise<T | null> {
  return repository.createQueryBuilder(repository.metadata.name).setFindOptions({ ...options, take: 1 }).callListeners(false).getOne();
}
