import { CreateAuditLog1764201600000 } from './1764201600000-create-audit-log.js';

/** The module's migrations, oldest first: add them to your data source's `migrations`. */
export const AuditMigrations = [CreateAuditLog1764201600000];

export { CreateAuditLog1764201600000 };
