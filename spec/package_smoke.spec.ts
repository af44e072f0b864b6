import * as tf from '@tensorflow/tfjs-core';
import {execFileSync} from 'node:child_process';
import * as moe from 'tfjs-moe';

describe('package', () => {
  it('exports every op from the root', () => {
    for (const name of ['moeTopkSelect', 'getMoeScores', 'moePermute', 'batchedGemm', 'fusedSwigluScale', 'moeCombine']) {
      expect(typeof (moe as Record<string, unknown>)[name]).withContext(name).toBe('function');
    }
  });

  it('loads through require() (CJS build) and import (ESM build) by self-reference', () => {
    const script = `const m = require('tfjs-moe'); if (typeof m.moeCombine !== 'function') process.exit(3);` +
        `import('tfjs-moe').then(e => process.exit(typeof e.batchedGemm === 'function' ? 0 : 4));`;
    expect(() => execFileSync(process.execPath, ['-e', script], {stdio: 'pipe'})).not.toThrow();
  });

  it('runs on the cpu backend in these specs', () => {
    expect(tf.getBackend()).toBe('cpu');
  });
});
