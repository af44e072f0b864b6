#!/usr/bin/env node
// The package check (the last part of `npm test`): what a new user gets from npm. Packs the repository as
// `npm publish` would (from a state without dist/, so `prepack` must build it), installs the tarball into a
// fresh consumer project with @tensorflow/tfjs (from the npm cache where `npm ci` left it), and checks there:
// the tarball's contents and the README's links, ESM and CommonJS loading in one process, the TypeScript
// consumers (nodenext, a .cts under node16, node10), the CUDA build bin and messages, and every code block of
// the README (scripts/doc-test.mjs). Ends with the `N passed, N failed[, N skipped]` line the test command reads.
import {execFile} from 'node:child_process';
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join, resolve} from 'node:path';
import {pathToFileURL} from 'node:url';
import {promisify} from 'node:util';

import {runReadmeBlocks} from './doc-test.mjs';

const exec = promisify(execFile);
const root = resolve('.');
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const tsc = join(root, 'node_modules/typescript/bin/tsc');
const verbose = process.argv.includes('--verbose');
const keep = process.argv.includes('--keep');

const results = [];
function record(name, status, message = '') {
  results.push({name, status, message});
  console.log(`${status === 'passed' ? 'PASS' : status === 'failed' ? 'FAIL' : 'SKIP'}: ${name}` +
      (message && (status !== 'passed' || verbose) ? `\n  ${message.split('\n').join('\n  ')}` : ''));
}
async function check(name, fn) {
  const t0 = Date.now();
  try {
    const note = await fn();
    record(name, 'passed', `${((Date.now() - t0) / 1000).toFixed(1)} s${note ? `; ${note}` : ''}`);
  } catch (e) {
    record(name, 'failed', (e.stderr ? `${e.message}\n${e.stderr}` : e.stack ?? String(e)).slice(0, 3000));
  }
}
function assert(ok, message) {
  if (!ok) throw new Error(message);
}
const node = (args, options) => exec(process.execPath, args, {maxBuffer: 32 << 20, ...options});

const work = mkdtempSync(join(tmpdir(), 'tfjs-moe-package-'));
const consumer = join(work, 'consumer');
let tarball = null, packed = [];
const started = Date.now();

// The API reference builds while the tarball is packed and installed (it reads src/ only).
const typedoc = node([join(root, 'node_modules/typedoc/bin/typedoc')]).then(r => ({ok: true, ...r}), e => ({ok: false, e}));

await check('npm pack builds dist through prepack (from a clone without dist/)', async () => {
  rmSync('dist', {recursive: true, force: true});
  const {stdout} = await exec(npm, ['pack', '--json', '--pack-destination', work], {maxBuffer: 32 << 20});
  const info = JSON.parse(stdout.slice(stdout.indexOf('\n[') + 1 || stdout.indexOf('[')))[0];
  tarball = join(work, info.filename);
  packed = info.files.map(f => f.path);
  assert(existsSync('dist/esm/index.js'), 'dist/ was not rebuilt');
  return `${info.filename}: ${packed.length} files, ${(info.size / 1024).toFixed(0)} KiB`;
});

await check('the tarball carries the builds, types, license, docs, changelog and the CUDA build', () => {
  assert(tarball != null, 'no tarball');
  const required = ['LICENSE', 'README.md', 'BENCHMARKS.md', 'CHANGELOG.md', 'package.json', 'dist/esm/index.js',
    'dist/esm/index.d.ts', 'dist/esm/node.js', 'dist/esm/node.d.ts', 'dist/cjs/index.cjs', 'dist/cjs/index.mjs',
    'dist/cjs/node.cjs', 'dist/cjs/types/index.d.cts', 'dist/cjs/types/node.d.cts', 'dist/browser/tfjs-moe.esm.js',
    pkg.bin['tfjs-moe-build-cuda'], 'src/kernels/cuda/addon.cc'];
  const docs = existsSync('docs') ? readdirSync('docs', {recursive: true}).map(f => `docs/${f}`)
      .filter(f => statSync(f).isFile()) : [];
  const missing = [...required, ...docs].filter(f => !packed.includes(f));
  assert(missing.length === 0, `missing from the tarball: ${missing.join(', ')}`);
  const stray = packed.filter(f => /^(spec|bench|build|node_modules|\.device|\.ci)\//.test(f) || f.endsWith('.node'));
  assert(stray.length === 0, `should not be packed: ${stray.slice(0, 10).join(', ')}`);
  const license = readFileSync('LICENSE', 'utf8');
  assert(pkg.license === 'Apache-2.0' && /Apache License\s+Version 2\.0, January 2004/.test(license) &&
      /END OF TERMS AND CONDITIONS/.test(license), 'LICENSE must hold the Apache-2.0 text package.json names');
  return `${required.length} required files and ${docs.length} docs/ files present`;
});

await check('every relative link of the README resolves to a file in the tarball', () => {
  const readme = readFileSync('README.md', 'utf8');
  const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map(m => m[1])
      .filter(l => !/^[a-z]+:|^#/.test(l)).map(l => l.replace(/#.*$/, '').replace(/^\.\//, ''));
  assert(links.length > 0, 'the README links nothing');
  const broken = links.filter(l => !packed.includes(l) && !packed.some(f => f.startsWith(`${l.replace(/\/$/, '')}/`)));
  assert(broken.length === 0, `README links not in the package: ${broken.join(', ')}`);
  assert(links.includes('docs/semantics.md'), 'the README must link the specification docs/semantics.md');
  return links.join(', ');
});

await check('the tarball installs into a fresh project with @tensorflow/tfjs (npm cache first)', async () => {
  assert(tarball != null, 'no tarball');
  mkdirSync(consumer, {recursive: true});
  writeFileSync(join(consumer, 'package.json'), JSON.stringify({name: 'consumer', private: true, type: 'module'}));
  const dev = pkg.devDependencies;
  const t0 = Date.now();
  await exec(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error',
    tarball, `@tensorflow/tfjs@${dev['@tensorflow/tfjs']}`, `@tensorflow/tfjs-backend-webgpu@${dev['@tensorflow/tfjs-backend-webgpu']}`,
    `webgpu@${dev.webgpu}`], {cwd: consumer, maxBuffer: 32 << 20});
  assert(existsSync(join(consumer, 'node_modules/tfjs-moe/dist/esm/index.js')), 'tfjs-moe/dist missing after install');
  return `${((Date.now() - t0) / 1000).toFixed(1)} s`;
});

const installed = existsSync(join(consumer, 'node_modules/tfjs-moe/package.json'));
function inConsumer(name, fn) {
  return installed ? check(name, fn) : record(name, 'failed', 'the tarball did not install');
}

await inConsumer('ESM import and CommonJS require in one process: one implementation, no duplicate registration', async () => {
  const file = join(consumer, 'dual.mjs');
  writeFileSync(file, `import {createRequire} from 'node:module';
import * as tf from '@tensorflow/tfjs';
const warnings = [];
const warn = console.warn;
console.warn = (...a) => { warnings.push(a.join(' ')); };
const esm = await import('tfjs-moe');
const cjs = createRequire(import.meta.url)('tfjs-moe');
const esmNode = await import('tfjs-moe/node');
const cjsNode = createRequire(import.meta.url)('tfjs-moe/node');
console.warn = warn;
const y = new cjs.FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 8}).apply(tf.randomNormal([3, 16]));
const restored = tf.serialization.SerializationMap.getMap().classNameMap.FusedMoE[0];
console.log(JSON.stringify({same: esm.FusedMoE === cjs.FusedMoE, registry: restored === esm.FusedMoE,
  node: esmNode.initWebGPUForNode === cjsNode.initWebGPUForNode, warnings, shape: y.shape}));
`);
  const {stdout, stderr} = await node([file], {cwd: consumer});
  const r = JSON.parse(stdout.trim().split('\n').pop());
  assert(r.same && r.registry && r.node, `two implementations: ${JSON.stringify(r)}`);
  const dup = [...r.warnings, stderr].filter(w => /already registered/.test(w));
  assert(dup.length === 0, `duplicate registrations: ${dup.join('\n')}`);
  assert(r.shape.join() === '3,16', `shape ${r.shape}`);
});

await inConsumer('a CommonJS consumer runs the first example through require()', async () => {
  const file = join(consumer, 'first.cjs');
  writeFileSync(file, `const tf = require('@tensorflow/tfjs');
const {FusedMoE, moeTopkSelect} = require('tfjs-moe');
const moe = new FusedMoE({numExperts: 64, topK: 8, moeIntermediateSize: 256});
const y = moe.apply(tf.randomNormal([16, 512]));
const {topkIds} = moeTopkSelect(tf.randomNormal([16, 64]), null, 8);
console.log(JSON.stringify({shape: y.shape, path: moe.selectedPath(), ids: topkIds.shape}));
`);
  const {stdout} = await node([file], {cwd: consumer});
  const r = JSON.parse(stdout.trim().split('\n').pop());
  assert(r.shape.join() === '16,512' && r.path === 'kernels:cpu' && r.ids.join() === '16,8', stdout);
});

await inConsumer('TypeScript consumers type-check: strict nodenext ESM, a .cts under node16, node10', async () => {
  const dir = join(consumer, 'ts');
  mkdirSync(dir, {recursive: true});
  const body = (imports) => `${imports}
const moe: FusedMoE = new FusedMoE({numExperts: 4, topK: 2, moeIntermediateSize: 8});
const status: CudaStatus = cudaStatus();
const versions: [number | undefined, number | undefined] = [status.runtimeVersion, status.driverVersion];
// @ts-expect-error topK must be a number: proves the declarations are typed, not 'any'
new FusedMoE({numExperts: 4, topK: 'two', moeIntermediateSize: 8});
const init: (o?: InitWebGPUForNodeOptions) => Promise<unknown> = initWebGPUForNode;
export {moe, versions, init};
`;
  writeFileSync(join(dir, 'esm.mts'), body(`import {FusedMoE, cudaStatus, type CudaStatus} from 'tfjs-moe';
import {initWebGPUForNode, type InitWebGPUForNodeOptions} from 'tfjs-moe/node';
import {FusedMoE as BrowserFusedMoE} from 'tfjs-moe/browser';
export const b: typeof BrowserFusedMoE = FusedMoE;`));
  writeFileSync(join(dir, 'cjs.cts'), body(`import {FusedMoE, cudaStatus, CudaStatus} from 'tfjs-moe';
import {initWebGPUForNode, InitWebGPUForNodeOptions} from 'tfjs-moe/node';`));
  writeFileSync(join(dir, 'legacy.ts'), body(`import {FusedMoE, cudaStatus, CudaStatus} from 'tfjs-moe';
import {initWebGPUForNode, InitWebGPUForNodeOptions} from 'tfjs-moe/node';
import {FusedMoE as BrowserFusedMoE} from 'tfjs-moe/browser';
export const b: typeof BrowserFusedMoE = FusedMoE;`));
  const common = {strict: true, noEmit: true, target: 'ES2022', types: [], lib: ['ES2022', 'DOM'],
    // tfjs's own declarations do not pass a strict check; ours are proven typed by the @ts-expect-error line.
    skipLibCheck: true};
  const configs = {
    nodenext: {compilerOptions: {...common, module: 'nodenext', moduleResolution: 'nodenext'}, files: ['esm.mts']},
    node16: {compilerOptions: {...common, module: 'node16', moduleResolution: 'node16'}, files: ['cjs.cts']},
    node10: {compilerOptions: {...common, module: 'commonjs', moduleResolution: 'node10'}, files: ['legacy.ts']},
  };
  const failures = [];
  await Promise.all(Object.entries(configs).map(async ([name, config]) => {
    writeFileSync(join(dir, `tsconfig.${name}.json`), JSON.stringify(config));
    try {
      await node([tsc, '-p', `tsconfig.${name}.json`], {cwd: dir});
    } catch (e) {
      failures.push(`${name}: ${e.stdout || e.message}`);
    }
  }));
  assert(failures.length === 0, failures.join('\n'));
  return Object.keys(configs).join(', ');
});

await inConsumer('npx tfjs-moe-build-cuda exists in an installed package and fails clearly without nvcc', async () => {
  let error = null;
  try {
    await exec(npm, ['exec', '--no', '--', 'tfjs-moe-build-cuda'], {cwd: consumer,
      env: {...process.env, TFJS_MOE_NVCC: '/nonexistent/nvcc'}});
  } catch (e) {
    error = e;
  }
  assert(error != null && error.code === 1, `expected exit 1, got ${error?.code ?? 0}`);
  assert(/nvcc was not found.*optional/s.test(error.stderr), `stderr: ${error.stderr}`);
});

await inConsumer('cudaStatus() in an installed package names `npx tfjs-moe-build-cuda` and each path once', async () => {
  const file = join(consumer, 'cuda.mjs');
  writeFileSync(file, `import {cudaStatus} from 'tfjs-moe';\nconsole.log(JSON.stringify(cudaStatus()));\n`);
  const {stdout} = await node([file], {cwd: consumer, env: {...process.env, TFJS_MOE_CUDA_ADDON: ''}});
  const s = JSON.parse(stdout.trim().split('\n').pop());
  assert(s.code === 'addon-not-built', `code ${s.code}: ${s.reason}`);
  assert(s.reason.includes('`npx tfjs-moe-build-cuda`'), s.reason);
  const paths = s.reason.replace(/.*looked for /, '').split(', ');
  assert(new Set(paths).size === paths.length, `a path is listed twice: ${s.reason}`);
});

await check('the API reference builds from the doc comments (npm run docs), every export documented', async () => {
  const r = await typedoc;
  // typedoc.json treats validation warnings as errors: an export without a doc comment fails the build.
  if (!r.ok) throw r.e;
  const api = JSON.parse(readFileSync('build/api/api.json', 'utf8'));
  const documented = Object.fromEntries(api.children.map(m => [m.name, new Set((m.children ?? []).map(c => c.name))]));
  const missing = [];
  for (const [entry, file] of [['index', 'index'], ['node', 'node']]) {
    const names = Object.keys(await import(pathToFileURL(join(root, `dist/esm/${file}.js`)).href));
    for (const n of names) if (!documented[entry]?.has(n)) missing.push(`${entry}.${n}`);
  }
  assert(missing.length === 0, `exports missing from the reference: ${missing.join(', ')}`);
  assert(existsSync('build/api/index.html'), 'no HTML reference in build/api');
  return `${documented.index.size} root and ${documented.node.size} tfjs-moe/node declarations in build/api`;
});

if (installed) {
  for (const r of await runReadmeBlocks(resolve('README.md'), consumer)) record(r.name, r.status, r.message);
} else {
  record('README code blocks', 'failed', 'the tarball did not install');
}

if (!keep) rmSync(work, {recursive: true, force: true});
const count = s => results.filter(r => r.status === s).length;
console.log(`(package check: ${((Date.now() - started) / 1000).toFixed(1)} s${keep ? `, kept ${work}` : ''})`);
console.log(`${count('passed')} passed, ${count('failed')} failed${count('skipped') ? `, ${count('skipped')} skipped` : ''}`);
process.exit(count('failed') ? 1 : 0);
