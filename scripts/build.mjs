// Builds dist/esm (tsc: unbundled ESM + .d.ts, what bundlers tree-shake) and dist/cjs (esbuild bundle for require()).
import {execFileSync} from 'node:child_process';
import {rmSync, mkdirSync} from 'node:fs';
import {build} from 'esbuild';

rmSync('dist', {recursive: true, force: true});
mkdirSync('dist/cjs', {recursive: true});
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], {stdio: 'inherit'});
// The Node-only entry (tfjs-moe/node) is bundled apart so that the root bundle carries no node: imports.
for (const entry of ['index', 'node']) await build({
  entryPoints: [`src/${entry}.ts`],
  outfile: `dist/cjs/${entry}.cjs`,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node18',
  sourcemap: true,
  external: ['@tensorflow/*', 'webgpu'],
  logLevel: 'warning',
});
