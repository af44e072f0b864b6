// The per-family error table of docs/families.md: runs the specs that load every transformers 5.17 fixture
// (spec/fixtures/hf_*.json) through loadHuggingFaceMoe and compare the layer with transformers' own float64 block
// (spec/io/hf_import.spec.ts: cpu and composite, both layouts; spec/webgpu/hf_families_webgpu.spec.ts: webgpu on
// dawn.node, SwiftShader without a GPU, the in-memory layout (gpt_oss_mxfp4: its hub file); and, where it exists,
// spec/cuda/cuda_families.spec.ts: the CUDA layer executor in float32, both layouts, pending without CUDA), then
// prints the worst relative error per fixture, layout and backend as a markdown table. `--write` also replaces the table between the family-errors markers of docs/families.md.
// Needs the compiled specs: node scripts/build.mjs && npx tsc -p tsconfig.spec.json && node scripts/family-errors.mjs
import {existsSync, readFileSync, readdirSync, writeFileSync} from 'node:fs';
import {resolve} from 'node:path';
import {pathToFileURL} from 'node:url';

import Jasmine from 'jasmine';

const SPECS = ['build/spec/io/hf_import.spec.js', 'build/spec/webgpu/hf_families_webgpu.spec.js',
  'build/spec/cuda/cuda_families.spec.js'].filter(f => existsSync(f));
const DOC = 'docs/families.md';
const BEGIN = '<!-- family-errors:begin -->', END = '<!-- family-errors:end -->';
// [heading, labels]: a webgpu or cuda cell is the one layout that backend ran.
const COLUMNS = [['hub file, cpu', ['hub file, cpu']], ['hub file, composite', ['hub file, composite']],
  ['in-memory, cpu', ['in-memory names, cpu']], ['in-memory, composite', ['in-memory names, composite']],
  ['webgpu', ['in-memory names, webgpu', 'hub file, webgpu']],
  ['cuda (f32)', ['in-memory names, float32', 'hub file, float32'], 'cuda family']];

const runner = new Jasmine({projectBaseDir: process.cwd()});
runner.loadConfig({spec_dir: 'build/spec', spec_files: ['**/*.spec.js'], helpers: ['helpers/**/*.js'], random: false});
runner.exitOnCompletion = false;
let failed = 0, skipped = 0;
runner.env.clearReporters();
runner.env.addReporter({specDone(r) {
  if (r.status === 'failed') {
    failed++;
    console.error(`FAILED: ${r.fullName}\n  ${r.failedExpectations.map(e => e.message).join('\n  ')}`);
  } else if (r.status === 'pending') {
    skipped++;
    console.error(`SKIPPED: ${r.fullName}: ${r.pendingReason}`);
  }
}});
await runner.execute(SPECS, 'vs transformers');
// The specs' own record of their worst errors (the same module instance the specs imported).
const {worstErrors} = await import(pathToFileURL(resolve('build/spec/helpers/util.js')).href);

const fixtures = readdirSync('spec/fixtures').filter(f => /^hf_.*\.json$/.test(f)).map(f => f.slice(3, -5)).sort();
const errors = worstErrors();
// The worst of the column's labels that were recorded (cuda: both layouts).
const value = (name, labels, prefix = 'transformers') => {
  const found = labels.map(l => errors.get(`${prefix} ${name} [${l}]`)).filter(v => v !== undefined);
  return found.length ? Math.max(...found) : undefined;
};
const cell = (name, labels, prefix) => value(name, labels, prefix)?.toExponential(1) ?? '-';
const lines = [
  `| fixture | model_type | ${COLUMNS.map(([heading]) => heading).join(' | ')} | worst |`,
  `|---|---|${COLUMNS.map(() => '---:').join('|')}|---:|`,
];
let worstAll = 0;
for (const name of fixtures) {
  const modelType = JSON.parse(readFileSync(`spec/fixtures/hf_${name}.json`, 'utf8')).config.model_type;
  const values = COLUMNS.map(([, labels, prefix]) => value(name, labels, prefix)).filter(v => v !== undefined);
  const worst = values.length ? Math.max(...values) : NaN;
  worstAll = Math.max(worstAll, worst);
  lines.push(`| ${name} | ${modelType} | ${COLUMNS.map(([, labels, prefix]) => cell(name, labels, prefix)).join(' | ')} | ${
    Number.isNaN(worst) ? '-' : worst.toExponential(1)} |`);
}
const table = lines.join('\n');
console.log(table);
console.log(`\n${fixtures.length} fixtures, worst ${worstAll.toExponential(2)}; ${failed} failed, ${skipped} skipped`);
if (process.argv.includes('--write')) {
  const doc = readFileSync(DOC, 'utf8');
  const a = doc.indexOf(BEGIN), b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${DOC} has no ${BEGIN} ... ${END} block`);
  writeFileSync(DOC, `${doc.slice(0, a + BEGIN.length)}\n${table}\n${doc.slice(b)}`);
  console.log(`wrote the table into ${DOC}`);
}
process.exit(failed > 0 ? 1 : 0);
