// Builds dist/esm (tsc: unbundled ESM + .d.ts, what bundlers tree-shake), dist/cjs (one esbuild bundle for Node,
// require() and import alike, see below) and dist/browser (ES modules for pages: tfjs stays a peer import,
// resolved by the page's import map or bundler). `--if-stale` skips the build when dist is newer than every source.
import {execFileSync} from 'node:child_process';
import {existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {join} from 'node:path';
import {build} from 'esbuild';

/** Newest modification time of the files under `dir` (0 when it does not exist). */
function newest(dir) {
  if (!existsSync(dir)) return 0;
  const st = statSync(dir);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...readdirSync(dir).map(f => newest(join(dir, f))));
}
const STAMP = 'dist/.built';
if (process.argv.includes('--if-stale') && existsSync(STAMP) &&
    statSync(STAMP).mtimeMs > Math.max(newest('src'), newest('scripts/build.mjs'), newest('package.json'),
                                         newest('tsconfig.json'), newest('tsconfig.base.json'))) {
  console.log('build: dist is up to date');
  process.exit(0);
}

rmSync('dist', {recursive: true, force: true});
mkdirSync('dist/cjs', {recursive: true});
mkdirSync('dist/browser', {recursive: true});
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], {stdio: 'inherit'});
// The entries: the browser-safe root, the Node-only helpers (file system, dawn.node) and the internals that the
// specs and benchmarks use. In Node they are one CommonJS bundle (dist/cjs/impl.cjs) behind thin per-entry files,
// and Node's `import` gets thin ES modules over the same bundle (tfjs resolves to its CommonJS build in Node
// either way): a process that both imports and requires tfjs-moe registers every kernel once, has one FusedMoE
// class, and shares settings between entries. Bundlers (no 'node' condition) get the tree-shakable dist/esm.
const ENTRIES = {index: 'root', node: 'node', internal: 'internal'};
await build({
  stdin: {contents: Object.entries(ENTRIES).map(([file, name]) => `export * as ${name} from './src/${file}.ts';`).join('\n'),
    resolveDir: '.', sourcefile: 'entries.ts', loader: 'ts'},
  outfile: 'dist/cjs/impl.cjs',
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node18',
  sourcemap: true,
  external: ['@tensorflow/*', 'webgpu'],
  logLevel: 'warning',
});
const impl = createRequire(import.meta.url)('../dist/cjs/impl.cjs');
for (const [file, name] of Object.entries(ENTRIES)) {
  const names = Object.keys(impl[name]).sort();
  writeFileSync(`dist/cjs/${file}.cjs`, `'use strict';\nmodule.exports = require('./impl.cjs').${name};\n`);
  writeFileSync(`dist/cjs/${file}.mjs`, `import impl from './impl.cjs';\n\nexport const {${names.join(', ')}} = impl.${name};\n`);
}
// The browser files: the root and the internals split into shared chunks, so both see one implementation;
// tfjs-moe/node (file system helpers) never goes into a browser file. platform 'browser' makes esbuild fail on
// any Node built-in that reaches these entries' import graphs.
await build({
  entryPoints: {'tfjs-moe.esm': 'src/index.ts', 'tfjs-moe-internal.esm': 'src/internal.ts'},
  outdir: 'dist/browser',
  chunkNames: 'chunks/[name]-[hash]',
  splitting: true,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  sourcemap: true,
  external: ['@tensorflow/*'],
  logLevel: 'warning',
});

// Declarations for require(): the ESM ones as .d.cts (relative imports renamed), so a CommonJS consumer under
// module node16/nodenext is not pointed at ES module types (TS1479).
function copyDeclarations(from, to) {
  mkdirSync(to, {recursive: true});
  for (const f of readdirSync(from)) {
    const path = join(from, f);
    if (statSync(path).isDirectory()) {
      copyDeclarations(path, join(to, f));
    } else if (f.endsWith('.d.ts')) {
      const text = readFileSync(path, 'utf8').replace(/((?:from|import\()\s*['"]\.{1,2}\/[^'"]*)\.js(['"])/g, '$1.cjs$2')
          .replace(/\/\/# sourceMappingURL=.*\n?/, '');
      writeFileSync(join(to, f.replace(/\.d\.ts$/, '.d.cts')), text);
    }
  }
}
copyDeclarations('dist/esm', 'dist/cjs/types');
writeFileSync(STAMP, `${new Date().toISOString()}\n`);
