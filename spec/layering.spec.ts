// The package's layering, read from the import statements of src/: arrows go down only (docs/architecture.md).
// layers -> {ops, executor}; ops -> {kernels, gradients}; gradients -> {ops, kernels}; kernels -> executor (the
// contract types and the executor registry); executor imports nothing of ours.
import {readdirSync, readFileSync, statSync} from 'node:fs';
import {dirname, join, normalize, relative} from 'node:path';

const SRC = join(process.cwd(), 'src');

/** The directory group of a source file: 'layers', 'ops', 'kernels' (its root files), 'kernels/webgpu', ... */
function group(file: string): string {
  const parts = relative(SRC, file).split('/');
  if (parts.length === 1) return 'src';
  if (parts[0] === 'kernels') return parts.length === 2 ? 'kernels' : `kernels/${parts[1]}`;
  return parts[0];
}

function importEdges(): Array<{from: string, to: string, file: string}> {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (path.endsWith('.ts')) files.push(path);
    }
  };
  walk(SRC);
  const edges: Array<{from: string, to: string, file: string}> = [];
  for (const file of files) {
    for (const m of readFileSync(file, 'utf8').matchAll(/(?:import|export)\s[^;]*?from\s+'(\.[^']+)'|import\s+'(\.[^']+)'/g)) {
      const target = normalize(join(dirname(file), m[1] ?? m[2]));
      edges.push({from: group(file), to: group(target), file: relative(SRC, file)});
    }
  }
  return edges;
}

describe('package layering (imports in src/)', () => {
  const edges = importEdges();
  const isKernels = (g: string) => g === 'kernels' || g.startsWith('kernels/');

  it('reads the imports (the check below is not vacuous)', () => {
    expect(edges.some(e => e.from === 'layers' && e.to === 'ops')).toBeTrue();
    expect(edges.some(e => e.from === 'ops' && isKernels(e.to))).toBeTrue();
  });

  it('the layer composes ops only: layers never import kernels', () => {
    expect(edges.filter(e => e.from === 'layers' && isKernels(e.to)).map(e => e.file)).toEqual([]);
  });

  it('kernels never import ops, gradients or layers (no kernel calls a public op)', () => {
    const up = edges.filter(e => isKernels(e.from) && ['ops', 'gradients', 'layers', 'io', 'src'].includes(e.to));
    expect(up.map(e => `${e.file} -> ${e.to}`)).toEqual([]);
  });

  it('ops never import layers; the executor seam imports nothing of ours', () => {
    expect(edges.filter(e => e.from === 'ops' && e.to === 'layers').map(e => e.file)).toEqual([]);
    expect(edges.filter(e => e.from === 'executor' && e.to !== 'executor').map(e => e.file)).toEqual([]);
  });

  it('registration side effects live in src/register_all.ts only (other modules export register functions)', () => {
    const index = readFileSync(join(SRC, 'index.ts'), 'utf8');
    expect(index).toContain(`import './register_all.js';`);
    for (const file of ['kernels/cpu/register_all.ts', 'kernels/webgpu/register_all.ts', 'gradients/register_all.ts',
      'kernels/cuda/cuda_layer_executor.ts']) {
      const text = readFileSync(join(SRC, file), 'utf8');
      // No top-level call: every statement that registers is inside an exported function.
      expect(/^(registerHostKernels|registerWebGPUKernels|registerMoeGradients|registerCudaLayerExecutor|for \(|registerKernel|tf\.registerGradient)/m
          .test(text)).withContext(file).toBeFalse();
    }
  });
});
