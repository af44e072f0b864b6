// Runs the compiled jasmine specs (build/spec) and ends with the line CI reads: `N passed, N failed[, N skipped]`.
// Usage: node scripts/run-specs.mjs [substring filter on spec file paths ...]
import Jasmine from 'jasmine';
import v8 from 'node:v8';

// Node 20's V8 has relaxed SIMD behind a flag (Chromium and Node 22+ have it on): on here, before any module is
// compiled, so that the suites run the relaxed-SIMD wasm build as well as the plain one (MOE_WASM_RELAXED_SIMD).
v8.setFlagsFromString('--experimental-wasm-relaxed-simd');

const filters = process.argv.slice(2);
const runner = new Jasmine({projectBaseDir: process.cwd()});
runner.loadConfig({
  spec_dir: 'build/spec',
  spec_files: ['**/*.spec.js'],
  helpers: ['helpers/**/*.js'],
  random: false,
  stopSpecOnExpectationFailure: false,
});
runner.exitOnCompletion = false;

let passed = 0, failed = 0, skipped = 0;
const started = Date.now();
let suiteStart = 0;
runner.env.clearReporters();
runner.env.addReporter({
  suiteStarted(s) { if (s.fullName.split(' ').length >= 1) suiteStart = Date.now(); },
  specDone(r) {
    if (process.env.SPEC_TIMING === 'spec' && r.duration != null) console.log(`    [${(r.duration / 1000).toFixed(1)} s] ${r.fullName}`);
    if (r.status === 'passed') passed++;
    else if (r.status === 'failed') {
      failed++;
      console.log(`FAILED: ${r.fullName}`);
      for (const e of r.failedExpectations) console.log(`  ${e.message}\n${(e.stack || '').split('\n').slice(0, 6).join('\n')}`);
    } else {
      skipped++;
      if (r.pendingReason) console.log(`SKIPPED: ${r.fullName}: ${r.pendingReason}`);
    }
  },
  suiteDone(r) {
    for (const e of r.failedExpectations || []) { failed++; console.log(`SUITE FAILURE in ${r.fullName}: ${e.message}`); }
    if (process.env.SPEC_TIMING) console.log(`  [${((Date.now() - suiteStart) / 1000).toFixed(1)} s] ${r.fullName}`);
  },
  jasmineDone(r) {
    for (const e of r.failedExpectations || []) { failed++; console.log(`GLOBAL FAILURE: ${e.message}`); }
  },
});
const files = filters.length ? filters : undefined;
const result = await runner.execute(files);
console.log(`(${((Date.now() - started) / 1000).toFixed(1)} s, jasmine: ${result.overallStatus})`);
if (result.overallStatus !== 'passed' && failed === 0) failed = 1;  // e.g. a load error with no spec failing
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
