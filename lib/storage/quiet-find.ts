import type { FindManyOptions, FindOneOptions, ObjectLiteral, Repository, SelectQueryBuilder } from 'typeorm';

/**
 * The module's reads of its own tables: `repository.find()` and `findOne()` with the
 * entity listeners off. An app's subscriber without `listenTo()` hears every entity's
 * `afterLoad`; the module's rows are not the app's, and its recovery, checkpoints, proofs,
 * verification and purges must neither fail with what such a subscriber throws on them
 * nor pay for what it does. Same query as TypeORM's `find()`: its alias, its options.
 */
export function findQuietly<T extends ObjectLiteral>(repository: Repository<T>, options: FindManyOptions<T> = {}): Promise<T[]> {
  return quiet(repository.createQueryBuilder(repository.metadata.name).setFindOptions(options)).getMany();
}

/** {@link findQuietly}'s `findOne()`: the first row `options` find, or null. */
export async function findOneQuietly<T extends ObjectLiteral>(repository: Repository<T>, options: FindOneOptions<T>): Promise<T | null> {
  return (await quiet(repository.createQueryBuilder(repository.metadata.name).setFindOptions({ ...options, take: 1 })).getOne()) ?? null;
}

/** `query` with the entity listeners off (no `afterLoad` of anyone's for the rows it loads). */
export function quiet<T extends ObjectLiteral>(query: SelectQueryBuilder<T>): SelectQueryBuilder<T> {
  return query.callListeners(false);
}
