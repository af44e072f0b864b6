// Table-driven bad input (issue 10): one row per hostile or careless call, each expected to throw an Error naming
// the op/argument, what was expected and what came, with tf.memory().numTensors unchanged. Items whose subject is
// a value rule rather than an error (4, 5, 7, 8 on the GPU paths, 12, 13) have their own specs in this folder
// (routing_edges, weight_grad_edges, invalid_values, layer_state); files on disk (1, 2) are in io_robust.
import * as tf from '@tensorflow/tfjs-core';
import {batchedGemm, batchedGemmWeightGrad, FusedMoE, fusedSwigluScale, getMoeScores, loadHuggingFaceMoe, moeCombine,
  moePermute, moeTopkSelect, readSafetensors, registerCudaKernels, setKernelPath, withCompositeKernels} from 'tfjs-moe';
import {setWebGPUGemmPreset} from 'tfjs-moe/internal';

import {f32Tensor, f64Bytes, writeSafetensors} from '../io/safetensors_writer.js';

interface Row {
  item: number;
  what: string;
  run: () => unknown;
  error: RegExp;
  /** Also run with every op on the composite path (the checks are in the ops, before either path). */
  composite?: boolean;
}

/** Tensors the rows share, made once per spec and disposed after it (so each row's leak check is exact). */
let shared: Record<string, tf.Tensor> = {};
const t = (name: string) => shared[name] as never;

function makeShared(): Record<string, tf.Tensor> {
  return {
    x: tf.zeros([2, 4]), ids: tf.zeros([2, 2], 'int32'), logits: tf.zeros([2, 4]),
    emptyWide: tf.zeros([0, 2 ** 31]), emptyHuge: tf.zeros([0, 2 ** 20]), emptyTall: tf.zeros([2 ** 31, 0]),
    rowMapWide: tf.zeros([2 ** 20, 0], 'int32'), weightsWide: tf.zeros([2 ** 20, 0]), yWide: tf.zeros([0, 4096]),
    lhs: tf.zeros([3, 2]), rhs: tf.zeros([2, 2, 3]), seg: tf.tensor1d([0, 1, 3], 'int32'), dy: tf.zeros([3, 3]),
    y: tf.zeros([4, 2]), rowMap: tf.tensor2d([0, 1, 2, 3], [2, 2], 'int32'), w: tf.ones([2, 2]),
    permIds: tf.tensor2d([0, 9, 1, 2], [2, 2], 'int32'), badRows: tf.tensor2d([0, 1, 4, 3], [2, 2], 'int32'),
    badSeg: tf.tensor1d([0, 3, 2], 'int32'),
  };
}

const ROWS: Row[] = [
  // 3: readSafetensors results and options
  {item: 3, what: 'options.names as a string', error: /readSafetensors: option 'names' must be an array of tensor names/,
    run: () => readSafetensors(writeSafetensors({ab: f32Tensor([1], [1])}), {names: 'ab' as never})},
  {item: 3, what: 'F64 above the float32 range', error: /tensor 'd' \(F64\) holds 1e\+300 at flat index 0, outside the float32 range/,
    run: () => readSafetensors(writeSafetensors({d: {dtype: 'F64', shape: [1], bytes: f64Bytes([1e300])}}))},
  // 2: no content in messages
  {item: 2, what: 'a text file', error: /^readSafetensors: not a safetensors file$/,
    run: () => readSafetensors(new TextEncoder().encode('secret text that is not a safetensors file'))},
  // 6: derived sizes past int32
  {item: 6, what: 'moePermute alignment 2^30 (R wraps int32)', composite: true,
    error: /moePermute: the permuted row count R \(T\*k \+ E\*\(alignment-1\)\) would be \d+, above the maximum 2147483647/,
    run: () => moePermute(t('x'), t('ids'), 4, 2 ** 30)},
  {item: 6, what: 'moePermute R*D past int32', composite: true,
    error: /moePermute: the element count of permutedX \[\d+,4\] would be \d+, above the maximum 2147483647/,
    run: () => moePermute(t('x'), t('ids'), 4, 2 ** 28)},
  {item: 6, what: 'moePermute alignment 2^53', composite: true, error: /moePermute: argument 'alignment' must be an integer in \[1, 2147483647\], got number 9007199254740992/,
    run: () => moePermute(t('x'), t('ids'), 4, 2 ** 53)},
  // 9: sizes
  {item: 9, what: 'moeTopkSelect on [0, 2^31]', composite: true,
    error: /moeTopkSelect: argument 'gatingLogits' must be a float32 tensor of rank 2 \[T,E\] with every dimension <= 2147483647/,
    run: () => moeTopkSelect(t('emptyWide'), null, 1)},
  {item: 9, what: 'moeTopkSelect with E = 2^20 experts', composite: true,
    error: /moeTopkSelect: argument 'gatingLogits' must have an expert count E <= 65536, got E = 1048576/,
    run: () => moeTopkSelect(t('emptyHuge'), null, 1)},
  {item: 9, what: 'getMoeScores with E = 2^20 experts', composite: true, error: /getMoeScores: .*expert count E <= 65536/,
    run: () => getMoeScores(t('emptyHuge'), 1, 1, 1, 1, null)},
  {item: 9, what: 'moeCombine, k = 0 and T = 2^20 (T*D past int32)', composite: true,
    error: /moeCombine: the element count of the output \[1048576,4096\] would be 4294967296/,
    run: () => moeCombine(t('yWide'), t('rowMapWide'), t('weightsWide'), t('rowMapWide'))},
  {item: 9, what: 'fusedSwigluScale on [2^31, 0]', composite: true,
    error: /fusedSwigluScale: argument 'x' must be .* with every dimension <= 2147483647.*got shape \[2147483648,0\]/,
    run: () => fusedSwigluScale(t('emptyTall'))},
  {item: 9, what: 'moePermute numExperts 2^53', composite: true,
    error: /moePermute: argument 'numExperts' must be an integer in \[1, 65536\], got number 9007199254740992/,
    run: () => moePermute(t('x'), t('ids'), 2 ** 53)},
  {item: 9, what: 'batchedGemmWeightGrad numExperts 2^31 - 1', composite: true,
    error: /batchedGemmWeightGrad: argument 'numExperts' must be an integer in \[1, 65536\], got number 2147483647/,
    run: () => batchedGemmWeightGrad(t('lhs'), t('dy'), t('seg'), 2 ** 31 - 1)},
  {item: 9, what: 'FusedMoE numExperts 2^31 - 1', error: /FusedMoE: option 'numExperts' must be an integer <= 65536, got 2147483647/,
    run: () => new FusedMoE({numExperts: 2 ** 31 - 1, topK: 1, moeIntermediateSize: 1})},
  // 8: the cpu kernels name the op and the argument (the other paths' values: invalid_values.spec)
  {item: 8, what: 'moePermute id 9 of 4 experts (cpu kernel)', error: /moePermute: argument 'topkIds' must hold expert ids in \[0, numExperts = 4\), got topkIds\[0,1\] = 9/,
    run: () => moePermute(t('x'), t('permIds'), 4)},
  {item: 8, what: 'moeCombine row 4 of 4 (cpu kernel)', error: /moeCombine: argument 'rowMap' must hold rows of y in \[0, R = 4\), got rowMap\[1,0\] = 4/,
    run: () => moeCombine(t('y'), t('badRows'), t('w'), t('rowMap'))},
  {item: 8, what: 'batchedGemm decreasing offsets (cpu kernel)', error: /batchedGemm: argument 'segments' \(expertOffsets\) must be non-decreasing/,
    run: () => batchedGemm(t('lhs'), t('rhs'), t('badSeg'))},
  // 11: layer weights
  {item: 11, what: 'setNamedWeights(null)', error: /setNamedWeights: argument 'values' must be an object of weight name -> tf.Tensor, got null/,
    run: () => withLayer(layer => layer.setNamedWeights(null as never))},
  {item: 11, what: 'setNamedWeights with a disposed tensor', error: /weight 'gate_weight' must be a float32 tf.Tensor of shape \[4,2\], got a disposed tensor/,
    run: () => withLayer(layer => {
      const dead = tf.zeros([4, 2]);
      dead.dispose();
      layer.setNamedWeights({gate_weight: dead});
    })},
  // 14: option keys, executor output
  {item: 14, what: "FusedMoE 'topkmethod'", error: /unknown option 'topkmethod' \(did you mean 'topkMethod'\?\)/,
    run: () => new FusedMoE({numExperts: 2, topK: 1, moeIntermediateSize: 1, topkmethod: 'greedy'} as never)},
  {item: 14, what: "FusedMoE 'num_experts'", error: /unknown option 'num_experts' \(did you mean 'numExperts'\?\)/,
    run: () => new FusedMoE({num_experts: 2, numExperts: 2, topK: 1, moeIntermediateSize: 1} as never)},
  // 15: messages and raw TypeErrors
  {item: 15, what: 'a bigint topK (op)', composite: true, error: /moeTopkSelect: argument 'topK' must be an integer in \[1, 4\], got 2n \(a bigint\)$/,
    run: () => moeTopkSelect(t('logits'), null, 2n as never)},
  {item: 15, what: 'a NaN topK (op)', composite: true, error: /argument 'topK' must be an integer in \[1, 4\], got number NaN/,
    run: () => moeTopkSelect(t('logits'), null, NaN)},
  {item: 15, what: 'an undefined topK (op)', composite: true, error: /argument 'topK' must be an integer in \[1, 4\], got undefined$/,
    run: () => moeTopkSelect(t('logits'), null, undefined as never)},
  {item: 15, what: 'a bigint topK (layer)', error: /option 'topK' must be an integer >= 1, got 2n \(a bigint\)/,
    run: () => new FusedMoE({numExperts: 2, topK: 2n as never, moeIntermediateSize: 1})},
  {item: 15, what: 'NaN numExperts (layer)', error: /option 'numExperts' must be an integer >= 1, got NaN/,
    run: () => new FusedMoE({numExperts: NaN, topK: 1, moeIntermediateSize: 1})},
  {item: 15, what: 'fromConfig(FusedMoE, null)', error: /FusedMoE.fromConfig: argument 'config' must be a config object, got null/,
    run: () => FusedMoE.fromConfig(FusedMoE, null as never)},
  {item: 15, what: 'loadHuggingFaceMoe options null', error: /loadHuggingFaceMoe: argument 'options' must be an options object/,
    run: () => loadHuggingFaceMoe({model_type: 'mixtral'}, {}, null as never)},
  {item: 15, what: 'setKernelPath(NaN)', error: /^setKernelPath: argument 'path' must be 'auto' or 'composite', got NaN$/,
    run: () => setKernelPath(NaN as never)},
  {item: 15, what: 'setKernelPath(a bigint)', error: /setKernelPath: argument 'path' .*, got 1n \(a bigint\)$/,
    run: () => setKernelPath(1n as never)},
  {item: 15, what: 'setWebGPUGemmPreset(a bigint)', error: /setWebGPUGemmPreset: argument 'name' .*, got 1n \(a bigint\)$/,
    run: () => setWebGPUGemmPreset(1n as never)},
  {item: 15, what: 'registerCudaKernels(a bigint)', error: /registerCudaKernels: argument 'backendName' .*, got 1n \(a bigint\)$/,
    run: () => registerCudaKernels(1n as never)},
  {item: 15, what: 'expertWeights(a bigint)', error: /expertWeights: argument 'name' .*, got 1n \(a bigint\)$/,
    run: () => withLayer(layer => layer.expertWeights(1n as never))},
  {item: 15, what: "loadHuggingFaceMoe model_type 'toString'", error: /loadHuggingFaceMoe: unknown model_type 'toString'/,
    run: () => loadHuggingFaceMoe({model_type: 'toString', hidden_size: 2, num_local_experts: 2, num_experts_per_tok: 1,
      intermediate_size: 2}, {})},
  {item: 15, what: "loadHuggingFaceMoe model_type '__proto__'", error: /loadHuggingFaceMoe: unknown model_type '__proto__'/,
    run: () => loadHuggingFaceMoe(JSON.parse('{"model_type": "__proto__"}'), {})},
  {item: 15, what: 'loadHuggingFaceMoe non-string prefix', error: /loadHuggingFaceMoe: option 'prefix' must be a string, got 7/,
    run: () => loadHuggingFaceMoe({model_type: 'mixtral', hidden_size: 2, num_local_experts: 2, num_experts_per_tok: 1,
      intermediate_size: 2}, {}, {prefix: 7 as never})},
];

function withLayer(fn: (layer: FusedMoE) => void): void {
  const layer = new FusedMoE({numExperts: 2, topK: 1, moeIntermediateSize: 1}).buildFor(4);
  try {
    fn(layer);
  } finally {
    layer.dispose();
  }
}

describe('robust: bad input table (issue 10)', () => {
  beforeEach(() => {
    shared = makeShared();
  });
  afterEach(() => {
    tf.dispose(Object.values(shared));
    shared = {};
  });

  for (const row of ROWS) {
    for (const composite of row.composite ? [false, true] : [false]) {
      it(`item ${row.item}: ${row.what}${composite ? ' (composite path)' : ''}`, () => {
        const before = tf.memory().numTensors;
        let error: unknown = null;
        try {
          if (composite) withCompositeKernels(row.run);
          else row.run();
        } catch (e) {
          error = e;
        }
        expect(error).withContext('expected an Error').toBeInstanceOf(Error);
        expect(error instanceof TypeError || error instanceof RangeError).withContext(`a raw ${String(error)}`).toBeFalse();
        expect((error as Error)?.message).toMatch(row.error);
        expect(tf.memory().numTensors).withContext('tf.memory().numTensors after the failure').toBe(before);
      });
    }
  }

  it('covers every error item of the issue', () => {
    expect([...new Set(ROWS.map(r => r.item))].sort((a, b) => a - b)).toEqual([2, 3, 6, 8, 9, 11, 14, 15]);
  });

  it('empty work is O(1): fusedSwigluScale on [2^31 - 1, 0] and moeCombine with k = 0 return at once', () => {
    // 19 s of loop over an empty tensor before; the spec's default timeout (5 s) catches a regression.
    const x = tf.zeros([2 ** 31 - 1, 0]) as tf.Tensor2D;
    const out = fusedSwigluScale(x);
    expect(out.shape).toEqual([2 ** 31 - 1, 0]);
    const y = tf.zeros([0, 4]) as tf.Tensor2D, map = tf.zeros([1024, 0], 'int32') as tf.Tensor2D;
    const w = tf.zeros([1024, 0]) as tf.Tensor2D;
    const combined = moeCombine(y, map, w, map);
    expect(Array.from(combined.dataSync()).every(v => v === 0)).toBeTrue();
    tf.dispose([x, out, y, map, w, combined]);
  });
});
