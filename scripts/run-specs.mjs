// Runs the compiled jasmine specs (build/spec) and ends with the line CI reads: `N passed, N failed[, N skipped]`.
// Usage: node scripts/run-specs.mjs [--jobs N] [spec file path or glob ...]
//   Files: paths or globs relative to the repository (build/spec/webgpu/decode_webgpu.spec.js); none: all of build/spec.
//   --jobs N (default TFJS_MOE_SPEC_JOBS, else 1; at most one per core; the test command passes 2) splits the files
//   over N processes: a spec process is single-threaded in practice (SwiftShader compiles each pipeline on the
//   calling thread), so on CI's 2 cores two of them take about half the wall time. Files go to the processes by
//   the measured CPU seconds of scripts/spec-costs.json (longest first, each to the least loaded process; files
//   importing one another together); each process runs its files in path order as a single run would; their
//   outputs are printed one after the other.
//   SPEC_TIMING=suite|spec prints wall and CPU seconds per suite or spec (and the webgpu pipelines compiled), then
//   the CPU seconds per file; SPEC_COSTS_OUT=FILE (with SPEC_TIMING) writes those as scripts/spec-costs.json holds
//   them (a full run with --jobs 2 on a quiet machine refreshes the table).
import {spawn} from 'node:child_process';
import {existsSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {availableParallelism} from 'node:os';
import {dirname, join, relative} from 'node:path';
import v8 from 'node:v8';

import Jasmine from 'jasmine';

const SPEC_DIR = 'build/spec';
const COUNT_LINE = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/;

const argv = process.argv.slice(2);
const jobsAt = argv.indexOf('--jobs');
const jobsArg = jobsAt >= 0 ? Number(argv[jobsAt + 1]) : null;
const files = jobsAt >= 0 ? argv.filter((a, i) => i !== jobsAt && i !== jobsAt + 1) : argv;
if (jobsArg != null && !(Number.isInteger(jobsArg) && jobsArg >= 1)) {
  console.error(`run-specs: --jobs must be a positive integer, got ${argv[jobsAt + 1]}`);
  process.exit(2);
}
const jobs = Math.min(jobsArg ?? Number(process.env.TFJS_MOE_SPEC_JOBS ?? 1), Math.max(1, availableParallelism()));

if (jobs > 1) await runSharded(files.length > 0 ? specFiles(files) : allSpecFiles(), jobs);
else await runHere(files);

/** Every spec file under build/spec, in the order a single jasmine run takes them. */
function allSpecFiles() {
  if (!existsSync(SPEC_DIR)) {
    console.error(`run-specs: ${SPEC_DIR} does not exist (compile the specs first: tsc -p tsconfig.spec.json)`);
    process.exit(2);
  }
  return readdirSync(SPEC_DIR, {recursive: true}).map(String).filter(f => f.endsWith('.spec.js'))
      .map(f => join(SPEC_DIR, f)).sort();
}

/** The spec files that the given paths or globs name (as jasmine resolves them). */
function specFiles(patterns) {
  const runner = new Jasmine({projectBaseDir: process.cwd()});
  runner.specDir = '';
  runner.addMatchingSpecFiles(patterns);
  return runner.specFiles.map(f => relative(process.cwd(), f));
}

/**
 * Splits the files over `jobs` child processes (this script with --jobs 1), longest-processing-time first by the
 * measured costs; a file with no measurement counts as the median one. Prints each child's output when it ends
 * and the summed count line.
 */
async function runSharded(paths, jobs) {
  const costsFile = new URL('./spec-costs.json', import.meta.url);
  const table = existsSync(costsFile) ? JSON.parse(readFileSync(costsFile, 'utf8')).cpuSeconds : {};
  const known = Object.values(table).sort((a, b) => a - b);
  const median = known[Math.floor(known.length / 2)] ?? 1;
  const cost = p => table[p.replace(/^.*build\/spec\//, '')] ?? median;
  const shards = Array.from({length: jobs}, () => ({files: [], cost: 0}));
  for (const group of importGroups(paths).sort((a, b) => b.cost(cost) - a.cost(cost))) {
    const s = shards.reduce((a, b) => (b.cost < a.cost ? b : a));
    s.files.push(...group.files);
    s.cost += group.cost(cost);
  }
  const started = Date.now();
  const live = shards.filter(s => s.files.length > 0);
  console.log(`run-specs: ${paths.length} files in ${live.length} processes ` +
              `(${live.map(s => `${s.files.length} files, ~${Math.round(s.cost)} cpu s`).join('; ')})`);
  const results = await Promise.all(live.map((s, i) => new Promise(resolve => {
    const costsOut = process.env.SPEC_COSTS_OUT ? `${process.env.SPEC_COSTS_OUT}.${i}` : undefined;
    const child = spawn(process.execPath, [process.argv[1], '--jobs', '1', ...s.files.sort()],
                        {stdio: ['ignore', 'pipe', 'pipe'],
                         env: {...process.env, ...(costsOut ? {SPEC_COSTS_OUT: costsOut} : {})}});
    const out = [];
    child.stdout.on('data', c => out.push(c));
    child.stderr.on('data', c => out.push(c));
    child.on('close', code => {
      const text = Buffer.concat(out).toString();
      console.log(`\n--- spec process ${i + 1}/${live.length} (${s.files.length} files, exit ${code}, ` +
                  `${((Date.now() - started) / 1000).toFixed(1)} s) ---\n${text.trimEnd()}`);
      const m = text.split('\n').map(l => COUNT_LINE.exec(l.trim())).filter(Boolean).pop();
      // A process that died before its count line counts as one failure, so a crash never reads as green.
      const c = m ? {passed: +m[1], failed: +m[2], skipped: +(m[3] ?? 0)} : {passed: 0, failed: 1, skipped: 0};
      if (code !== 0 && c.failed === 0) c.failed = 1;
      if (costsOut && existsSync(costsOut)) {
        c.costs = JSON.parse(readFileSync(costsOut, 'utf8')).cpuSeconds;
        rmSync(costsOut);
      }
      resolve(c);
    });
  })));
  if (process.env.SPEC_COSTS_OUT) writeCosts(process.env.SPEC_COSTS_OUT, Object.assign({}, ...results.map(r => r.costs)));
  const sum = k => results.reduce((a, r) => a + r[k], 0);
  const [passed, failed, skipped] = [sum('passed'), sum('failed'), sum('skipped')];
  console.log(`\n(${((Date.now() - started) / 1000).toFixed(1)} s, ${live.length} spec processes)`);
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failed > 0 ? 1 : 0);
}

/**
 * The files in groups that must share a process: a spec file that imports another (robust/cuda_edges imports the
 * suites of robust/invalid_values and routing_edges) defines that file's suites again in its process, so apart
 * they would run twice.
 */
function importGroups(paths) {
  const parent = new Map(paths.map(p => [p, p]));
  const root = p => (parent.get(p) === p ? p : root(parent.get(p)));
  for (const p of paths) {
    for (const [, spec] of readFileSync(p, 'utf8').matchAll(/from '(\.{1,2}\/[^']+\.spec\.js)'/g)) {
      const q = relative(process.cwd(), join(dirname(p), spec));
      if (parent.has(q)) parent.set(root(q), root(p));
    }
  }
  const groups = new Map();
  for (const p of paths) {
    if (!groups.has(root(p))) groups.set(root(p), []);
    groups.get(root(p)).push(p);
  }
  return [...groups.values()].map(files => ({files, cost: c => files.reduce((a, f) => a + c(f), 0)}));
}

function writeCosts(path, cpuSeconds) {
  const sorted = Object.fromEntries(Object.entries(cpuSeconds).sort(([a], [b]) => a.localeCompare(b))
      .map(([f, v]) => [f, Math.round(v * 10) / 10]));
  writeFileSync(path, `${JSON.stringify({source: `SPEC_TIMING=suite SPEC_COSTS_OUT=... node scripts/run-specs.mjs --jobs 2 ` +
      `(CPU seconds of each file's specs, ${new Date().toISOString().slice(0, 10)})`, cpuSeconds: sorted}, null, 1)}\n`);
}

async function runHere(files) {
  // Node 20's V8 has relaxed SIMD behind a flag (Chromium and Node 22+ have it on): on here, before any module is
  // compiled, so that the suites run the relaxed-SIMD wasm build as well as the plain one (MOE_WASM_RELAXED_SIMD).
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');

  const runner = new Jasmine({projectBaseDir: process.cwd()});
  runner.loadConfig({
    spec_dir: SPEC_DIR,
    spec_files: ['**/*.spec.js'],
    helpers: ['helpers/**/*.js'],
    random: false,
    stopSpecOnExpectationFailure: false,
  });
  runner.exitOnCompletion = false;

  let passed = 0, failed = 0, skipped = 0;
  const started = Date.now();
  // CPU seconds of this process (all threads: SwiftShader's too) and of the child processes it waited for (the
  // CUDA compile check's nvcc) are what to compare on a shared machine, where wall time depends on the other
  // users' load.
  const timing = process.env.SPEC_TIMING;
  const childSeconds = () => {
    try {
      const stat = readFileSync('/proc/self/stat', 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[13]) + Number(f[14])) / 100;  // cutime + cstime, in clock ticks (100 per second on Linux)
    } catch {
      return 0;
    }
  };
  const cpuSeconds = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6 + childSeconds(); };
  const stamp = (wall, cpu) => `[${wall.toFixed(1)} s, cpu ${cpu.toFixed(1)} s]`;
  const suiteStarts = new Map();
  const perFile = new Map();
  // The spec file each spec was defined while loading (a spec's own filename is the module that called it(), often
  // a shared suite under spec/ops/conformance/ or spec/layers/): what the per-file costs are about.
  const fileOf = new Map();
  if (timing) {
    let loading = null;
    const load = runner.loader.load.bind(runner.loader);
    runner.loader.load = async f => {
      loading = f;
      try {
        return await load(f);
      } finally {
        loading = null;
      }
    };
    for (const name of ['it', 'fit', 'xit']) {
      const defined = globalThis[name];
      globalThis[name] = function(...a) {
        const spec = defined.apply(this, a);
        if (loading != null && spec?.id != null) fileOf.set(spec.id, loading);
        return spec;
      };
    }
  }
  let specStart = null;
  runner.env.clearReporters();
  runner.env.addReporter({
    suiteStarted(s) { suiteStarts.set(s.id, [Date.now(), cpuSeconds()]); },
    specStarted() { specStart = [Date.now(), cpuSeconds(), {...globalThis.__moePipelineStats}]; },
    specDone(r) {
      if (timing && specStart) {
        const cpu = cpuSeconds() - specStart[1];
        const file = (fileOf.get(r.id) ?? r.filename ?? '?').replace(/^.*build\/spec\//, '');
        perFile.set(file, (perFile.get(file) ?? 0) + cpu);
        if (timing === 'spec') {
          // Pipelines created during the spec (spec/webgpu/webgpu_env.ts counts them under SPEC_TIMING).
          const p = globalThis.__moePipelineStats, p0 = specStart[2];
          const compiled = p ? ` ${p.pipelines - (p0.pipelines ?? 0)} pipelines ${(p.seconds - (p0.seconds ?? 0)).toFixed(1)} s` : '';
          console.log(`    ${stamp((Date.now() - specStart[0]) / 1000, cpu)}${compiled} ${r.fullName}  (${file})`);
        }
      }
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
      const start = suiteStarts.get(r.id);
      if (timing && start) console.log(`  ${stamp((Date.now() - start[0]) / 1000, cpuSeconds() - start[1])} ${r.fullName}`);
    },
    jasmineDone(r) {
      for (const e of r.failedExpectations || []) { failed++; console.log(`GLOBAL FAILURE: ${e.message}`); }
    },
  });
  const result = await runner.execute(files.length > 0 ? files : undefined);
  if (timing) {
    console.log('cpu seconds per file (specs only, not loading):');
    for (const [f, s] of [...perFile].sort((a, b) => b[1] - a[1])) console.log(`  ${s.toFixed(1).padStart(7)}  ${f}`);
    if (process.env.SPEC_COSTS_OUT) writeCosts(process.env.SPEC_COSTS_OUT, Object.fromEntries(perFile));
  }
  console.log(`(${((Date.now() - started) / 1000).toFixed(1)} s, cpu ${cpuSeconds().toFixed(1)} s, jasmine: ${result.overallStatus})`);
  if (result.overallStatus !== 'passed' && failed === 0) failed = 1;  // e.g. a load error with no spec failing
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(failed > 0 ? 1 : 0);
}
