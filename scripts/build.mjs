// Builds dist/esm (tsc: unbundled ESM + .d.ts, what bundlers tree-shake), dist/cjs (esbuild bundle for require(),
// which Node's `import` also gets, see below) and dist/browser (one ESM file for pages: tfjs stays a peer import,
// resolved by the page's import map or bundler). `--if-stale` skips the build when dist is newer than every source.
import {execFileSync} from 'node:child_process';
import {existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
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

// One implementation per Node process: Node's `import` gets a thin ES module over the CJS bundle (tfjs itself
// resolves to its CJS build in Node either way), so a process that both imports and requires tfjs-moe registers
// every kernel once and has one FusedMoE class. Bundlers (no 'node' condition) keep the tree-shakable dist/esm.
for (const entry of ['index', 'node']) {
  writeFileSync(`dist/cjs/${entry}.mjs`, `export * from './${entry}.cjs';\n`);
}
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
