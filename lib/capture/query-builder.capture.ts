import type { DataSource } from 'typeorm';
import {
  attachWriteQueryBuilderHook,
  detachWriteQueryBuilderHook,
  type WriteHook,
} from '../integrations/typeorm-write-query-builders.js';
import type { ChangeCapture } from './change-capture.js';
import { CriteriaWrite } from './criteria-write.js';

/** The hook of each capture, so that detaching finds the one attached. */
const hooks = new WeakMap<ChangeCapture, WriteHook>();

function hookOf(capture: ChangeCapture): WriteHook {
  let hook = hooks.get(capture);
  if (!hook) {
    hook = (write, execute) => new CriteriaWrite(capture, write, execute).run();
    hooks.set(capture, hook);
  }
  return hook;
}

/**
 * Captures the writes by criteria of this data source's update, delete, soft-delete/restore
 * and insert query builders, with their affected ids and real before values.
 */
export function attachQueryBuilderCapture(dataSource: DataSource, capture: ChangeCapture): void {
  attachWriteQueryBuilderHook(dataSource, hookOf(capture));
}

/** Stops capturing this data source's writes by criteria for `capture`. */
export function detachQueryBuilderCapture(dataSource: DataSource, capture: ChangeCapture): void {
  detachWriteQueryBuilderHook(dataSource, hookOf(capture));
}
