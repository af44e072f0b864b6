// GPTQ / AWQ int4 checkpoints (qweight / qzeros / scales per expert, group 128, no act-order) through
// readMoeLayerFromCheckpoint + loadHuggingFaceMoe into 'int4' as the same codes, scales and zero points. The
// checkpoint is packed here by an independent writer from the formats' published layouts (GPTQ: nibble j of
// qweight word (kw, n) is k = 8 kw + j, qzeros store zero - 1; AWQ: packed along N, nibble i of a word holding
// column 8c + [0, 2, 4, 6, 1, 3, 5, 7][i], zeros stored as they are) and its weights dequantized here as
// scale * (q - zero); the layer's output is checked against the float64 reference on those weights.
import * as tf from '@tensorflow/tfjs-core';
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import * as path from 'node:path';
import * as moe from 'tfjs-moe';
import {loadHuggingFaceMoe} from 'tfjs-moe';
import {readMoeLayerFromCheckpoint} from 'tfjs-moe/node';

import {expectNoLeak, expectThrowsNoLeak, recordError, relError, rng} from '../helpers/util.js';
import {LAYER_TOLERANCE} from '../layers/layer_conformance.js';
import {applyAndRead, randn} from '../layers/layer_util.js';
import {refFusedMoE} from '../reference/moe_reference.js';
import {HfBlockCase, HfBlockValues, refFromHf} from './hf_test_util.js';
import {f32Bytes, i32Bytes, RawTensor, u16Bytes, writeSafetensors} from './safetensors_writer.js';

const H = 256, I = 128, E = 3, K_TOP = 2, GROUP = 128;
const PREFIX = 'model.layers.0.mlp.';
const AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7];

const CASE: HfBlockCase = {family: 'qwen3_moe', H, E, I, k: K_TOP, proj: ['gate_proj', 'up_proj', 'down_proj'],
  config: {model_type: 'qwen3_moe', hidden_size: H, num_experts: E, num_experts_per_tok: K_TOP, moe_intermediate_size: I,
    norm_topk_prob: true}, routing: {topkMethod: 'greedy', nGroup: 1, topkGroup: 1, routedScalingFactor: 1, renormalize: true}};

/** One linear layer [K in, N out] of one expert: codes q[k][n] in [0,15], zeros z[g][n] in [1,15], f16 scales. */
interface Int4Linear {K: number; N: number; q: Uint8Array; z: Uint8Array; scaleBits: Uint16Array}

function halfValue(bits: number): number {
  // Normal halves only (the generator draws exponents 10..14).
  return (1 + (bits & 0x3ff) / 1024) * 2 ** (((bits >> 10) & 0x1f) - 15) * (bits & 0x8000 ? -1 : 1);
}

function randomLinear(rand: () => number, K: number, N: number): Int4Linear {
  const G = K / GROUP;
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  return {K, N, q: Uint8Array.from({length: K * N}, () => int(0, 15)), z: Uint8Array.from({length: G * N}, () => int(1, 15)),
          scaleBits: Uint16Array.from({length: G * N}, () => (int(10, 14) << 10) | int(0, 1023))};
}

/** w[k][n] = fround(scale * (q - zero)): the float32 weights the checkpoint stands for. */
function dequantized(l: Int4Linear): Float32Array {
  const w = new Float32Array(l.K * l.N);
  for (let k = 0; k < l.K; k++) {
    for (let n = 0; n < l.N; n++) {
      const g = Math.floor(k / GROUP);
      w[k * l.N + n] = halfValue(l.scaleBits[g * l.N + n]) * (l.q[k * l.N + n] - l.z[g * l.N + n]);
    }
  }
  return w;
}

function gptqTensors(l: Int4Linear): Record<string, RawTensor> {
  const {K, N} = l, G = K / GROUP;
  const qweight = new Int32Array(K / 8 * N), qzeros = new Int32Array(G * N / 8);
  for (let kw = 0; kw < K / 8; kw++) {
    for (let n = 0; n < N; n++) {
      for (let j = 0; j < 8; j++) qweight[kw * N + n] |= l.q[(8 * kw + j) * N + n] << (4 * j);
    }
  }
  for (let g = 0; g < G; g++) {
    for (let c = 0; c < N / 8; c++) {
      for (let j = 0; j < 8; j++) qzeros[g * N / 8 + c] |= (l.z[g * N + 8 * c + j] - 1) << (4 * j);
    }
  }
  const gIdx = Int32Array.from({length: K}, (_, k) => Math.floor(k / GROUP));
  return {qweight: {dtype: 'I32', shape: [K / 8, N], bytes: i32Bytes(qweight)},
    qzeros: {dtype: 'I32', shape: [G, N / 8], bytes: i32Bytes(qzeros)},
    scales: {dtype: 'F16', shape: [G, N], bytes: u16Bytes(l.scaleBits)},
    g_idx: {dtype: 'I32', shape: [K], bytes: i32Bytes(gIdx)}};
}

function awqTensors(l: Int4Linear): Record<string, RawTensor> {
  const {K, N} = l, G = K / GROUP;
  const pack = (rows: number, code: (r: number, n: number) => number) => {
    const words = new Int32Array(rows * N / 8);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < N / 8; c++) {
        for (let i = 0; i < 8; i++) words[r * N / 8 + c] |= code(r, 8 * c + AWQ_ORDER[i]) << (4 * i);
      }
    }
    return words;
  };
  return {qweight: {dtype: 'I32', shape: [K, N / 8], bytes: i32Bytes(pack(K, (k, n) => l.q[k * N + n]))},
    qzeros: {dtype: 'I32', shape: [G, N / 8], bytes: i32Bytes(pack(G, (g, n) => l.z[g * N + n]))},
    scales: {dtype: 'F16', shape: [G, N], bytes: u16Bytes(l.scaleBits)}};
}

interface Int4Block {
  linears: Array<{gate: Int4Linear, up: Int4Linear, down: Int4Linear}>;
  router: Float32Array;
}

function randomInt4Block(seed: number): Int4Block {
  const rand = rng(seed);
  return {router: randn(rand, E * H, 0.8), linears: Array.from({length: E}, () =>
    ({gate: randomLinear(rand, H, I), up: randomLinear(rand, H, I), down: randomLinear(rand, I, H)}))};
}

/** The block in torch Linear orientation ([out, in]) for the reference. */
function blockValues(b: Int4Block): HfBlockValues {
  const torch = (l: Int4Linear) => {
    const w = dequantized(l), out = new Float32Array(l.K * l.N);
    for (let k = 0; k < l.K; k++) for (let n = 0; n < l.N; n++) out[n * l.K + k] = w[k * l.N + n];
    return out;
  };
  return {router: b.router, gate: b.linears.map(l => torch(l.gate)), up: b.linears.map(l => torch(l.up)),
          down: b.linears.map(l => torch(l.down))};
}

function writeCheckpoint(dir: string, b: Int4Block, method: 'gptq' | 'awq', quant: Record<string, unknown> = {},
                         config: Record<string, unknown> = CASE.config): void {
  const tensors: Record<string, RawTensor> = {[`${PREFIX}gate.weight`]: {dtype: 'F32', shape: [E, H], bytes: f32Bytes(b.router)}};
  b.linears.forEach((l, e) => {
    for (const [proj, lin] of [['gate_proj', l.gate], ['up_proj', l.up], ['down_proj', l.down]] as const) {
      const parts = method === 'gptq' ? gptqTensors(lin) : awqTensors(lin);
      for (const [part, t] of Object.entries(parts)) tensors[`${PREFIX}experts.${e}.${proj}.${part}`] = t;
    }
  });
  writeFileSync(path.join(dir, 'model.safetensors'), writeSafetensors(tensors));
  const quantization = method === 'gptq' ?
      {quant_method: 'gptq', bits: 4, group_size: GROUP, desc_act: false, sym: false, ...quant} :
      {quant_method: 'awq', bits: 4, group_size: GROUP, zero_point: true, version: 'gemm', ...quant};
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({...config, quantization_config: quantization}));
}

/** The layer's [E, K, N] weights expected: gate columns then up columns (up_gate), down as is. */
function expectedLayerWeights(b: Int4Block, which: 'up_gate_proj_weight' | 'down_proj_weight'): Float32Array {
  const parts = (e: number) => which === 'down_proj_weight' ? [b.linears[e].down] : [b.linears[e].gate, b.linears[e].up];
  const K = which === 'down_proj_weight' ? I : H, N = which === 'down_proj_weight' ? H : 2 * I;
  const out = new Float32Array(E * K * N);
  for (let e = 0; e < E; e++) {
    let col0 = 0;
    for (const l of parts(e)) {
      const w = dequantized(l);
      for (let k = 0; k < K; k++) for (let n = 0; n < l.N; n++) out[(e * K + k) * N + col0 + n] = w[k * l.N + n];
      col0 += l.N;
    }
  }
  return out;
}

function mismatches(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let bad = 0;
  for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) bad++;
  return bad + Math.abs(got.length - want.length);
}

function disposeWeights(w: Record<string, tf.Tensor | moe.RawSafetensor>): void {
  for (const t of Object.values(w)) if (t instanceof tf.Tensor) t.dispose();
}

describe('GPTQ / AWQ int4 checkpoints through loadHuggingFaceMoe', () => {
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tfjs-moe-int4-'));
  });
  afterEach(() => {
    rmSync(dir, {recursive: true, force: true});
  });

  for (const method of ['gptq', 'awq'] as const) {
    for (const keepDtype of [true, false]) {
      it(`${method}${keepDtype ? ', keepDtype' : ''}: loads into 'int4' g128 with zero points as the same codes; ` +
         'output matches the float64 reference', async () => {
        const block = randomInt4Block(method.length * 11 + (keepDtype ? 1 : 0));
        writeCheckpoint(dir, block, method);
        const before = tf.memory().numTensors;
        const ckpt = await readMoeLayerFromCheckpoint(dir, {layer: 0, keepDtype});
        const layer = loadHuggingFaceMoe(ckpt.config, ckpt.weights, {prefix: ckpt.prefix});
        disposeWeights(ckpt.weights);
        try {
          expect(layer.options.expertWeightFormat).toBe('int4');
          expect(layer.options.quantGroupSize).toBe(GROUP);
          expect(layer.options.quantZeroPoint).toBeTrue();
          for (const which of ['up_gate_proj_weight', 'down_proj_weight'] as const) {
            const q = layer.expertWeights(which);
            expect([q.format, q.groupSize, q.zeroPoint, q.transposed]).toEqual(['int4', GROUP, true, false]);
            // The codes: GPTQ's own qweight words (gate words then up words per row of eight k).
            const K = which === 'down_proj_weight' ? I : H, N = which === 'down_proj_weight' ? H : 2 * I;
            const words = new Int32Array(E * K / 8 * N);
            block.linears.forEach((l, e) => {
              let col0 = 0;
              for (const lin of which === 'down_proj_weight' ? [l.down] : [l.gate, l.up]) {
                const qw = new Int32Array(gptqTensors(lin).qweight.bytes.buffer);
                for (let kw = 0; kw < K / 8; kw++) {
                  for (let n = 0; n < lin.N; n++) words[(e * K / 8 + kw) * N + col0 + n] = qw[kw * lin.N + n];
                }
                col0 += lin.N;
              }
            });
            expect(mismatches(await q.values.data(), words)).withContext(`${which} codes`).toBe(0);
            const w = moe.dequantizeExpertWeights(q);
            expect(mismatches(await w.data(), expectedLayerWeights(block, which))).withContext(`${which} weights`).toBe(0);
            w.dispose();
          }
          const rand = rng(71);
          const T = 6;
          const x = randn(rand, T * H);
          const y = await expectNoLeak(() => applyAndRead(layer, x, [T, H]));
          const {weights, config} = refFromHf(CASE, blockValues(block));
          const err = relError(y, refFusedMoE(x, T, H, weights, config));
          recordError(`${method} checkpoint -> int4 FusedMoE`, err);
          expect(err).toBeLessThan(LAYER_TOLERANCE);
        } finally {
          layer.dispose();
        }
        expect(tf.memory().numTensors).withContext('tensors after dispose').toBe(before);
      });
    }
  }

  it('into other formats: exactly the int4 weights quantized into that format', async () => {
    const block = randomInt4Block(5);
    writeCheckpoint(dir, block, 'gptq');
    const ckpt = await readMoeLayerFromCheckpoint(dir, {layer: 0, keepDtype: true});
    await expectNoLeak(async () => {
      for (const [format, groupSize, zeroPoint] of [['float32', null, false], ['bfloat16', null, false],
        ['int8', null, false], ['int4', 32, false]] as const) {
        const direct = loadHuggingFaceMoe(ckpt.config, ckpt.weights,
            {prefix: ckpt.prefix, expertWeightFormat: format, quantGroupSize: groupSize, quantZeroPoint: zeroPoint});
        const exact = loadHuggingFaceMoe(ckpt.config, ckpt.weights, {prefix: ckpt.prefix});
        exact.quantizeExperts(format, groupSize == null ? {} : {groupSize, zeroPoint});
        for (const which of ['up_gate_proj_weight', 'down_proj_weight'] as const) {
          const a = direct.expertWeights(which), b = exact.expertWeights(which);
          expect(a.format).toBe(format);
          for (const part of ['values', 'scales', 'zeroPoints'] as const) {
            expect(a[part] == null).withContext(`${format} ${which}.${part}`).toBe(b[part] == null);
            if (a[part] != null) {
              expect(mismatches(await a[part]!.data(), await b[part]!.data())).withContext(`${format} ${which}.${part}`)
                  .toBe(0);
            }
          }
        }
        direct.dispose();
        exact.dispose();
      }
    });
    disposeWeights(ckpt.weights);
  });

  it('refuses act-order, other bit widths, a permuted g_idx, AWQ GEMV and a missing quant_method, naming them', async () => {
    const block = randomInt4Block(9);
    const attempt = async (method: 'gptq' | 'awq', quant: Record<string, unknown>, pattern: RegExp,
                           edit?: (w: Record<string, tf.Tensor | moe.RawSafetensor>) => void,
                           config?: Record<string, unknown>) => {
      writeCheckpoint(dir, block, method, quant, config);
      const ckpt = await readMoeLayerFromCheckpoint(dir, {layer: 0});
      edit?.(ckpt.weights);
      try {
        expectThrowsNoLeak(() => loadHuggingFaceMoe(ckpt.config, ckpt.weights, {prefix: ckpt.prefix}), pattern);
      } finally {
        disposeWeights(ckpt.weights);
      }
    };
    await attempt('gptq', {desc_act: true}, /desc_act is true: act-order GPTQ checkpoints are not supported/);
    await attempt('gptq', {bits: 8}, /quantization_config.bits must be 4 \(int4\), got 8/);
    await attempt('awq', {version: 'gemv'}, /quantization_config.version must be 'gemm' for AWQ/);
    await attempt('gptq', {quant_method: 'bitsandbytes'},
                  /is a quantized expert, but config.json's quantization_config.quant_method is "bitsandbytes"/);
    await attempt('gptq', {}, /weights 'model.layers.0.mlp.experts.1.up_proj.\*': fromGptq: argument 't.gIdx' must be k \/ groupSize for every k \(act-order/, w => {
      const name = `${PREFIX}experts.1.up_proj.g_idx`;
      (w[name] as tf.Tensor).dispose();
      w[name] = tf.tensor1d(Int32Array.from({length: H}, (_, k) => (k + 1) % 2), 'int32');
    });
    // Qwen2-MoE with its shared expert quantized too: refused before any expert is converted.
    await attempt('gptq', {}, /weight 'model.layers.0.mlp.shared_expert.gate_proj.qweight': quantized shared experts are not supported/,
        w => { w[`${PREFIX}shared_expert.gate_proj.qweight`] = tf.zeros([H / 8, 64], 'int32'); },
        {...CASE.config, model_type: 'qwen2_moe', shared_expert_intermediate_size: 64});
  });
});
