// The wgdec batch's spec runner (bundled by pack_wgdec.sh): run-specs.mjs's jasmine setup with a spec-name filter
// (SPEC_FILTER, a substring; absent: every spec), printing each spec as it ends so that a step cut by its timeout
// still says what passed.
import Jasmine from 'jasmine';

const runner = new Jasmine({projectBaseDir: process.cwd()});
runner.loadConfig({spec_dir: 'build/spec', spec_files: ['**/*.spec.js'], helpers: ['helpers/**/*.js'], random: false});
runner.exitOnCompletion = false;
runner.env.clearReporters();
let passed = 0, failed = 0;
runner.env.addReporter({
  specDone(r) {
    if (r.status === 'excluded') return;
    console.log(`[${((r.duration ?? 0) / 1000).toFixed(1)} s] ${r.status}: ${r.fullName}`);
    if (r.status === 'passed') passed++;
    if (r.status === 'failed') {
      failed++;
      for (const e of r.failedExpectations) console.log(`  ${e.message}`);
    }
  },
});
const result = await runner.execute(undefined, process.env.SPEC_FILTER || undefined);
console.log(`${passed} passed, ${failed} failed (jasmine: ${result.overallStatus})`);
process.exit(failed > 0 || result.overallStatus === 'failed' ? 1 : 0);
