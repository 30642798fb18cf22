import { BadRequestException } from '@nestjs/common';

/**
 * Request bodies, checked by hand to keep the sample's dependencies to the module's
 * own (a real service would use DTO classes and `ValidationPipe`).
 */
export interface CreateOrderInput {
  description: string;
  totalCents: number;
  currency: string;
}

export type UpdateOrderInput = Partial<Pick<CreateOrderInput, 'description' | 'totalCents'>>;

type Body = Record<string, unknown> | undefined;

function text(body: Body, field: string, max: number, required: true): string;
function text(body: Body, field: string, max: number, required: false): string | undefined;
function text(body: Body, field: string, max: number, required: boolean): string | undefined {
  const value = body?.[field];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > max) {
    throw new BadRequestException(`"${field}" must be a non-empty string of at most ${max} characters`);
  }
  return value.trim();
}

function cents(body: Body, field: string, required: boolean): number | undefined {
  const value = body?.[field];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > 100_000_000) {
    throw new BadRequestException(`"${field}" must be a positive whole number of cents`);
  }
  return value;
}

export function parseCreateOrder(body: Body): CreateOrderInput {
  const currency = text(body, 'currency', 3, false)?.toUpperCase() ?? 'EUR';
  if (!/^[A-Z]{3}$/.test(currency)) throw new BadRequestException('"currency" must be a three-letter code such as EUR');
  return { description: text(body, 'description', 200, true), totalCents: cents(body, 'totalCents', true)!, currency };
}

export function parseUpdateOrder(body: Body): UpdateOrderInput {
  const input: UpdateOrderInput = {};
  const description = text(body, 'description', 200, false);
  const totalCents = cents(body, 'totalCents', false);
  if (description !== undefined) input.description = description;
  if (totalCents !== undefined) input.totalCents = totalCents;
  if (Object.keys(input).length === 0) throw new BadRequestException('Send "description" and/or "totalCents"');
  return input;
}

export const parseNote = (body: Body): string => text(body, 'body', 2000, true);

/** An optional free-text reason (customer cancel). */
export const optionalReason = (body: Body): string | undefined => text(body, 'reason', 500, false);

/** A mandatory reason (admin actions must say why). */
export const requiredReason = (body: Body): string => text(body, 'reason', 500, true);
