// The fuzz cases (fuzz.ts) on every path, sized for CI's two cores and SwiftShader. Cases per run of this file:
// cpu kernels 8 ops x 400 + 100 layers = 3300, cpu composite 8 x 80 + 25 = 665, webgpu kernels and webgpu
// composite 8 x 3 + 2 = 26 each: 4017 in all (about 50 s here; the budgets stop a path early, logged, if a
// machine is much slower). CI runs it twice, in Node (dawn.node) and in the browser suite (spec/browser/entry.ts).
import {describeFuzz} from './fuzz.js';
import {describeOnPaths, EDGE_PATHS} from './paths.js';

const COUNTS = {
  'cpu kernels': {perOp: 400, layers: 100, budgetMs: 20_000},
  'cpu composite': {perOp: 80, layers: 25, budgetMs: 20_000},
  'webgpu kernels': {perOp: 3, layers: 2, budgetMs: 60_000},
  'webgpu composite': {perOp: 3, layers: 2, budgetMs: 60_000},
} as const;

describeOnPaths('robust: fuzz', path => describeFuzz(path, COUNTS[path.label as keyof typeof COUNTS]), EDGE_PATHS);
