import { Inject, Injectable } from '@nestjs/common';
import { DiscoveryService, ModuleRef } from '@nestjs/core';
import { getDataSourceToken } from '@nestjs/typeorm';
import { DataSource, getMetadataArgsStorage } from 'typeorm';
import { AUDIT_DATA_SOURCE, AUDIT_RESOLVED_OPTIONS } from '../audit.constants.js';
import { InvalidAuditOptionsError } from '../exceptions/invalid-audit-options.error.js';
import type { ResolvedAuditOptions } from '../options/audit-options.js';
import { AuditJournalEntity } from '../storage/audit-journal.entity.js';
import { AuditEntities } from '../storage/audit-entities.js';

/**
 * Whether `value` is a TypeORM data source: an instance of this TypeORM copy's class, or
 * one that looks like it (an app whose TypeORM copy differs from the module's).
 *
 * Every provider of the app is looked at, and some throw when a property is read: the
 * proxy providers of nestjs-cls (`CLS_REQ`, `CLS_RES`, `@InjectableProxy()` classes) throw
 * outside a CLS context, as at start-up. Such a provider is not a data source.
 */
function isDataSource(value: unknown): value is DataSource {
  if (value === null || typeof value !== 'object') return false;
  try {
    if (value instanceof DataSource) return true;
    const candidate = value as Partial<DataSource>;
    return (
      Array.isArray(candidate.subscribers) &&
      Array.isArray(candidate.entityMetadatas) &&
      typeof candidate.createQueryRunner === 'function' &&
      typeof candidate.getMetadata === 'function'
    );
  } catch {
    return false;
  }
}

/** The name a data source was registered under (`'default'` for the unnamed one). */
export const dataSourceName = (dataSource: DataSource): string => (dataSource.options as { name?: string }).name ?? 'default';

/**
 * The data sources the module works with: the audit one (`dataSource` option), which
 * stores `audit_log` and the instances' leases, and the captured ones
 * (`captureDataSources`, by default every TypeORM data source of the app), whose changes
 * are captured and journaled in their own `audit_journal`. Found once every provider
 * exists (the first time they are asked for, from a lifecycle hook), since data sources
 * of other modules are not built yet when this provider is.
 */
@Injectable()
export class AuditDataSources {
  private resolved?: readonly DataSource[];
  private everyOne?: readonly DataSource[];
  private otherOnes?: readonly DataSource[];

  constructor(
    @Inject(AUDIT_DATA_SOURCE) readonly audit: DataSource,
    @Inject(AUDIT_RESOLVED_OPTIONS) private readonly options: ResolvedAuditOptions,
    private readonly moduleRef: ModuleRef,
    private readonly discovery: DiscoveryService,
  ) {}

  /**
   * The captured data sources, the audit one first when it is captured.
   * @throws InvalidAuditOptionsError when `captureDataSources` names an unknown data source.
   */
  get captured(): readonly DataSource[] {
    return (this.resolved ??= this.resolve());
  }

  /** Where entities are looked up: the audit data source, then the captured ones. */
  get all(): readonly DataSource[] {
    return (this.everyOne ??= this.options.enabled ? [this.audit, ...this.others] : [this.audit]);
  }

  /** The captured data sources other than the audit one. */
  get others(): readonly DataSource[] {
    return (this.otherOnes ??= this.captured.filter((dataSource) => dataSource !== this.audit));
  }

  /**
   * Fails start-up, clearly, when a data source lacks an entity the module needs there:
   * all of `AuditEntities` in the audit data source, `AuditJournalEntity` in every other
   * captured one (when `capturing`).
   */
  checkEntities(capturing: boolean): void {
    const check = (dataSource: DataSource, needed: ReadonlyArray<new () => unknown>, whose: string, fix: string) => {
      if (!dataSource.isInitialized) return;
      const absent = needed.filter((entity) => !dataSource.hasMetadata(entity));
      if (absent.length === 0) return;
      const missing = absent.map((entity) => entity.name);
      // Named by their tables too: what a reader of the schema knows them by.
      const prefix = dataSource.options.entityPrefix ?? '';
      const tables = absent.map((entity) => prefix + (getMetadataArgsStorage().tables.find((table) => table.target === entity)?.name ?? entity.name));
      throw new Error(
        `${missing.join(', ')} ${missing.length === 1 ? 'is not an entity' : 'are not entities'} of ${whose}: ${fix} ` +
          `(missing ${tables.length === 1 ? 'table' : 'tables'}: ${tables.join(', ')})`,
      );
    };
    check(
      this.audit,
      AuditEntities,
      `the audit module's TypeORM data source "${dataSourceName(this.audit)}"`,
      "add `...AuditEntities` to the data source's `entities` or set `autoLoadEntities: true`",
    );
    for (const dataSource of capturing ? this.others : []) {
      check(
        dataSource,
        [AuditJournalEntity],
        `the TypeORM data source "${dataSourceName(dataSource)}", whose changes the audit module captures (and journals there)`,
        "add `AuditJournalEntity` to the data source's `entities` (and create its table with AuditMigrations or synchronize), " +
          'or leave the data source out of `captureDataSources`',
      );
    }
  }

  private resolve(): DataSource[] {
    const refs = this.options.captureDataSources;
    const found = refs ? refs.map((ref) => (typeof ref === 'string' ? this.named(ref) : ref)) : this.discovered();
    const unique = [...new Set(found)];
    // The audit data source first: its journal is the one read most.
    return [...unique.filter((dataSource) => dataSource === this.audit), ...unique.filter((dataSource) => dataSource !== this.audit)];
  }

  private named(name: string): DataSource {
    let dataSource: unknown;
    try {
      dataSource = this.moduleRef.get(getDataSourceToken(name), { strict: false });
    } catch {
      dataSource = undefined;
    }
    if (!isDataSource(dataSource)) {
      const known = this.discovered().map(dataSourceName);
      throw new InvalidAuditOptionsError(
        'captureDataSources',
        `no TypeORM data source named "${name}" (known: ${known.map((known) => `"${known}"`).join(', ') || 'none'})`,
      );
    }
    return dataSource;
  }

  /** Every initialized TypeORM data source among the app's providers. */
  private discovered(): DataSource[] {
    const found = new Set<DataSource>();
    for (const wrapper of this.discovery.getProviders()) {
      if (!wrapper.isDependencyTreeStatic() || wrapper.isTransient) continue;
      const instance: unknown = wrapper.instance;
      if (isDataSource(instance) && instance.isInitialized) found.add(instance);
    }
    if (this.audit.isInitialized) found.add(this.audit);
    return [...found];
  }
}
