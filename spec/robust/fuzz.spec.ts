// The fuzz cases (fuzz.ts) on every path, sized for CI's two cores and SwiftShader. Cases per CI run (Node):
// cpu kernels 7 ops x 400 + 100 layers = 2900, cpu composite 7 x 80 + 25 = 585, webgpu kernels and webgpu
// composite 7 x 3 + 2 = 23 each: 3531 in all (about 25 s here; the budgets stop a path early, logged, if a
// machine is much slower).
import {describeFuzz} from './fuzz.js';
import {describeOnPaths, EDGE_PATHS} from './paths.js';

const COUNTS = {
  'cpu kernels': {perOp: 400, layers: 100, budgetMs: 20_000},
  'cpu composite': {perOp: 80, layers: 25, budgetMs: 20_000},
  'webgpu kernels': {perOp: 3, layers: 2, budgetMs: 60_000},
  'webgpu composite': {perOp: 3, layers: 2, budgetMs: 60_000},
} as const;

describeOnPaths('robust: fuzz', path => describeFuzz(path, COUNTS[path.label as keyof typeof COUNTS]), EDGE_PATHS);
