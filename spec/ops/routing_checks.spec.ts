// The near-tie rule of the routing comparisons must accept only float32-sized differences, never exact ties in
// the wrong order nor real mistakes; otherwise the conformance suite could not fail on tie-breaking bugs.
import {checkSelection} from './conformance/routing_checks.js';

describe('routing id comparison', () => {
  const values = [0.5, 0.5, 0.3 + 1e-7, 0.3, 0.1];  // E = 5, one token
  it('accepts identical ids', () => {
    expect(checkSelection([0, 1, 2], [0, 1, 2], values, 1, 5, 3).failure).toBeNull();
  });
  it('accepts a float32-sized near-tie swap and counts it', () => {
    const r = checkSelection([0, 1, 3], [0, 1, 2], values, 1, 5, 3);
    expect(r.failure).toBeNull();
    expect(r.nearTieRows).toBe(1);
  });
  it('rejects an exact tie in the wrong order', () => {
    expect(checkSelection([1, 0, 2], [0, 1, 2], values, 1, 5, 3).failure).toMatch(/token 0/);
  });
  it('rejects a wrong expert, a duplicate and an out-of-range id', () => {
    expect(checkSelection([0, 1, 4], [0, 1, 2], values, 1, 5, 3).failure).toMatch(/token 0/);
    expect(checkSelection([0, 0, 2], [0, 1, 2], values, 1, 5, 3).failure).toMatch(/twice/);
    expect(checkSelection([0, 1, 5], [0, 1, 2], values, 1, 5, 3).failure).toMatch(/outside/);
  });
});
