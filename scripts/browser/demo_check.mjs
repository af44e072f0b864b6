// The demo page check of the browser suite: load the page as a user would, pick one configuration, run it, and
// assert what the user is shown: WebGPU in use on an adapter, parity with the cpu path within the f32 bound, both
// charts drawn with the right number of bars. Saves a screenshot to build/screenshots/demo.png (git-ignored).
import {mkdirSync} from 'node:fs';
import {resolve} from 'node:path';

export const SCREENSHOT = resolve('build/screenshots/demo.png');
export const FALLBACK_SCREENSHOT = resolve('build/screenshots/demo-no-webgpu.png');
/** The configuration the check runs (real Qwen3-30B-A3B routing: 128 experts, top-8; widths 1/16). */
const CONFIG = {model: 'qwen3', divisor: '16', tokens: '16', experts: 128, topK: 8};
const PARITY_TOLERANCE = 1e-4;

/** Resolves to [{name, ok, message}] (one per assertion group), never throws for a page failure. */
export async function checkDemoPage(context, baseUrl, {timeoutMs = 600_000} = {}) {
  const checks = [];
  const check = (name, ok, message = '') => checks.push({name, ok: Boolean(ok), message});
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
  try {
    await page.goto(`${baseUrl}/demo/`);
    await page.waitForFunction(() => document.body.dataset.status === 'ready' || document.body.dataset.status === 'error',
                               null, {timeout: 120_000});
    // As a user: choose the model, then width and tokens, then Run.
    await page.selectOption('#model', CONFIG.model);
    await page.selectOption('#divisor', CONFIG.divisor);
    await page.selectOption('#tokens', CONFIG.tokens);
    await page.click('#run');
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null,
                               {timeout: timeoutMs});
    const state = await page.evaluate(() => window.__moeDemo);
    check('runs the configuration without error', state.status === 'done', state.error ?? state.status);
    check('shows WebGPU in use on an adapter', state.probe?.available && state.backend === 'webgpu' &&
        (await page.textContent('#backend')) === 'webgpu' && (await page.textContent('#adapter')) !== 'none',
    `probe ${JSON.stringify(state.probe)}`);
    const r = state.result;
    if (r != null) {
      const labels = r.paths.map(p => p.label);
      check('measures every path (cpu, webgpu, webgpu composite, cpu composite) with our kernels where expected',
          ['cpu', 'webgpu', 'webgpu composite', 'cpu composite'].every(l => labels.includes(l)) &&
          r.paths.find(p => p.label === 'webgpu').selected === 'kernels:webgpu' &&
          r.paths.find(p => p.label === 'cpu').selected === 'kernels:cpu' &&
          r.paths.every(p => p.medianMs > 0 && Number.isFinite(p.medianMs)),
      JSON.stringify(r.paths.map(({label, selected, medianMs}) => ({label, selected, medianMs}))));
      const parityText = await page.textContent('#parity');
      check(`parity with the cpu path < ${PARITY_TOLERANCE} on every path, as the page shows`,
          r.maxParity < PARITY_TOLERANCE && parityText.startsWith('✓'),
      `maxParity ${r.maxParity}, page shows '${parityText}'`);
      const decodeText = await page.textContent('#decode');
      check('a decode run shows per-token latency (16 tokens, forward + read each, on the webgpu kernels)',
          r.decode?.perTokenMs.length === 16 && r.decode.perTokenMs.every(t => t > 0 && Number.isFinite(t)) &&
          r.decode.selected === 'kernels:webgpu' && / ms\/token$/.test(decodeText),
      `${JSON.stringify(r.decode)}, page shows '${decodeText}'`);
      const routed = r.load.reduce((a, b) => a + b, 0);
      check('expert load covers every expert and every routed row',
          r.load.length === CONFIG.experts && routed === Number(CONFIG.tokens) * CONFIG.topK,
      `${r.load.length} experts, ${routed} rows`);
    }
    check('charts hold the data (4 latency bars, one load bar per expert)',
        state.charts?.latencyBars === 4 && state.charts?.loadBars === CONFIG.experts, JSON.stringify(state.charts));
    const labels = (state.charts?.latencyTicks ?? []).filter(t => t != null);
    check('the log latency axis labels only 1, 2 and 5 of a decade (no unlabeled grid line drawn)',
        labels.length >= 1 && labels.every(t => /^[125]0*$|^0\.0*[125]$/.test(t)),
        JSON.stringify(state.charts?.latencyTicks));
    // Drawn, not only configured: count the canvases' non-transparent pixels.
    const inked = await page.evaluate(() => ['latency-chart', 'load-chart'].map(id => {
      const c = document.getElementById(id);
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return n / (c.width * c.height);
    }));
    check('both charts rendered on their canvases', inked.every(f => f > 0.01), `inked fractions ${inked}`);
    check('no page errors', errors.length === 0, errors.join('\n'));
  } catch (e) {
    check('page check completed', false, e.message);
  } finally {
    mkdirSync(resolve('build/screenshots'), {recursive: true});
    await page.screenshot({path: SCREENSHOT, fullPage: true}).catch(() => {});
    await page.close();
  }
  return checks;
}

/**
 * The same page in a browser without WebGPU (navigator.gpu removed before the page's scripts run): it must say so
 * in a banner, run the cpu paths only, and still show parity and both charts. Runs the tiny model via the URL.
 */
export async function checkDemoFallback(context, baseUrl, {timeoutMs = 300_000} = {}) {
  const checks = [];
  const check = (name, ok, message = '') => checks.push({name: `without WebGPU: ${name}`, ok: Boolean(ok), message});
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));
  try {
    await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', {get: () => undefined}));
    // divisor=7 is not a width the page offers: it must fall back to tiny's default (1) and say so.
    await page.goto(`${baseUrl}/demo/?model=tiny&tokens=4&divisor=7&run=1`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null,
                               {timeout: timeoutMs});
    const state = await page.evaluate(() => window.__moeDemo);
    const banner = await page.locator('#banner');
    const bannerText = (await banner.isVisible()) ? await banner.textContent() : '';
    check('a visible banner says WebGPU is unavailable and why', /WebGPU is not available: .*navigator\.gpu/.test(bannerText),
        `banner: '${bannerText}'`);
    check('falls back to cpu and runs there', state.status === 'done' && state.backend === 'cpu' &&
        (await page.textContent('#backend')) === 'cpu', state.error ?? JSON.stringify(state.probe));
    check('shows the cpu paths with parity and both charts',
        state.result?.paths.map(p => p.label).join(',') === 'cpu,cpu composite' &&
        state.result.maxParity < PARITY_TOLERANCE && state.charts?.latencyBars === 2 && state.charts?.loadBars === 8,
        JSON.stringify({paths: state.result?.paths, charts: state.charts}));
    const paramsBanner = await page.locator('#params-banner');
    const paramsText = (await paramsBanner.isVisible()) ? await paramsBanner.textContent() : '';
    check('an invalid URL parameter falls back to the default and the page says so',
        state.result?.divisor === 1 && /divisor=7 .*using 1/.test(paramsText), `divisor ${state.result?.divisor}, ` +
        `banner '${paramsText}'`);
    check('no page errors', errors.length === 0, errors.join('\n'));
  } catch (e) {
    check('page check completed', false, e.message);
  } finally {
    mkdirSync(resolve('build/screenshots'), {recursive: true});
    await page.screenshot({path: FALLBACK_SCREENSHOT, fullPage: true}).catch(() => {});
    await page.close();
  }
  return checks;
}

/**
 * The page with packed expert weights, through the URL (?format=): the run shows the format, its smaller weight
 * size, our webgpu kernels running straight from the packed weights, and parity with the cpu path (which runs
 * the same codes) within the f32 bound. CI runs int4 at width 1/16; `node scripts/demo-format.mjs` the full-width
 * Qwen3-30B-A3B layer (0.38 GB of int4 g32 experts: the composite paths are left out there).
 */
export async function checkDemoFormat(context, baseUrl, {format = 'int4', divisor = '16', tokens = '16',
                                                         timeoutMs = 900_000} = {}) {
  const checks = [];
  const check = (name, ok, message = '') =>
    checks.push({name: `${format} experts, width 1/${divisor}: ${name}`, ok: Boolean(ok), message});
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', e => errors.push(e.message));
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()); });
  let state = null;
  try {
    await page.goto(`${baseUrl}/demo/?model=qwen3&divisor=${divisor}&tokens=${tokens}&format=${format}&run=1`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null,
                               {timeout: timeoutMs});
    state = await page.evaluate(() => window.__moeDemo);
    const r = state.result;
    check('runs without error', state.status === 'done', state.error ?? state.status);
    check('the format select shows the format', (await page.inputValue('#format')) === format &&
        r?.format === format, `select '${await page.inputValue('#format')}', result ${r?.format}`);
    // Qwen3-30B-A3B: 128 experts of H 2048 x 3 I (I 768), divided by the width divisor on both axes.
    const d = Number(divisor), H = 2048 / d, I = 768 / d, E = 128;
    const perWeight = {float16: 2, int8: 1 + 4 / H, int4: 0.5 + 4 / 32}[format];
    const expertBytes = E * 3 * H * I * perWeight;
    check('stores the experts at the format\'s size', r != null && r.weightBytes >= expertBytes &&
        r.weightBytes < expertBytes * 1.1 + 4 * H * E * 2, `${r?.weightBytes} bytes, experts ~${expertBytes}`);
    const web = r?.paths.find(p => p.label === 'webgpu');
    check('runs on our webgpu kernels', state.probe?.available && web?.selected === 'kernels:webgpu' &&
        web.medianMs > 0, JSON.stringify(r?.paths));
    check(`parity with the cpu path < ${PARITY_TOLERANCE}`, r != null && r.maxParity < PARITY_TOLERANCE &&
        (await page.textContent('#parity')).startsWith('✓'), `maxParity ${r?.maxParity}`);
    check('no page errors', errors.length === 0, errors.join('\n'));
  } catch (e) {
    check('page check completed', false, e.message);
  } finally {
    await page.close();
  }
  return {checks, state};
}
