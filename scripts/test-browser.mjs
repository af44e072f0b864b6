// npm run test:browser: the browser suite. Bundles spec/browser/entry.ts (+ the demo page), serves build/browser on
// 127.0.0.1, runs the specs in headless chromium with WebGPU on SwiftShader, then the demo-page check; prints
// `N passed, N failed[, N skipped]` and exits non-zero on any failure.
// Options: --grep TEXT (only specs whose full name contains TEXT; skips the demo check unless it matches 'demo page'),
//          --no-demo, --headed-log (echo every spec result, not only failures).
import {buildBrowserAssets, OUT} from './browser/assets.mjs';
import {launchChromium} from './browser/chromium.mjs';
import {checkDemoPage} from './browser/demo_check.mjs';
import {serveStatic} from './browser/server.mjs';

const args = process.argv.slice(2);
const grep = args.includes('--grep') ? args[args.indexOf('--grep') + 1] : null;
const verbose = args.includes('--verbose');
const runDemo = !args.includes('--no-demo') && (grep == null || 'demo page'.includes(grep) || grep.startsWith('demo'));
const runSpecs = grep == null || !grep.startsWith('demo');
/** The whole page run; SwiftShader is slow and the machine shared, so this is generous (CI budget: see .ci/run). */
const TIMEOUT_MS = Number(process.env.TFJS_MOE_BROWSER_TIMEOUT_S ?? 1200) * 1000;

const started = Date.now();
let passed = 0, failed = 0, skipped = 0;
const slowest = [];

await buildBrowserAssets(runDemo ? ['specs', 'demo'] : ['specs']);
const server = await serveStatic(OUT);
const browser = await launchChromium();
try {
  if (runSpecs) {
    const page = await browser.context.newPage();
    page.on('console', msg => {
      const text = msg.text();
      // tfjs announces its backends on the console; everything else (errors, our error table) is shown.
      if (/^(Platform browser has already been set|.*backend was already registered)/.test(text)) return;
      console.log(`[page ${msg.type()}] ${text}`);
    });
    page.on('pageerror', err => {
      failed++;
      console.log(`PAGE ERROR: ${err.message}`);
    });
    let resolveDone;
    const done = new Promise(r => resolveDone = r);
    await page.exposeFunction('__moeReport', e => {
      if (e.kind === 'spec') {
        slowest.push([e.ms, e.name]);
        if (e.status === 'passed') {
          passed++;
          if (verbose) console.log(`passed (${(e.ms / 1000).toFixed(1)} s): ${e.name}`);
        } else if (e.status === 'failed') {
          failed++;
          console.log(`FAILED: ${e.name}`);
          for (const m of e.messages) console.log(`  ${m}`);
        } else if (e.status !== 'excluded') {
          skipped++;
          console.log(`SKIPPED: ${e.name}${e.pendingReason ? `: ${e.pendingReason}` : ''}`);
        }
      } else if (e.kind === 'suite-failure') {
        failed++;
        console.log(`SUITE FAILURE in ${e.name}: ${e.messages.join('; ')}`);
      } else if (e.kind === 'done') {
        resolveDone(e);
      }
    });
    const url = `${server.url}/specs/index.html${grep ? `?grep=${encodeURIComponent(grep)}` : ''}`;
    console.log(`browser suite: ${url} in ${await browser.context.browser()?.version() ?? 'chromium'}`);
    await page.goto(url);
    const result = await Promise.race([done, new Promise(r => setTimeout(() => r(null), TIMEOUT_MS))]);
    if (result == null) {
      failed++;
      console.log(`TIMEOUT: the page did not finish within ${TIMEOUT_MS / 1000} s`);
    } else if (result.overallStatus !== 'passed' && failed === 0) {
      failed++;  // e.g. a load error that failed no spec
      console.log(`jasmine overall status: ${result.overallStatus}`);
    }
    await page.close();
  }
  if (runDemo) {
    const demo = await checkDemoPage(browser.context, server.url);
    for (const c of demo) {
      if (c.ok) passed++;
      else {
        failed++;
        console.log(`FAILED: demo page: ${c.name}\n  ${c.message}`);
      }
      if (verbose || !c.ok) continue;
      console.log(`passed: demo page: ${c.name}`);
    }
  }
} finally {
  await browser.close();
  await server.close();
}
slowest.sort((a, b) => b[0] - a[0]);
if (slowest.length > 0) {
  console.log('slowest specs:');
  for (const [ms, name] of slowest.slice(0, 5)) console.log(`  ${(ms / 1000).toFixed(1)} s  ${name}`);
}
console.log(`(${((Date.now() - started) / 1000).toFixed(1)} s, chromium + WebGPU on SwiftShader)`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
