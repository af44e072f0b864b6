// npm run test:browser: the browser suite, in three parts:
//   bundlers  a consumer project importing 'tfjs-moe' bundled with esbuild and vite: no Node built-ins pulled in
//   specs     spec/browser/entry.ts (the conformance suites, layer suites, webgpu kernel specs, large weights under
//             the default 128 MiB binding limit) in headless chromium with WebGPU on SwiftShader
//   demo      the demo page: one configuration run as a user would, parity and charts asserted, screenshot saved
// Pages are served from build/browser on 127.0.0.1. Prints `N passed, N failed[, N skipped]`; exits non-zero on
// any failure. Options: --only bundlers,specs,demo (default: all)  --grep TEXT (specs whose full name contains
// TEXT)  --verbose (every result, not only failures).
import {buildBrowserAssets, OUT} from './browser/assets.mjs';
import {launchChromium} from './browser/chromium.mjs';
import {checkConsumerBundles} from './browser/consumer_check.mjs';
import {checkDemoFallback, checkDemoFormat, checkDemoPage, FALLBACK_SCREENSHOT, SCREENSHOT} from './browser/demo_check.mjs';
import {serveStatic} from './browser/server.mjs';

const args = process.argv.slice(2);
const option = name => (args.includes(name) ? args[args.indexOf(name) + 1] : null);
const parts = new Set((option('--only') ?? 'bundlers,specs,demo').split(','));
const grep = option('--grep');
const verbose = args.includes('--verbose');
/** The whole spec page; SwiftShader is slow and the machine shared, so this is generous (CI budget: see .ci/run). */
const TIMEOUT_MS = Number(process.env.TFJS_MOE_BROWSER_TIMEOUT_S ?? 1500) * 1000;

const started = Date.now();
let passed = 0, failed = 0, skipped = 0;
const slowest = [];

/** Counts check results of the Node-side parts (bundlers, demo) like specs. */
function countChecks(section, checks) {
  for (const c of checks) {
    if (c.skipped != null) {
      skipped++;
      console.log(`SKIPPED: ${section}: ${c.name}: ${c.skipped}`);
    } else if (c.ok) {
      passed++;
      if (verbose) console.log(`passed: ${section}: ${c.name}`);
    } else {
      failed++;
      console.log(`FAILED: ${section}: ${c.name}\n  ${c.message}`);
    }
  }
}

if (parts.has('bundlers')) {
  const t0 = Date.now();
  countChecks('bundlers', await checkConsumerBundles());
  console.log(`bundler checks: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
const pages = ['specs', 'demo'].filter(p => parts.has(p));
if (pages.length > 0) await buildBrowserAssets(pages);
const server = pages.length > 0 ? await serveStatic(OUT) : null;
const browser = pages.length > 0 ? await launchChromium() : null;
try {
  if (parts.has('specs')) {
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
  if (parts.has('demo')) {
    countChecks('demo page', await checkDemoPage(browser.context, server.url));
    countChecks('demo page', await checkDemoFallback(browser.context, server.url));
    countChecks('demo page', (await checkDemoFormat(browser.context, server.url)).checks);
    console.log(`demo page screenshots: ${SCREENSHOT}, ${FALLBACK_SCREENSHOT}`);
  }
} finally {
  await browser?.close();
  await server?.close();
}
slowest.sort((a, b) => b[0] - a[0]);
if (slowest.length > 0) {
  console.log('slowest specs:');
  for (const [ms, name] of slowest.slice(0, 5)) console.log(`  ${(ms / 1000).toFixed(1)} s  ${name}`);
}
console.log(`(${((Date.now() - started) / 1000).toFixed(1)} s, chromium + WebGPU on SwiftShader)`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
