// Runs bench/cpu_bench_page.ts in headless Chromium (Debian's, through playwright-core, as the browser suite does):
// bundles the page (tfjs-core, the cpu backend, tfjs-moe from src, onnxruntime-web) with esbuild, serves it with
// onnxruntime-web's wasm files on 127.0.0.1, prints the table and writes cpu_bench_browser.json to $OUT (default
// bench/results). `node bench/cpu_bench_browser.mjs [T=1,16,256] [formats=float32,int8,int4]`
import {copyFileSync, mkdirSync, writeFileSync} from 'node:fs';
import {join, resolve} from 'node:path';
import {execSync} from 'node:child_process';
import {build} from 'esbuild';

import {launchChromium} from '../scripts/browser/chromium.mjs';
import {serveStatic} from '../scripts/browser/server.mjs';

const dir = resolve('build/cpu-bench-browser');
const outDir = process.env.OUT ?? 'bench/results';
const query = process.argv.slice(2).join('&');
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_S ?? 1200) * 1000;

mkdirSync(join(dir, 'ort'), {recursive: true});
// The page never writes model files: onnx_moe_model.ts's Node writers get empty modules in the bundle.
const nodeStubs = {
  name: 'node-stubs',
  setup(b) {
    b.onResolve({filter: /^node:(fs|path)$/}, args => ({path: args.path, namespace: 'node-stub'}));
    const unavailable = "() => { throw new Error('not in the browser'); }";
    b.onLoad({filter: /.*/, namespace: 'node-stub'}, () => ({loader: 'js', contents:
        ['closeSync', 'openSync', 'writeFileSync', 'writeSync', 'join'].map(f => `export const ${f} = ${unavailable};`).join('\n')}));
  },
};
await build({entryPoints: ['bench/cpu_bench_page.ts'], bundle: true, format: 'esm', platform: 'browser',
  target: 'es2020', outfile: join(dir, 'page.js'), logLevel: 'warning', plugins: [nodeStubs]});
const ortDist = resolve('node_modules/onnxruntime-web/dist');
for (const f of ['ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm']) copyFileSync(join(ortDist, f), join(dir, 'ort', f));
writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>cpu bench</title>' +
    '<script type="module" src="page.js"></script>');

const loadBefore = execSync('uptime').toString().trim();
const server = await serveStatic(dir);
const browser = await launchChromium();
let result;
try {
  const page = await browser.context.newPage();
  page.on('console', msg => console.log(`[page] ${msg.text()}`));
  let resolveDone;
  const done = new Promise(r => resolveDone = r);
  await page.exposeFunction('__benchReport', r => resolveDone(r));
  await page.goto(`${server.url}/index.html${query ? `?${query}` : ''}`);
  // unref: the pending timer must not keep the process alive once the page has reported.
  result = await Promise.race([done, new Promise(r => setTimeout(() => r({error: 'timeout'}), TIMEOUT_MS).unref())]);
  result.browser = await browser.context.browser()?.version();
} finally {
  await browser.close();
  await server.close();
}
if (result.error) {
  console.error(`the benchmark page failed: ${result.error}`);
  process.exit(1);
}
result.loadBefore = loadBefore;
result.loadAfter = execSync('uptime').toString().trim();
console.log(JSON.stringify({browser: result.browser, crossOriginIsolated: result.crossOriginIsolated, wasm: result.wasm,
  loadBefore, loadAfter: result.loadAfter}));
console.log('\n| layer | format | T | onnxruntime-web ms | tfjs-moe wasm ms | ratio | max diff vs ORT |');
console.log('|---|---|---|---|---|---|---|');
for (const r of result.rows) {
  console.log(`| 1/4 width (H 512, I 192) | ${r.format} | ${r.T} | ${r.ortWebMs.toFixed(2)} | ${r.wasmMs.toFixed(2)} | ` +
      `${r.ratio.toFixed(2)} | ${r.relDiffVsOrt.toExponential(1)} |`);
}
mkdirSync(outDir, {recursive: true});
writeFileSync(join(outDir, 'cpu_bench_browser.json'), JSON.stringify(result, null, 1));
