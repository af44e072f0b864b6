// The test command (`npm test`, after the setup step and the build): the Node specs (scripts/run-specs.mjs: cpu,
// composite, webgpu on dawn.node, cuda status/compile), the browser suite (scripts/test-browser.mjs: bundlers,
// headless chromium, demo page) and the package check (scripts/package-check.mjs: the packed tarball in a fresh
// consumer, the README's code blocks), each in its own process, ending with one `N passed, N failed[, N skipped]`
// line for all. `--node-only` runs the first part alone (quick local runs).
import {spawn} from 'node:child_process';

const SUITES = [['node specs', 'scripts/run-specs.mjs'], ['browser suite', 'scripts/test-browser.mjs'],
  ['package check', 'scripts/package-check.mjs']];
const nodeOnly = process.argv.includes('--node-only');

function run(script) {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [script], {stdio: ['ignore', 'pipe', 'inherit']});
    let last = null;
    child.stdout.on('data', chunk => {
      process.stdout.write(chunk);
      for (const line of chunk.toString().split('\n')) {
        const m = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/.exec(line.trim());
        if (m) last = {passed: +m[1], failed: +m[2], skipped: +(m[3] ?? 0)};
      }
    });
    child.on('close', code => resolve({code, counts: last}));
  });
}

const total = {passed: 0, failed: 0, skipped: 0};
const summary = [];
for (const [name, script] of nodeOnly ? SUITES.slice(0, 1) : SUITES) {
  const {code, counts} = await run(script);
  // A suite that died before its count line counts as one failure, so a crash can never read as green.
  const c = counts ?? {passed: 0, failed: 1, skipped: 0};
  if (code !== 0 && c.failed === 0) c.failed = 1;
  summary.push(`${name}: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped (exit ${code})`);
  for (const k of Object.keys(total)) total[k] += c[k];
}
console.log(`\n${summary.join('\n')}`);
console.log(`${total.passed} passed, ${total.failed} failed${total.skipped ? `, ${total.skipped} skipped` : ''}`);
process.exit(total.failed > 0 ? 1 : 0);
