import { describe, expect, it } from 'vitest';
import { isNear } from '../../lib/options/entity-options.js';

describe('near matches of an unknown entity or field name', () => {
  it.each([
    ['Ordr', 'Order'],
    ['order', 'Order'],
    ['orders', 'Order'],
    ['Custmer', 'Customer'],
    ['Cutsomer', 'Customer'],
    ['nte', 'note'],
    ['deletedAt', 'deleted_at'],
    ['User', 'UserProfile'],
  ])('%s is near %s', (a, b) => {
    expect(isNear(a, b)).toBe(true);
  });

  it.each([
    ['Invoice', 'Order'],
    ['id', 'note'],
    ['Tag', 'Order'],
    ['zzzzzz', 'name'],
  ])('%s is not near %s', (a, b) => {
    expect(isNear(a, b)).toBe(false);
  });
});
