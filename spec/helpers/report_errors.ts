// Prints the worst relative error per label after all specs (quoted in closing notes).
import {worstErrors} from './util.js';

afterAll(() => {
  const rows = [...worstErrors().entries()].sort(([a], [b]) => a.localeCompare(b));
  if (rows.length === 0) return;
  console.log('\nWorst relative error vs the float64 reference:');
  for (const [label, err] of rows) console.log(`  ${label.padEnd(48)} ${err.toExponential(2)}`);
});
