// Builds dist/esm (tsc: unbundled ESM + .d.ts, what bundlers tree-shake), dist/cjs (esbuild bundle for require())
// and dist/browser (one ESM file for pages: tfjs stays a peer import, resolved by the page's import map or bundler).
import {execFileSync} from 'node:child_process';
import {rmSync, mkdirSync} from 'node:fs';
import {build} from 'esbuild';

rmSync('dist', {recursive: true, force: true});
mkdirSync('dist/cjs', {recursive: true});
mkdirSync('dist/browser', {recursive: true});
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
// Only the root entry: tfjs-moe/node (file system helpers) never goes into a browser file. platform 'browser' makes
// esbuild fail on any Node built-in that reaches the root entry's import graph.
await build({
  entryPoints: ['src/index.ts'],
  outfile: 'dist/browser/tfjs-moe.esm.js',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  sourcemap: true,
  external: ['@tensorflow/*'],
  logLevel: 'warning',
});
