import {
  IsArray,
  IsDefined,
  IsIn,
  IsNotEmpty,
  IsObject,
  IsOptional,
  IsString,
  Matches,
  MaxLength,
  ValidateNested,
  validateSync,
  type ValidationError,
} from 'class-validator';
import { AUDIT_ACTION_PATTERN, MAX_ACTION_LENGTH } from '../events/audit-action.js';
import type { AuditFieldProblem } from '../exceptions/invalid-audit-event.error.js';

/**
 * Validation rules of a manual event's actor. Its type is the developer's identifier (too
 * long is a mistake, refused); its id and display may come from anyone (a long one is cut
 * when stored, never refused).
 */
export class AuditActorInputRules {
  @IsString({ message: 'actor.type must be a string such as "user", "service" or "system"' })
  @IsNotEmpty({ message: 'actor.type must not be empty' })
  @MaxLength(64)
  type!: string;

  @IsOptional()
  @IsString({ message: 'actor.id must be a string or a number' })
  id?: string;

  @IsOptional()
  @IsString()
  display?: string;
}

/** Validation rules of a manual event's target: as for the actor, a long type is refused, a long id cut when stored. */
export class AuditTargetInputRules {
  @IsString({ message: 'target.type must be a string such as "order"' })
  @IsNotEmpty({ message: 'target.type must not be empty' })
  @MaxLength(128)
  type!: string;

  @IsString({ message: 'target.id must be a string or a number' })
  @IsNotEmpty({ message: 'target.id must not be empty' })
  id!: string;
}

/** Validation rules of one explicit change. */
export class AuditChangeInputRules {
  @IsString()
  @IsNotEmpty()
  entity!: string;

  @IsOptional()
  @IsString()
  id?: string | null;

  @IsIn(['insert', 'update', 'delete'], { message: 'changes[].operation must be insert, update or delete' })
  operation!: string;

  @IsObject({ message: 'changes[].fields must be an object of { name: { from, to } }' })
  fields!: Record<string, unknown>;
}

/** Validation rules of `AuditService.log()` input. */
export class AuditLogInputRules {
  @IsDefined({ message: 'action is required' })
  @IsString({ message: 'action must be a string' })
  @MaxLength(MAX_ACTION_LENGTH)
  @Matches(AUDIT_ACTION_PATTERN, {
    message: ({ value }) => `action ${JSON.stringify(value)} is not a dotted lower-case name, e.g. "order.updated"`,
  })
  action!: string;

  @IsOptional()
  @IsIn(['success', 'failure'], { message: 'outcome must be "success" or "failure"' })
  outcome?: string;

  @IsOptional()
  @ValidateNested()
  actor?: AuditActorInputRules;

  @IsOptional()
  @ValidateNested()
  target?: AuditTargetInputRules;

  @IsOptional()
  @IsObject({ message: 'context must be a plain object' })
  context?: Record<string, unknown>;

  /** Any length: a long reason is cut when stored (an attacker's text must not fail the write). */
  @IsOptional()
  @IsString({ message: 'reason must be a string' })
  reason?: string;

  @IsOptional()
  @IsArray({ message: 'changes must be an array' })
  @ValidateNested({ each: true })
  changes?: AuditChangeInputRules[];
}

const asIdString = (value: unknown): unknown =>
  typeof value === 'number' || typeof value === 'bigint' ? String(value) : value;

function instance<T extends object>(type: new () => T, value: unknown, idKeys: string[] = []): T | unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const copy = Object.assign(new type(), value) as Record<string, unknown>;
  for (const key of idKeys) if (key in copy) copy[key] = asIdString(copy[key]);
  return copy as T;
}

function flatten(errors: ValidationError[], prefix = ''): AuditFieldProblem[] {
  return errors.flatMap((error) => {
    const field = prefix ? (/^\d+$/.test(error.property) ? `${prefix}[${error.property}]` : `${prefix}.${error.property}`) : error.property;
    const own = error.constraints ? [{ field, problems: Object.values(error.constraints) }] : [];
    return [...own, ...flatten(error.children ?? [], field)];
  });
}

/**
 * Validates manual event input (target already turned into `{ type, id }`); returns
 * the problems found, empty when the input is valid. Numeric ids are accepted as strings.
 */
export function validateAuditLogInput(input: Record<string, unknown>): AuditFieldProblem[] {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return [{ field: 'input', problems: ['must be an object such as { action: "order.updated" }'] }];
  }
  return plainlyValid(input) ? [] : ruleProblems(input);
}

/** The problems the class-validator rules find in `input` (an object). */
export function ruleProblems(input: Record<string, unknown>): AuditFieldProblem[] {
  const rules = Object.assign(new AuditLogInputRules(), input);
  rules.actor = instance(AuditActorInputRules, input['actor'], ['id']) as AuditActorInputRules | undefined;
  rules.target = instance(AuditTargetInputRules, input['target'], ['id']) as AuditTargetInputRules | undefined;
  if (Array.isArray(input['changes'])) {
    rules.changes = input['changes'].map((change) => instance(AuditChangeInputRules, change, ['id'])) as AuditChangeInputRules[];
  }
  const errors = validateSync(rules, { whitelist: true, forbidNonWhitelisted: true, forbidUnknownValues: true });
  return [...flatten(errors), ...changeFieldProblems(input['changes'])];
}

/**
 * The fields of explicit changes that are neither a field's `{ from, to }` nor a
 * relation's `{ added: [...], removed: [...] }` (the rules check that `fields` is an
 * object, not what it holds).
 */
function changeFieldProblems(changes: unknown): AuditFieldProblem[] {
  if (!Array.isArray(changes)) return [];
  const problems: AuditFieldProblem[] = [];
  changes.forEach((change: unknown, index) => {
    const fields = isPlainRecord(change) ? change['fields'] : undefined;
    if (!isPlainRecord(fields)) return; // reported by the rules
    for (const [name, value] of Object.entries(fields)) {
      const relation = isPlainRecord(value) && ('added' in value || 'removed' in value);
      const valid = isPlainRecord(value) && (!relation || (Array.isArray(value['added']) && Array.isArray(value['removed'])));
      if (!valid) problems.push({ field: `changes[${index}].fields.${name}`, problems: [`changes[${index}].fields.${name} must be { from, to } or { added: [...], removed: [...] }`] });
    }
  });
  return problems;
}

const INPUT_KEYS = new Set(['action', 'outcome', 'actor', 'target', 'context', 'reason', 'changes']);
const ACTOR_KEYS = new Set(['type', 'id', 'display']);
const TARGET_KEYS = new Set(['type', 'id']);

const shortString = (value: unknown, max: number): boolean => typeof value === 'string' && value.length <= max;
const nonEmpty = (value: unknown, max: number): boolean => shortString(value, max) && (value as string).length > 0;
const isPlainRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Whether `value` is a plain object whose own properties are all enumerable and named in
 * `keys`: the rules see a copy of its own enumerable properties, so reading such an
 * object directly reads what they check.
 */
function onlyKeys(value: Record<string, unknown>, keys: ReadonlySet<string>): boolean {
  if (Object.getPrototypeOf(value) !== Object.prototype) return false;
  const enumerable = Object.keys(value);
  if (enumerable.length !== Object.getOwnPropertyNames(value).length || Object.getOwnPropertySymbols(value).length > 0) return false;
  for (const key of enumerable) if (!keys.has(key)) return false;
  return true;
}

/**
 * Whether `input` is valid by a few direct checks, each stricter than (or as strict as)
 * the rules above: true only for input they accept too (lengths counted in UTF-16 units
 * are never below the characters the rules count). Anything else — invalid input, or
 * valid input of a rarer shape (`null` for an optional field, explicit `changes`) — goes
 * through the rules, which name every problem. Most events pass here, at a small
 * fraction of the rules' cost.
 */
export function plainlyValid(input: Record<string, unknown>): boolean {
  if (!onlyKeys(input, INPUT_KEYS)) return false;
  const { action, outcome, actor, target, context, reason, changes } = input;
  if (!shortString(action, MAX_ACTION_LENGTH) || !AUDIT_ACTION_PATTERN.test(action as string)) return false;
  if (outcome !== undefined && outcome !== 'success' && outcome !== 'failure') return false;
  if (actor !== undefined) {
    if (!isPlainRecord(actor) || !onlyKeys(actor, ACTOR_KEYS) || !nonEmpty(actor['type'], 64)) return false;
    const id = actor['id'];
    if (id !== undefined && typeof id !== 'number' && typeof id !== 'string') return false;
    if (actor['display'] !== undefined && typeof actor['display'] !== 'string') return false;
  }
  if (target !== undefined) {
    if (!isPlainRecord(target) || !onlyKeys(target, TARGET_KEYS) || !nonEmpty(target['type'], 128) || !nonEmpty(target['id'], Infinity)) return false;
  }
  if (context !== undefined && !isPlainRecord(context)) return false;
  if (reason !== undefined && typeof reason !== 'string') return false;
  return changes === undefined;
}

/** Validates the actor given to `runAs()`; returns the problems found (field names start with `actor`). */
export function validateAuditActor(actor: unknown): AuditFieldProblem[] {
  if (actor === null || typeof actor !== 'object' || Array.isArray(actor)) {
    return [{ field: 'actor', problems: ['must be an object such as { type: "system", id: "expirer" }'] }];
  }
  const rules = instance(AuditActorInputRules, actor, ['id']) as AuditActorInputRules;
  return flatten(validateSync(rules, { whitelist: true, forbidNonWhitelisted: true }), 'actor');
}
