// The test command (`npm test`, after the setup step and the build): the Node specs (scripts/run-specs.mjs: cpu,
// composite, webgpu on dawn.node, cuda status/compile), the browser suite (scripts/test-browser.mjs: bundlers,
// headless chromium, demo page) and the package check (scripts/package-check.mjs: the packed tarball in a fresh
// consumer, the README's code blocks), each in its own process, ending with one `N passed, N failed[, N skipped]`
// line for all. `--node-only` runs the first part alone (quick local runs).
//
// The Node specs (in TFJS_MOE_SPEC_JOBS processes, default 2) and the browser suite run at the same time: each is
// one busy thread (SwiftShader compiling pipelines; chromium's GPU process for the page) and CI has 2 cores, so
// the wall time is about half their sum instead of the sum. Each suite's output is held and printed whole when it
// ends, in the order below. The package check runs after both, alone: it deletes and rebuilds dist/, which the
// other two load from.
import {spawn} from 'node:child_process';

const JOBS = process.env.TFJS_MOE_SPEC_JOBS ?? '2';
const CONCURRENT = [['node specs', 'scripts/run-specs.mjs', ['--jobs', JOBS]], ['browser suite', 'scripts/test-browser.mjs', []]];
const AFTER = [['package check', 'scripts/package-check.mjs', []]];
const nodeOnly = process.argv.includes('--node-only');

/** Runs a suite with its stdout held; resolves to its exit code, counts and output. */
function run(script, args) {
  return new Promise(resolve => {
    const started = Date.now();
    const child = spawn(process.execPath, [script, ...args], {stdio: ['ignore', 'pipe', 'pipe']});
    const out = [];
    child.stdout.on('data', c => out.push(c));
    child.stderr.on('data', c => out.push(c));
    child.on('close', code => {
      const text = Buffer.concat(out).toString();
      let counts = null;
      for (const line of text.split('\n')) {
        const m = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/.exec(line.trim());
        if (m) counts = {passed: +m[1], failed: +m[2], skipped: +(m[3] ?? 0)};
      }
      resolve({code, counts, text, seconds: (Date.now() - started) / 1000});
    });
  });
}

const total = {passed: 0, failed: 0, skipped: 0};
const summary = [];
function report(name, {code, counts, text, seconds}) {
  process.stdout.write(`\n===== ${name} =====\n${text}`);
  // A suite that died before its count line counts as one failure, so a crash can never read as green.
  const c = counts ?? {passed: 0, failed: 1, skipped: 0};
  if (code !== 0 && c.failed === 0) c.failed = 1;
  summary.push(`${name}: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped (exit ${code}, ${seconds.toFixed(0)} s)`);
  for (const k of Object.keys(total)) total[k] += c[k];
}

const started = Date.now();
const first = nodeOnly ? CONCURRENT.slice(0, 1) : CONCURRENT;
const running = first.map(([, script, args]) => run(script, args));
for (const [i, [name]] of first.entries()) report(name, await running[i]);
for (const [name, script, args] of nodeOnly ? [] : AFTER) report(name, await run(script, args));
console.log(`\n${summary.join('\n')}\n(${((Date.now() - started) / 1000).toFixed(0)} s in all)`);
console.log(`${total.passed} passed, ${total.failed} failed${total.skipped ? `, ${total.skipped} skipped` : ''}`);
process.exit(total.failed > 0 ? 1 : 0);
