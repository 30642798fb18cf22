import type { ValueTransformer } from 'typeorm';

/**
 * A `bigint` column read as a JavaScript number (PostgreSQL and MySQL drivers return
 * text for it): sequence numbers and tree sizes stay far below 2^53.
 */
export const BIGINT_NUMBER: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | number | null) => (value === null || value === undefined ? value : Number(value)),
};
