/**
 * cudaStatus, the addon loader and the CUDA entry points when CUDA is unavailable (CI has no GPU and usually no
 * built addon): clear reasons, distinct codes, no leaked tensors, nothing Node-specific in browser bundles.
 */
import * as tf from '@tensorflow/tfjs-core';
import {build} from 'esbuild';
import {execFileSync} from 'node:child_process';
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {cudaStatus, registerCudaKernels} from 'tfjs-moe';
import {CudaFusedMoe, CudaMoeRunner, pooledOutputMarker} from 'tfjs-moe/internal';

import {expectThrowsNoLeak} from '../helpers/util.js';

/** cudaStatus() evaluated in a fresh Node process with the given environment (the loader caches per process). */
function statusIn(env: Record<string, string>): {available: boolean, code?: string, reason?: string} {
  const script = `import('tfjs-moe').then(m => process.stdout.write(JSON.stringify(m.cudaStatus())))`;
  const out = execFileSync(process.execPath, ['-e', script], {env: {...process.env, ...env}, encoding: 'utf8'});
  return JSON.parse(out);
}

describe('cudaStatus', () => {
  const status = cudaStatus();

  it('reports {available, code, reason} with a known code, or a device when available', () => {
    expect(typeof status.available).toBe('boolean');
    if (status.available) {
      expect(status.device).toMatch(/\S/);
      expect(status.computeCapability).toMatch(/^\d+\.\d+$/);
      expect(status.memoryBytes).toBeGreaterThan(0);
    } else {
      expect(['not-node', 'node-too-old', 'addon-not-built', 'addon-load-failed', 'no-driver', 'no-device', 'cuda-error'])
          .toContain(status.code!);
      expect(status.reason).toMatch(/\S/);
    }
  });

  it('says the addon is not built, naming the build command and where it looked', () => {
    const s = statusIn({TFJS_MOE_CUDA_ADDON: '/nonexistent/tfjs_moe_cuda.node'});
    expect(s.available).toBeFalse();
    expect(s.code).toBe('addon-not-built');
    expect(s.reason).toContain('npm run build:cuda');
    expect(s.reason).toContain('/nonexistent/tfjs_moe_cuda.node');
  });

  it('says the addon failed to load when the file is not a loadable addon', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfjs-moe-status-'));
    try {
      const bogus = join(dir, 'tfjs_moe_cuda.node');
      writeFileSync(bogus, 'not an ELF file');
      const s = statusIn({TFJS_MOE_CUDA_ADDON: bogus});
      expect(s.available).toBeFalse();
      expect(s.code).toBe('addon-load-failed');
      expect(s.reason).toContain(bogus);
    } finally {
      rmSync(dir, {recursive: true, force: true});
    }
  });

  it('is cached, and a copy: mutating the result does not change the next call', () => {
    const a = cudaStatus();
    a.available = !a.available;
    expect(cudaStatus().available).toBe(status.available);
  });
});

describe('CUDA entry points without CUDA', () => {
  const status = cudaStatus();
  beforeEach(() => {
    if (status.available) pending('CUDA is available here; the unavailable paths are exercised on machines without it');
  });

  it('registerCudaKernels throws with the reason and registers nothing', () => {
    expectThrowsNoLeak(() => registerCudaKernels('tensorflow'), /CUDA is not available/);
    expect(tf.getKernel('MoeCombine', 'tensorflow')).toBeUndefined();
  });

  it('CudaMoeRunner and CudaFusedMoe.apply throw with the reason, leaking no tensor', () => {
    const config = {hidden: 4, numExperts: 2, topK: 1, intermediateSize: 2};
    expect(() => new CudaMoeRunner(config, {})).toThrowError(/CUDA is not available/);
    const layer = new CudaFusedMoe(config);
    const x = tf.ones([3, 4]);
    const w = {gateWeight: tf.ones([4, 2]), upGateProjWeight: tf.ones([2, 4, 4]), downProjWeight: tf.ones([2, 2, 4])};
    expectThrowsNoLeak(() => layer.apply(x, w), /CUDA is not available/);
    tf.dispose([x, ...Object.values(w)]);
  });
});

describe('pooled CUDA output arrays (no GPU needed)', () => {
  it('are offered only when asked for (TFJS_MOE_CUDA_OUTPUT_POOL_MIB), where a buffer can be marked ' +
     'untransferable and cannot be moved by ArrayBuffer.transfer; a marked buffer is copied by structuredClone', () => {
    const transfer = (ArrayBuffer.prototype as {transfer?: unknown}).transfer;
    const prior = process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB;
    try {
      for (const off of [undefined, '0', '']) {
        if (off === undefined) delete process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB;
        else process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB = off;
        expect(pooledOutputMarker()).withContext(`TFJS_MOE_CUDA_OUTPUT_POOL_MIB=${off}`).toBeNull();
      }
      process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB = '256';
      const mark = pooledOutputMarker();
      expect(mark != null).toBe(typeof transfer !== 'function');
      if (mark == null) return;
      const a = new Float32Array([1, 2, 3]);
      mark(a.buffer);
      const b = structuredClone(a, {transfer: [a.buffer]});
      expect(a.length).withContext('the marked buffer stays attached').toBe(3);
      expect(Array.from(b)).toEqual([1, 2, 3]);
    } finally {
      if (prior === undefined) delete process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB;
      else process.env.TFJS_MOE_CUDA_OUTPUT_POOL_MIB = prior;
    }
  });
});

describe('CudaFusedMoe arguments', () => {
  it('rejects an unknown computeDtype, naming it', () => {
    expect(() => new CudaFusedMoe({hidden: 4, numExperts: 2, topK: 1, intermediateSize: 2,
      computeDtype: 'int8' as unknown as 'float32'})).toThrowError(/computeDtype.*int8/);
  });
});

describe('browser safety of the package root', () => {
  it('bundles for the browser with no Node built-in, require or import.meta reaching the CUDA loader', async () => {
    const result = await build({
      entryPoints: ['dist/esm/index.js'], bundle: true, platform: 'browser', format: 'esm', write: false,
      external: ['@tensorflow/*'], logLevel: 'silent',
    });
    expect(result.errors).toEqual([]);
    const code = readFileSync('dist/esm/kernels/cuda/loader.js', 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    expect(code).not.toMatch(/\brequire\s*\(|from ['"]node:|import\(|import\.meta/);
  });
});
