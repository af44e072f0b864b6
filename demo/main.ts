/**
 * The demo page (npm run demo:browser): pick a model shape and a token count, run one FusedMoE layer on every path
 * the browser offers, and see latency, the expert load and parity with the cpu path. The expert weights can be
 * float32 or a packed format (float16, int8, int4: random codes, run straight from the packed weights). A full-width
 * Qwen3-30B-A3B layer at int4 g32 is 0.38 GB of experts. ?model=&divisor=&tokens=&format=&run=1 preselects (and runs) a
 * configuration. The page's state is mirrored on window.__moeDemo for the automated check.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgpu';
import * as tf from '@tensorflow/tfjs-core';

import {DemoCharts} from './charts.js';
import {decodeRun, DecodeRunResult, DEMO_FORMATS, DemoFormat, expertLoad, makeWorkload, PathResult, PathSpec,
  relativeDifference, runPath, Workload} from './measure.js';
import {findModelShape} from './model_shapes.js';
import {DIVISORS, modelLabel, MODELS, scaledShape, TOKEN_COUNTS} from './models.js';
import {probeWebGPU, WebGPUProbe} from './probe.js';

/** f32 bound of the package's GEMM tests; the layer chains two GEMMs and every path must agree to it. */
const PARITY_TOLERANCE = 1e-4;

interface DemoState {
  status: 'loading' | 'ready' | 'running' | 'done' | 'error';
  probe?: WebGPUProbe;
  backend?: string;
  result?: {model: string, divisor: number, tokens: number, format: DemoFormat, weightBytes: number,
    paths: Array<{label: string, selected: string, medianMs: number, runs: number, parity: number}>,
    maxParity: number, load: number[], decode?: DecodeRunResult};
  charts?: {latencyBars: number, loadBars: number, latencyTicks: Array<string | null>};
  error?: string;
  /** URL parameters that were not valid and were replaced by the defaults. */
  ignoredParams?: string[];
}

const state: DemoState = {status: 'loading'};
(window as unknown as {__moeDemo: DemoState}).__moeDemo = state;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const modelSelect = $<HTMLSelectElement>('model');
const divisorSelect = $<HTMLSelectElement>('divisor');
const tokenSelect = $<HTMLSelectElement>('tokens');
const formatSelect = $<HTMLSelectElement>('format');
const runButton = $<HTMLButtonElement>('run');
const charts = new DemoCharts($<HTMLCanvasElement>('latency-chart'), $<HTMLCanvasElement>('load-chart'));

function setStatus(status: DemoState['status'], text: string): void {
  state.status = status;
  document.body.dataset.status = status;
  $('status').textContent = text;
}

function fmtBytes(n: number): string {
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` :
                        `${(n / 1024).toFixed(0)} KiB`;
}

function fill(select: HTMLSelectElement, items: Array<[string, string]>, value: string): void {
  select.replaceChildren(...items.map(([v, label]) => new Option(label, v, false, v === value)));
}

function describeShape(): void {
  const m = MODELS.find(x => x.id === modelSelect.value)!;
  const {hidden, args} = scaledShape(m, Number(divisorSelect.value));
  const I = args.moeIntermediateSize!;
  const expertBytes = args.numExperts * hidden * 3 * I * bytesPerWeight(formatSelect.value as DemoFormat);
  const routing = args.topkMethod === 'noaux_tc' ?
      `noaux_tc, ${args.nGroup} groups keep ${args.topkGroup}, scaling ${args.routedScalingFactor}` : 'softmax top-k';
  const shared = args.sharedExpertIntermediateSize ? ` · shared expert ${args.sharedExpertIntermediateSize}` : '';
  $('shape').textContent =
      `H ${hidden} · I ${I} · ${args.numExperts} experts · top-${args.topK} · ${routing}${shared}` +
      ` · expert weights ${fmtBytes(expertBytes)} in ${formatSelect.value} (real model: H ${m.hidden}, ` +
      `I ${m.intermediate})`;
}

/** Bytes per expert weight as stored (int4 g32: half a byte plus a float32 scale per 32). */
function bytesPerWeight(format: DemoFormat): number {
  return format === 'float32' ? 4 : format === 'float16' ? 2 : format === 'int8' ? 1 : 0.5 + 4 / 32;
}

/** Composite paths dequantize (or read) every expert per call: left out above this float32 size. */
const COMPOSITE_MAX_EXPERT_BYTES = 512 * 2 ** 20;

function paths(probe: WebGPUProbe, w: Workload): PathSpec[] {
  const composite = w.expertFloatBytes <= COMPOSITE_MAX_EXPERT_BYTES;
  // The webgpu composite path has no packed weights (tfjs's int32 ops on webgpu round through float32).
  const webgpuComposite = composite && w.format === 'float32';
  const list: PathSpec[] = [{label: 'cpu', tfBackend: 'cpu', layerBackend: 'cpu'}];
  if (probe.available) {
    list.push({label: 'webgpu', tfBackend: 'webgpu', layerBackend: 'webgpu'});
    if (webgpuComposite) list.push({label: 'webgpu composite', tfBackend: 'webgpu', layerBackend: 'composite'});
  }
  if (composite) list.push({label: 'cpu composite', tfBackend: 'cpu', layerBackend: 'composite'});
  return list;
}

async function run(): Promise<void> {
  const probe = state.probe!;
  const m = MODELS.find(x => x.id === modelSelect.value)!;
  const divisor = Number(divisorSelect.value), tokens = Number(tokenSelect.value);
  const format = formatSelect.value as DemoFormat;
  const {hidden, args} = scaledShape(m, divisor);
  runButton.disabled = true;
  try {
    setStatus('running', 'Creating random weights…');
    await new Promise(r => setTimeout(r, 0));  // let the status paint
    const workload = makeWorkload(args, hidden, tokens, 1, format);
    const results: PathResult[] = [];
    for (const p of paths(probe, workload)) {
      setStatus('running', `Running ${p.label} (first call compiles its shaders)…`);
      results.push(await runPath(workload, p));
    }
    const reference = results[0].output;  // the cpu path (our cpu kernels)
    const rows = results.map(r => ({label: r.label, selected: r.selected, medianMs: r.medianMs, runs: r.runs,
      parity: r === results[0] ? 0 : relativeDifference(r.output, reference)}));
    const primary = probe.available ? 'webgpu' : 'cpu';
    await tf.setBackend(primary);
    const load = await expertLoad(workload, primary);
    setStatus('running', `Decoding ${DECODE_STEPS} tokens one at a time on ${primary}…`);
    const decode = await decodeRun(workload, paths(probe, workload).find(p => p.label === primary)!, DECODE_STEPS);
    showDecode(decode);
    const maxParity = Math.max(...rows.map(r => r.parity));

    charts.showLatency(rows.map(r => ({label: r.label, ms: r.medianMs})));
    charts.showLoad(load, args.topK);
    const parityEl = $('parity');
    const ok = maxParity < PARITY_TOLERANCE;
    parityEl.textContent = `${ok ? '✓' : '✗'} max ${maxParity.toExponential(1)}`;
    parityEl.className = `big ${ok ? 'ok' : 'bad'}`;
    $('parity-note').textContent = rows.slice(1).map(r => `${r.label} ${r.parity.toExponential(1)}`).join(' · ') +
        ` (max |Δ| / max |y|, bound ${PARITY_TOLERANCE.toExponential(0)})`;
    const main = rows.find(r => r.label === primary)!;
    $('backend-note').textContent = `${main.selected} · ${main.medianMs.toFixed(1)} ms for ${tokens} tokens`;
    state.result = {model: m.id, divisor, tokens, format, weightBytes: workload.bytes, paths: rows, maxParity,
      load: Array.from(load), decode};
    state.charts = charts.summary();
    setStatus('done', `Done: ${m.label}, ${divisor === 1 ? 'full width' : `width 1/${divisor}`}, ${tokens} tokens, ` +
        `${format} experts (${fmtBytes(workload.bytes)} of weights); ` +
        rows.map(r => `${r.label} ${r.medianMs.toFixed(1)} ms (${r.runs} runs)`).join(', ') + '.');
  } catch (e) {
    state.error = (e as Error).message;
    setStatus('error', `Error: ${(e as Error).message}`);
  } finally {
    runButton.disabled = false;
  }
}

/** Tokens the decode run produces one at a time. */
const DECODE_STEPS = 16;

function showDecode(d: DecodeRunResult): void {
  $('decode').textContent = `${d.medianMs.toFixed(2)} ms/token`;
  $('decode-note').textContent = `${d.selected} · ${(1e3 / d.medianMs).toFixed(0)} tokens/s for this layer · ` +
      `per token (forward + read): ${d.perTokenMs.map(t => t.toFixed(2)).join(', ')} ms`;
}

/**
 * The configuration the URL asks for. An invalid value falls back to that setting's default (never to the first
 * option of a list, which would be the largest width), and is reported on the page.
 */
function configFromUrl(params: URLSearchParams): {model: (typeof MODELS)[number], divisor: number, tokens: number,
    format: DemoFormat, ignored: string[]} {
  const ignored: string[] = [];
  const requested = params.get('model');
  let model = requested == null ? MODELS[0] : findModelShape(requested);
  if (model == null) {
    ignored.push(`model=${requested} (known: ${MODELS.map(m => m.id).join(', ')}; using ${MODELS[0].id})`);
    model = MODELS[0];
  }
  const pick = (name: string, allowed: number[], fallback: number): number => {
    const raw = params.get(name);
    if (raw == null) return fallback;
    const value = Number(raw);
    if (/^\d+$/.test(raw) && allowed.includes(value)) return value;
    ignored.push(`${name}=${raw} (allowed: ${allowed.join(', ')}; using ${fallback})`);
    return fallback;
  };
  const divisor = pick('divisor', DIVISORS, model.defaultDivisor);
  const tokens = pick('tokens', TOKEN_COUNTS, 16);
  const formats = DEMO_FORMATS.map(f => f.format);
  let format: DemoFormat = 'float32';
  const rawFormat = params.get('format');
  if (rawFormat != null) {
    if ((formats as string[]).includes(rawFormat)) format = rawFormat as DemoFormat;
    else ignored.push(`format=${rawFormat} (allowed: ${formats.join(', ')}; using float32)`);
  }
  return {model, divisor, tokens, format, ignored};
}

async function start(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const {model, divisor, tokens, format, ignored} = configFromUrl(params);
  state.ignoredParams = ignored;
  if (ignored.length) {
    const note = $('params-banner');
    note.hidden = false;
    note.textContent = `Ignored invalid URL parameter${ignored.length > 1 ? 's' : ''}: ${ignored.join('; ')}.`;
  }
  fill(modelSelect, MODELS.map(m => [m.id, modelLabel(m)]), model.id);
  fill(divisorSelect, DIVISORS.map(d => [String(d), d === 1 ? 'full' : `1/${d}`]), String(divisor));
  fill(tokenSelect, TOKEN_COUNTS.map(t => [String(t), String(t)]), String(tokens));
  fill(formatSelect, DEMO_FORMATS.map(f => [f.format, f.label]), format);
  modelSelect.addEventListener('change', () => {
    divisorSelect.value = String(MODELS.find(m => m.id === modelSelect.value)!.defaultDivisor);
    describeShape();
  });
  divisorSelect.addEventListener('change', describeShape);
  formatSelect.addEventListener('change', describeShape);
  runButton.addEventListener('click', () => void run());
  describeShape();

  setStatus('loading', 'Probing WebGPU…');
  const probe = await probeWebGPU();
  state.probe = probe;
  state.backend = probe.available ? 'webgpu' : 'cpu';
  await tf.setBackend(state.backend);
  $('backend').textContent = state.backend;
  $('adapter').textContent = probe.adapter ?? 'none';
  $('adapter-note').textContent = (probe.maxStorageBufferBindingSize != null ?
      `max storage binding ${fmtBytes(probe.maxStorageBufferBindingSize)}` : '') +
      (probe.software ? ' · software adapter: WebGPU runs on the CPU here, so its timings are not a GPU\'s' : '');
  if (!probe.available) {
    const banner = $('banner');
    banner.hidden = false;
    banner.textContent = `WebGPU is not available: ${probe.reason}. The page falls back to the cpu backend ` +
        '(tfjs-moe cpu kernels and the composite path); the WebGPU bar is left out.';
    $('backend-note').textContent = 'fallback: WebGPU unavailable';
  }
  runButton.disabled = false;
  setStatus('ready', 'Ready: pick a configuration and press Run.');
  if (params.get('run') === '1') await run();
}

start().catch(e => {
  state.error = (e as Error).message;
  setStatus('error', `Error: ${(e as Error).message}`);
});
