// The demo page with packed expert weights in headless chromium (WebGPU on SwiftShader, or the machine's GPU with
// CHROMIUM_FLAGS_EXTRA), checked as the browser suite checks it, and its timings printed. Default: the full-width
// Qwen3-30B-A3B layer at int4 (issue 15's model-scale demo; too slow on SwiftShader for CI, which runs width 1/16).
// Options: --format int4|int8|float16  --divisor N (1 = full width)  --tokens N
import {buildBrowserAssets, OUT} from './browser/assets.mjs';
import {launchChromium} from './browser/chromium.mjs';
import {checkDemoFormat} from './browser/demo_check.mjs';
import {serveStatic} from './browser/server.mjs';

const args = process.argv.slice(2);
const option = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const format = option('--format', 'int4'), divisor = option('--divisor', '1'), tokens = option('--tokens', '16');

await buildBrowserAssets(['demo']);
const server = await serveStatic(OUT);
const browser = await launchChromium();
const t0 = Date.now();
let failed = 0;
try {
  const {checks, state} = await checkDemoFormat(browser.context, server.url, {format, divisor, tokens,
                                                                               timeoutMs: 1_800_000});
  for (const c of checks) {
    if (!c.ok) failed++;
    console.log(`${c.ok ? 'passed' : 'FAILED'}: ${c.name}${c.ok ? '' : `: ${c.message}`}`);
  }
  const r = state?.result;
  if (r != null) {
    console.log(`adapter ${state.probe?.adapter}; ${r.format} experts, width 1/${r.divisor}, ${r.tokens} tokens, ` +
        `${(r.weightBytes / 2 ** 30).toFixed(2)} GiB of weights`);
    for (const p of r.paths) {
      console.log(`  ${p.label} (${p.selected}): ${p.medianMs.toFixed(1)} ms per call (${p.runs} runs), ` +
          `parity ${p.parity.toExponential(1)}`);
    }
  }
  console.log(`(${((Date.now() - t0) / 1000).toFixed(0)} s) ${checks.length - failed} passed, ${failed} failed`);
} finally {
  await browser.close();
  await server.close();
}
process.exit(failed > 0 ? 1 : 0);
