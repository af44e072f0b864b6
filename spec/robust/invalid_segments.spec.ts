// Invalid segments of the grouped GEMMs (issue 10, item 8; the rule is docs/semantics.md section 4): the cpu kernels
// hold the segments on the host and reject them, naming the op and argument; every device path (composite on any
// backend, webgpu) clamps them to the one set of bounds refSegmentBounds states, so decreasing offsets, offsets
// outside [0, R], negative counts and counts past R (even past int32 when summed) give the same rows on every path,
// and no row is written twice or left unwritten.
import * as tf from '@tensorflow/tfjs-core';
import {batchedGemm, batchedGemmSwiglu, batchedGemmWeightGrad, dequantizeExpertWeights, hasMoeKernel, MoeKernelName,
  quantizeExpertWeightsFromArray} from 'tfjs-moe';
import {setWebGPUGemmPreset} from 'tfjs-moe/internal';

import {expectNoLeak, expectThrowsNoLeak, randn, rng} from '../helpers/util.js';
import {refBatchedGemm, refBatchedGemmWeightGrad, refSegmentBounds, refSwigluScale} from '../reference/moe_reference.js';
import {cudaPaths} from './cuda_paths.js';
import {describeOnPaths, EDGE_PATHS} from './paths.js';

const R = 6, E = 3;
const MIN = -(2 ** 31), MAX = 2 ** 31 - 1;

/** [segments, areOffsets]: each breaks section 4's preconditions in its own way. */
const INVALID: Array<[number[], boolean]> = [
  [[0, 4, 2, 6], true],        // decreasing: expert 1 would overlap expert 0
  [[-3, 2, 4, 5], true],       // starts before row 0
  [[1, 3, 9, 12], true],       // ends past R
  [[5, 1, 0, 2], true],        // every later offset below the first
  [[MIN, MAX, 0, 3], true],    // int32 extremes
  [[2, -1, 3], false],         // a negative count
  [[4, 4, 4], false],          // counts past R
  [[MAX, MAX, 5], false],      // counts whose int32 sum wraps
  [[MIN, 3, 1], false],
];

function label(segs: number[], areOffsets: boolean): string {
  return `${areOffsets ? 'offsets' : 'counts'} [${segs}]`;
}

/** got within 1e-4 of the largest |want| (GEMM tolerance), NaN where want is NaN. */
function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  expect(got.length).withContext(what).toBe(want.length);
  let scale = 1e-30;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let bad = -1;
  for (let i = 0; i < want.length && bad < 0; i++) if (!(Math.abs(got[i] - want[i]) <= 1e-4 * scale)) bad = i;
  expect(bad < 0 ? '' : `element ${bad}: got ${got[bad]}, want ${want[bad]}`).withContext(what).toBe('');
}

describeOnPaths('robust: invalid segments', path => {
  // Host kernels (cpu; cuda's op kernels, which read the segments on the host) reject; ops without such a kernel
  // on the path run composite.
  const hostKernel = (name: MoeKernelName) => !path.composite && path.backend !== 'webgpu' && hasMoeKernel(name, path.backend);
  const rejects = hostKernel('BatchedGemm');
  // The webgpu kernels pick a program from static shapes: run both kinds.
  const presets = path.backend === 'webgpu' && !path.composite ? ['stream8', 'tiled32'] : [null];
  afterEach(() => setWebGPUGemmPreset(null));

  it(rejects ? 'batchedGemm rejects them naming the argument' :
               'batchedGemm: every invalid segments tensor gives the clamped bounds\' rows', async () => {
    const rand = rng(81);
    // On webgpu (SwiftShader: a pipeline costs seconds) two variants, one per program kind; every variant elsewhere.
    const variants = path.backend === 'webgpu' ?
        [{preset: 'stream8', K: 4, transposeRhs: false, withBias: true},
          {preset: 'tiled32', K: 3, transposeRhs: true, withBias: false}] :
        [4, 3].flatMap(K => [false, true].flatMap(transposeRhs =>
          [false, true].map(withBias => ({preset: null, K, transposeRhs, withBias}))));
    for (const {preset, K, transposeRhs, withBias} of variants) {
      setWebGPUGemmPreset(path.composite ? null : preset);
      const N = 8;
      const lhs = randn(rand, R * K), rhs = randn(rand, E * K * N), bias = randn(rand, E * N);
      for (const [segs, areOffsets] of INVALID) {
        const what = `${preset ?? ''} K ${K}, ${label(segs, areOffsets)}, transposeRhs ${transposeRhs}, bias ${withBias}`;
        await expectNoLeak(async () => {
          const l = tf.tensor2d(lhs, [R, K]), s = tf.tensor1d(segs, 'int32'), b = tf.tensor2d(bias, [E, N]);
          // The transposed layout holds the same weights as [E,N,K].
          const w = transposeRhs ?
              tf.tidy(() => tf.transpose(tf.tensor3d(rhs, [E, K, N]), [0, 2, 1])) : tf.tensor3d(rhs, [E, K, N]);
          const run = () => path.call(() => batchedGemm(l as tf.Tensor2D, w as tf.Tensor3D, s as tf.Tensor1D,
              {transposeRhs, bias: withBias ? b as tf.Tensor2D : null}));
          try {
            if (rejects) {
              expectThrowsNoLeak(run, /^batchedGemm: argument 'segments' \((expertOffsets|tokensPerExpert)\) must/);
              return;
            }
            const out = run();
            const got = await out.data();
            out.dispose();
            const bounds = refSegmentBounds(segs, areOffsets, R);
            expectClose(got, refBatchedGemm(lhs, R, K, rhs, E, N, bounds, false, withBias ? bias : null), what);
          } finally {
            tf.dispose([l, s, b, w]);
          }
        });
      }
    }
  });

  it(`batchedGemmSwiglu ${rejects ? 'rejects them' : 'follows the same bounds'}; an int8 rhs ${
    hostKernel('BatchedGemmQuantized') ? 'rejects them' : 'follows the same bounds'}`, async () => {
    const rand = rng(82);
    const K = 4, I = 4, N = 2 * I;
    const lhs = randn(rand, R * K), rhs = randn(rand, E * K * N), bias = randn(rand, E * N), scale = randn(rand, R);
    // Packed weights have no composite path on webgpu (its int32 ops round through float32): the op says so.
    const int8 = !(path.backend === 'webgpu' && path.composite);
    const int8Rejects = hostKernel('BatchedGemmQuantized');
    for (const preset of presets) {
      setWebGPUGemmPreset(preset);
      for (const [segs, areOffsets] of INVALID) {
        const what = `${preset ?? ''} ${label(segs, areOffsets)}`;
        const bounds = refSegmentBounds(segs, areOffsets, R);
        await expectNoLeak(async () => {
          const l = tf.tensor2d(lhs, [R, K]), s = tf.tensor1d(segs, 'int32'), b = tf.tensor2d(bias, [E, N]);
          const w = tf.tensor3d(rhs, [E, K, N]), sc = tf.tensor1d(scale);
          const q = quantizeExpertWeightsFromArray(rhs, [E, K, N], 'int8');
          const dq = dequantizeExpertWeights(q);
          const qValues = await dq.data();
          dq.dispose();
          const runSwiglu = () => path.call(() => batchedGemmSwiglu(l as tf.Tensor2D, w as tf.Tensor3D, s as tf.Tensor1D,
              {bias: b as tf.Tensor2D, scale: sc as tf.Tensor1D}));
          const runInt8 = () => path.call(() => batchedGemm(l as tf.Tensor2D, q, s as tf.Tensor1D));
          try {
            if (rejects) {
              expectThrowsNoLeak(runSwiglu, /^batchedGemmSwiglu: argument 'segments'/);
            } else {
              const out = runSwiglu();
              const got = await out.data();
              out.dispose();
              const h = refBatchedGemm(lhs, R, K, rhs, E, N, bounds, false, bias);
              expectClose(got, refSwigluScale(h, R, I, scale), `swiglu ${what}`);
            }
            if (int8Rejects) {
              expectThrowsNoLeak(runInt8, /^batchedGemm: argument 'segments'/);
              return;
            }
            if (!int8) return;
            const outQ = runInt8();
            const gotQ = await outQ.data();
            outQ.dispose();
            expectClose(gotQ, refBatchedGemm(lhs, R, K, qValues, E, N, bounds, false, null), `int8 ${what}`);
          } finally {
            tf.dispose([l, s, b, w, sc, q.values, ...(q.scales != null ? [q.scales] : [])]);
          }
        });
      }
    }
  });

  it(hostKernel('BatchedGemmWeightGrad') ? 'batchedGemmWeightGrad rejects them naming itself' :
               'batchedGemmWeightGrad sums each expert over the same bounds', async () => {
    const rand = rng(83);
    const K = 3, N = 4;
    const lhs = randn(rand, R * K), dy = randn(rand, R * N);
    const rejectsHere = hostKernel('BatchedGemmWeightGrad');
    for (const [segs, areOffsets] of INVALID) {
      const what = label(segs, areOffsets);
      await expectNoLeak(async () => {
        const l = tf.tensor2d(lhs, [R, K]), d = tf.tensor2d(dy, [R, N]), s = tf.tensor1d(segs, 'int32');
        const run = () => path.call(() => batchedGemmWeightGrad(l as tf.Tensor2D, d as tf.Tensor2D, s as tf.Tensor1D, E));
        try {
          if (rejectsHere) {
            expectThrowsNoLeak(run, /^batchedGemmWeightGrad: argument 'segments'/);
            return;
          }
          const out = run();
          const got = await out.data();
          out.dispose();
          expectClose(got, refBatchedGemmWeightGrad(lhs, dy, K, N, refSegmentBounds(segs, areOffsets, R)), what);
        } finally {
          tf.dispose([l, d, s]);
        }
      });
    }
  });
}, [...EDGE_PATHS, ...cudaPaths()]);
