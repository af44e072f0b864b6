// The half-matrix (subgroup-matrix) GEMM variant's gate and choice, without a GPU: it runs only with the flag on,
// every feature present, 32-wide subgroups and an f16 -> f32 square configuration; chooseGemmConfig takes it only
// for the vectorized [E,K,N] layout past the stream rows, with tiles that fit; enable directives move to the top
// of a module. (The program itself needs a device with subgroup matrices: SwiftShader has none, so its numbers are
// checked on the H200 by bench/webgpu_formats_bench.ts BENCH_HALF_MATRICES against the exact program.)
import * as tf from '@tensorflow/tfjs-core';
import * as internal from 'tfjs-moe/internal';

const FULL = {
  features: new Set(['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix', 'timestamp-query']),
  adapterInfo: {subgroupMinSize: 32, subgroupMaxSize: 32, subgroupMatrixConfigs: [
    {componentType: 'f16', resultComponentType: 'f16', M: 16, N: 16, K: 16},
    {componentType: 'f16', resultComponentType: 'f32', M: 16, N: 8, K: 16},
    {componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16},
  ]},
};

describe('half-matrix GEMM variant (gate and choice)', () => {
  afterEach(() => {
    tf.env().set(internal.MOE_WEBGPU_GEMM_HALF_MATRICES, true);
    internal.setWebGPUGemmPreset(null);
  });

  it('runs only with the flag, every feature, 32-wide subgroups and a square f16 -> f32 matrix', () => {
    expect(internal.halfMatrixShape(FULL)).withContext('flag on (the default)').toEqual({m: 16, n: 16, k: 16, n8: true});
    expect(internal.halfMatrixShape({...FULL, adapterInfo: {...FULL.adapterInfo, subgroupMatrixConfigs:
      FULL.adapterInfo.subgroupMatrixConfigs.filter(c => c.N === 16)}})).withContext('no 16 x 8 x 16 configuration')
        .toEqual({m: 16, n: 16, k: 16});
    tf.env().set(internal.MOE_WEBGPU_GEMM_HALF_MATRICES, false);
    expect(internal.halfMatrixShape(FULL)).withContext('flag off: the exact tiles').toBeNull();
    tf.env().set(internal.MOE_WEBGPU_GEMM_HALF_MATRICES, true);
    expect(internal.halfMatrixShape({features: new Set(['shader-f16', 'subgroups', 'timestamp-query']),
      adapterInfo: FULL.adapterInfo})).withContext('a device without the features (as tfjs creates one)').toBeNull();
    for (const f of internal.HALF_MATRIX_FEATURES) {
      const features = new Set([...FULL.features].filter(x => x !== f));
      expect(internal.halfMatrixShape({...FULL, features})).withContext(`without ${f}`).toBeNull();
    }
    expect(internal.halfMatrixShape({...FULL, adapterInfo: {...FULL.adapterInfo, subgroupMinSize: 16}}))
        .withContext('subgroups 16..32 wide').toBeNull();
    expect(internal.halfMatrixShape({...FULL, adapterInfo: {...FULL.adapterInfo,
      subgroupMatrixConfigs: FULL.adapterInfo.subgroupMatrixConfigs.slice(0, 2)}})).withContext('no square f32 result')
        .toBeNull();
    expect(internal.halfMatrixShape({features: FULL.features})).withContext('no adapterInfo').toBeNull();
  });

  const shape = (rows: number, o: Partial<internal.GemmShape> = {}): internal.GemmShape =>
    ({numRows: rows, depth: 2048, width: 1536, numExperts: 128, transposeRhs: false, hasBias: false, swiglu: true, ...o});
  const h = {m: 16, n: 16, k: 16};

  it('chooseGemmConfig takes matrix tiles by rows per expert, only where the layout and memory allow', () => {
    const storage = 48 * 1024;
    expect(internal.chooseGemmConfig(shape(2048), storage, 'default', null).kind).withContext('no shape').toBe('tiled');
    const at = (rows: number, o: Partial<internal.GemmShape> = {}) => internal.chooseGemmConfig(shape(rows, o), storage,
        'default', h);
    expect(at(128).kind).withContext('1 row per expert: stream').toBe('stream');
    // The first row for 16 rows per expert and these weights (rows may name formats).
    // Rows may name formats and the GEMM (with or without the SwiGLU epilogue).
    const firstFor = (format: string, swiglu = true) => internal.GEMM_PRESETS[internal.MATRIX_TILE_TABLE.find(r =>
        16 <= r.maxRowsPerExpert && (r.formats == null || r.formats.includes(format)) &&
        (r.swiglu == null || r.swiglu === swiglu))!.preset] as internal.MatrixConfig;
    expect(at(2048) as internal.MatrixConfig).toEqual({...firstFor('float32'), sm: 16, sn: 16, sk: 16});
    const formats = [['float16', 0], ['int4', 32], ['bfloat16', 0], ['int8', 128], ['int8', 2048]] as const;
    for (const [format, groupSize] of formats) {
      const packed = {format, transposed: false, zeroPoint: false, groupSize, numExperts: 128, depth: 2048, width: 1536};
      expect(at(2048, {packed}) as internal.MatrixConfig).withContext(format)
          .toEqual({...firstFor(format), sm: 16, sn: 16, sk: 16});
      expect(at(2048, {packed, swiglu: false, width: 2048, depth: 768}) as internal.MatrixConfig)
          .withContext(`${format}, the down GEMM`).toEqual({...firstFor(format, false), sm: 16, sn: 16, sk: 16});
    }
    const int4 = {format: 'int4' as const, transposed: false, zeroPoint: false, groupSize: 32, numExperts: 128,
                  depth: 2048, width: 1536};
    expect(at(32768, {packed: int4})).withContext('int4 at 256 rows per expert: a row for the SwiGLU GEMM')
        .not.toEqual(at(32768, {packed: int4, swiglu: false, width: 2048, depth: 768}));
    expect(at(32768)).toEqual(jasmine.objectContaining({kind: 'matrix'}));
    expect(at(2048, {transposeRhs: true, swiglu: false}).kind).withContext('transposed').toBe('tiled');
    expect(at(2048, {depth: 2046}).kind).withContext('K % 4 != 0').not.toBe('matrix');
    for (const row of internal.MATRIX_TILE_TABLE) {
      const c = internal.GEMM_PRESETS[row.preset] as internal.MatrixConfig;
      expect(c.kind).withContext(row.preset).toBe('matrix');
      expect(c.probe).withContext(`${row.preset}: the table takes no probe`).toBeUndefined();
      expect(c.reserveBytes).withContext(`${row.preset}: the table takes no probe`).toBeUndefined();
    }
    for (const name of Object.keys(internal.GEMM_PRESETS)) {
      const c = internal.GEMM_PRESETS[name];
      if (c.kind === 'matrix') {
        expect(internal.workgroupBytes(c)).withContext(`${name} fits 48 KiB`).toBeLessThanOrEqual(storage);
      }
    }
    expect(internal.chooseGemmConfig(shape(32768), 8 * 1024, 'default', h).kind).withContext('8 KiB: no room')
        .toBe('tiled');
    // Presets that differ only in their epilogue are different programs (their shader keys differ).
    const key = (name: string) => new internal.BatchedGemmProgram(shape(2048),
        {...internal.GEMM_PRESETS[name] as internal.MatrixConfig, sm: 16, sn: 16, sk: 16}).shaderKey;
    expect(new Set(['m32x128s4h', 'm32x128s4er', 'm32x128s4hr', 'm32x128s4sru', 'm32x128s4eru'].map(key)).size).toBe(5);
    internal.setWebGPUGemmPreset('m16x128s4hq');
    expect(at(2048).kind).withContext('16 x 8 x 16 preset where the device lists no such shape').not.toBe('matrix');
    expect(internal.chooseGemmConfig(shape(2048), storage, 'default', {...h, n8: true}))
        .withContext('16 x 8 x 16 preset').toEqual(jasmine.objectContaining({kind: 'matrix', sm: 16, sn: 8, sk: 16}));
    internal.setWebGPUGemmPreset('m64x64');
    expect(at(2048)).toEqual(jasmine.objectContaining({kind: 'matrix', tm: 64, tn: 64}));
    expect(internal.chooseGemmConfig(shape(2048), storage, 'default', null).kind)
        .withContext('a matrix preset without matrices: the heuristic').toBe('tiled');
  });

  it('moves enable and diagnostic directives to the top of a module, once per device, other modules unchanged', () => {
    const seen: string[] = [];
    const device = {createShaderModule: (d: {code: string}) => { seen.push(d.code); return d; }};
    internal.hoistEnableDirectives(device);
    internal.hoistEnableDirectives(device);
    device.createShaderModule({code: 'struct U { a : f32, };\n      enable f16;\n  enable subgroups, f16;\n' +
        '  diagnostic(off, chromium.subgroup_matrix_uniformity);\nfn main() {}'});
    device.createShaderModule({code: 'fn main() { let enabled = 1; }'});
    expect(seen[0]).toBe('enable f16;\nenable subgroups, f16;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);\n' +
        'struct U { a : f32, };\n\n\n\nfn main() {}');
    expect(seen[1]).toBe('fn main() { let enabled = 1; }');
  });
});
