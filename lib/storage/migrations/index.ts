import { CreateAuditLog1764201600000 } from './1764201600000-create-audit-log.js';
import { CreateAuditJournal1764979200000 } from './1764979200000-create-audit-journal.js';
import { CreateAuditSubject1765584000000 } from './1765584000000-create-audit-subject.js';
import { AddAuditIntegrity1766188800000 } from './1766188800000-add-audit-integrity.js';
import { AuditAppendOnly1766275200000 } from './1766275200000-audit-append-only.js';
import { AuditReadIndexes1766361600000 } from './1766361600000-audit-read-indexes.js';
import { AddAuditSubjectEventIndex1766448000000 } from './1766448000000-add-audit-subject-event-index.js';
import { AddAuditRequestActorIndexes1767312000000 } from './1767312000000-add-audit-request-actor-indexes.js';
import { AddAuditTreeEventIndex1796601600000 } from './1796601600000-add-audit-tree-event-index.js';

/** The module's migrations, oldest first: add them to your data source's `migrations`. */
export const AuditMigrations = [
  CreateAuditLog1764201600000,
  CreateAuditJournal1764979200000,
  CreateAuditSubject1765584000000,
  AddAuditIntegrity1766188800000,
  AuditAppendOnly1766275200000,
  AuditReadIndexes1766361600000,
  AddAuditSubjectEventIndex1766448000000,
  AddAuditRequestActorIndexes1767312000000,
  AddAuditTreeEventIndex1796601600000,
];

export {
  CreateAuditLog1764201600000,
  CreateAuditJournal1764979200000,
  CreateAuditSubject1765584000000,
  AddAuditIntegrity1766188800000,
  AuditAppendOnly1766275200000,
  AuditReadIndexes1766361600000,
  AddAuditSubjectEventIndex1766448000000,
  AddAuditRequestActorIndexes1767312000000,
  AddAuditTreeEventIndex1796601600000,
};
