#!/usr/bin/env node
// Builds the optional CUDA addon: `npm run build:cuda` in a clone, `npx tfjs-moe-build-cuda` where tfjs-moe is an
// installed dependency (this file is the package's bin) -> build/Release/tfjs_moe_cuda.node inside the package,
// where the loader looks first.
//   --out DIR          write DIR/tfjs_moe_cuda.node instead (e.g. when node_modules is read-only); point the
//                      loader at it with TFJS_MOE_CUDA_ADDON=DIR/tfjs_moe_cuda.node.
// Drives nvcc and g++ directly (no cmake-js/node-gyp, which would try to download Node headers), links the CUDA
// runtime statically, and embeds machine code for sm_80, sm_86, sm_89, sm_90 plus compute_90 PTX (the wgmma GEMM,
// gemm_sm90.cu: sm_90a machine code only).
//   --check            compile-only check for CI: every .cu to PTX for one architecture, the C++ glue with
//                      -fsyntax-only; writes nothing outside a temp folder.
//   TFJS_MOE_CUDA_ARCHS=90,80   restrict the architectures (a development shortcut; releases use the default).
//   TFJS_MOE_NVCC / CUDA_HOME / NODE_INCLUDE_DIR override where nvcc, the toolkit and node_api.h are found.
import {execFile, execFileSync} from 'node:child_process';
import {existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync} from 'node:fs';
import {cpus, tmpdir} from 'node:os';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import {promisify} from 'node:util';

const run = promisify(execFile);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'src/kernels/cuda');
const check = process.argv.includes('--check');
const outIndex = process.argv.indexOf('--out');
const outArg = outIndex >= 0 ? process.argv[outIndex + 1] : null;
if (outIndex >= 0 && (outArg == null || outArg.startsWith('--'))) {
  console.error('build:cuda: --out needs a folder');
  process.exit(1);
}

function fail(message) {
  console.error(`build:cuda: ${message}`);
  process.exit(1);
}

function findNvcc() {
  if (process.env.TFJS_MOE_NVCC) return existsSync(process.env.TFJS_MOE_NVCC) ? process.env.TFJS_MOE_NVCC : null;
  const candidates = [];
  if (process.env.CUDA_HOME) candidates.push(join(process.env.CUDA_HOME, 'bin/nvcc'));
  try {
    candidates.push(execFileSync('sh', ['-c', 'command -v nvcc'], {encoding: 'utf8'}).trim());
  } catch { /* not on PATH */ }
  candidates.push('/usr/local/cuda/bin/nvcc');
  return candidates.find(p => p && existsSync(p));
}

const nvcc = findNvcc();
if (!nvcc) {
  fail('nvcc was not found (set CUDA_HOME or put nvcc on PATH). The CUDA addon is optional: ' +
       'tfjs-moe and its test command run without it.');
}
// nvcc on PATH may be a wrapper script: take the toolkit from CUDA_HOME, nvcc's own folder, or /usr/local/cuda.
const cudaHome = [process.env.CUDA_HOME, resolve(dirname(execFileSync('readlink', ['-f', nvcc], {encoding: 'utf8'}).trim()), '..'),
  '/usr/local/cuda'].find(d => d && existsSync(join(d, 'include/cuda_runtime.h')));
if (!cudaHome) fail(`the CUDA toolkit headers were not found next to ${nvcc} (set CUDA_HOME).`);
const cudaInclude = join(cudaHome, 'include');
const cudaLib = ['lib64', 'lib', 'targets/x86_64-linux/lib'].map(d => join(cudaHome, d))
    .find(d => existsSync(join(d, 'libcudart_static.a')));
const nodeInclude = [process.env.NODE_INCLUDE_DIR, resolve(dirname(process.execPath), '../include/node'),
  '/usr/include/node', '/usr/local/include/node'].find(d => d && existsSync(join(d, 'node_api.h')));
if (!nodeInclude) fail('node_api.h was not found (set NODE_INCLUDE_DIR to the folder holding Node\'s headers).');
if (!check && !cudaLib) fail(`libcudart_static.a was not found under ${cudaHome}.`);

const archs = (process.env.TFJS_MOE_CUDA_ARCHS || '80,86,89,90').split(',').map(s => s.trim()).filter(Boolean);
const gencode = [...archs.flatMap(a => ['-gencode', `arch=compute_${a},code=sm_${a}`]),
  '-gencode', `arch=compute_${archs.includes('90') ? '90' : archs[archs.length - 1]},code=compute_${archs.includes('90') ? '90' : archs[archs.length - 1]}`];
// The wgmma GEMM (gemm_*sm90*.cu) uses sm_90a-only instructions: compiled for sm_90a alone (no PTX: sm_90a code runs
// on no other device), or, without 90 in the list, for the list as the others (its kernels are empty there).
const isSm90aFile = f => /sm90/.test(f);
const sm90aGencode = archs.includes('90') ? ['-gencode', 'arch=compute_90a,code=sm_90a'] : gencode;
const cuFiles = readdirSync(srcDir).filter(f => f.endsWith('.cu'));
const ccFiles = readdirSync(srcDir).filter(f => f.endsWith('.cc'));
const common = ['-std=c++17', '-O3', `-I${srcDir}`];
const cxx = ['-std=c++17', '-O2', '-fPIC', '-Wall', `-I${srcDir}`, `-I${cudaInclude}`, `-I${nodeInclude}`];

// Runs jobs with at most `width` in flight; rejects on the first failure with the compiler's output.
async function parallel(jobs, width) {
  const queue = [...jobs];
  const workers = Array.from({length: Math.min(width, queue.length)}, async () => {
    while (queue.length) {
      const [cmd, cmdArgs, label] = queue.shift();
      const t0 = Date.now();
      try {
        await run(cmd, cmdArgs, {maxBuffer: 64 << 20});
      } catch (e) {
        throw new Error(`${label} failed:\n${e.stderr || e.message}`);
      }
      console.log(`  ${label} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    }
  });
  await Promise.all(workers);
}

const width = Math.max(1, Math.min(cpus().length, Number(process.env.TFJS_MOE_CUDA_JOBS) || cpus().length));
const t0 = Date.now();
try {
  if (check) {
    const tmp = mkdtempSync(join(tmpdir(), 'tfjs-moe-cuda-check-'));
    try {
      await parallel([
        ...cuFiles.map(f => [nvcc, [...common, isSm90aFile(f) ? '-arch=sm_90a' : '-arch=sm_80', '-ptx', join(srcDir, f), '-o',
          join(tmp, `${f}.ptx`)], `nvcc -ptx ${f}`]),
        ...ccFiles.map(f => ['g++', [...cxx, '-fsyntax-only', join(srcDir, f)], `g++ -fsyntax-only ${f}`]),
      ], width);
    } finally {
      rmSync(tmp, {recursive: true, force: true});
    }
    console.log(`build:cuda --check: ${cuFiles.length} CUDA and ${ccFiles.length} C++ sources compile ` +
                `(${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } else {
    const outDir = outArg ? resolve(outArg) : join(root, 'build/Release');
    const objDir = outArg ? mkdtempSync(join(tmpdir(), 'tfjs-moe-cuda-obj-')) : join(root, 'build/cuda-obj');
    mkdirSync(objDir, {recursive: true});
    mkdirSync(outDir, {recursive: true});
    console.log(`build:cuda: nvcc ${nvcc}, archs ${archs.join(',')} (+PTX), node headers ${nodeInclude}, ${width} jobs`);
    await parallel([
      ...cuFiles.map(f => [nvcc, [...common, ...(isSm90aFile(f) ? sm90aGencode : gencode), '-Xcompiler', '-fPIC', '-c', join(srcDir, f), '-o',
        join(objDir, `${f}.o`)], `nvcc ${f}`]),
      ...ccFiles.map(f => ['g++', [...cxx, '-c', join(srcDir, f), '-o', join(objDir, `${f}.o`)], `g++ ${f}`]),
    ], width);
    const objects = [...cuFiles, ...ccFiles].map(f => join(objDir, `${f}.o`));
    const out = join(outDir, 'tfjs_moe_cuda.node');
    execFileSync('g++', ['-shared', '-o', out, ...objects, `-L${cudaLib}`, '-lcudart_static', '-ldl', '-lpthread', '-lrt',
      '-static-libstdc++', '-static-libgcc'], {stdio: 'inherit'});
    if (outArg) rmSync(objDir, {recursive: true, force: true});
    console.log(`build:cuda: wrote ${out} (${((Date.now() - t0) / 1000).toFixed(1)} s)` +
        (outArg ? `; use it with TFJS_MOE_CUDA_ADDON=${out}` : ''));
  }
} catch (e) {
  fail(e.message);
}
