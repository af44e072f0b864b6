/**
 * CI compile check of the CUDA sources (no GPU needed): every .cu to PTX (sm_80; sm_90a for the wgmma GEMM) and
 * the C++ glue through g++ -fsyntax-only, via `node scripts/build-cuda.mjs --check`. Pending, with the reason,
 * without nvcc.
 */
import {execFileSync} from 'node:child_process';
import {existsSync} from 'node:fs';

function findNvcc(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v nvcc'], {encoding: 'utf8'}).trim() || null;
  } catch {
    return ['/usr/local/cuda/bin/nvcc'].find(p => existsSync(p)) ?? null;
  }
}

describe('CUDA sources', () => {
  it('compile (nvcc -ptx for sm_80 and sm_90a, g++ -fsyntax-only for the addon glue)', () => {
    if (findNvcc() == null && process.env.CUDA_HOME == null) pending('nvcc is not installed here: the compile check needs the CUDA toolkit');
    const out = execFileSync(process.execPath, ['scripts/build-cuda.mjs', '--check'], {encoding: 'utf8', stdio: 'pipe'});
    expect(out).toMatch(/CUDA and \d+ C\+\+ sources compile/);
  }, 600_000);

  it('build:cuda without nvcc fails with a clear message', () => {
    let message = '';
    try {
      execFileSync(process.execPath, ['scripts/build-cuda.mjs'],
                   {encoding: 'utf8', stdio: 'pipe', env: {...process.env, TFJS_MOE_NVCC: '/nonexistent/nvcc'}});
    } catch (e) {
      message = String((e as {stderr?: string}).stderr);
    }
    expect(message).toMatch(/build:cuda: nvcc was not found.*optional/s);
  });
});
