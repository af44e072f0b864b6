/**
 * Finds and loads the optional CUDA addon (built by `npx tfjs-moe-build-cuda`, in a clone `npm run build:cuda`) and
 * reports whether CUDA can be used.
 *
 * Browser safety: this module imports nothing from Node. It reaches Node's `module.createRequire` only when
 * called, through `process.getBuiltinModule` (Node >= 20.16 / 22.3) found on `globalThis`, so bundlers see no
 * `require`, no `node:` import and no `import.meta`, and in a browser cudaStatus() simply says 'not-node'.
 *
 * Where the addon is looked for, in order: the file named by TFJS_MOE_CUDA_ADDON; build/Release/tfjs_moe_cuda.node
 * in the tfjs-moe package as resolved from the working directory; the same path under the working directory.
 */

/**
 * Why CUDA is unavailable, as a stable code (the reason text carries details): 'not-node' in a browser or other
 * non-Node runtime, 'node-too-old' on Node < 20.16 (no `process.getBuiltinModule` to reach the addon loader).
 */
export type CudaUnavailableCode =
    'not-node' | 'node-too-old' | 'addon-not-built' | 'addon-load-failed' | 'no-driver' | 'no-device' | 'cuda-error';

/** Whether the CUDA path can run here, and on what (see cudaStatus). */
export interface CudaStatus {
  available: boolean;
  /** Set when unavailable. */
  code?: CudaUnavailableCode;
  reason?: string;
  /** Device name, e.g. 'NVIDIA H100 80GB HBM3'. */
  device?: string;
  /** 'major.minor', e.g. '9.0'. */
  computeCapability?: string;
  memoryBytes?: number;
  multiprocessors?: number;
  /** Whether the sm_90a wgmma grouped GEMM can run: an sm_90 device and an addon built with sm_90a code. */
  wgmma?: boolean;
  /** CUDA runtime version the addon was built with, as cudaRuntimeGetVersion reports it (e.g. 12080 = 12.8). */
  runtimeVersion?: number;
  /** Newest CUDA version the installed driver supports, as cudaDriverGetVersion reports it (0: no driver). */
  driverVersion?: number;
  /** Path of the loaded addon (when it loaded). */
  addonPath?: string;
}

/** The addon's native surface (see src/kernels/cuda/addon.cc). Arrays are row-major, host memory. */
export interface CudaAddon {
  status(): CudaStatus;
  topkSelect(logits: Float32Array, T: number, E: number, bias: Float32Array | null, k: number, renormalize: boolean,
             nGroup: number, topkGroup: number, routedScalingFactor: number, renormalizeEpsilon: number,
             sparsemixer: boolean, sparsemixerEpsilon: number): {ids: Int32Array, weights: Float32Array};
  moeScores(logits: Float32Array, T: number, E: number, nGroup: number, topkGroup: number, k: number, rsf: number,
            bias: Float32Array | null, renormalize: boolean, renormalizeEpsilon: number):
      {scores: Float32Array, weights: Float32Array, ids: Int32Array};
  /**
   * weights [T*k]: row rowMap[i] holds x[i / k] * weights[i] (routingWeightOn 'input'); ids in [E, E + zeroExperts)
   * get no row (rowMap -1).
   */
  permute(x: Float32Array, T: number, D: number, ids: Int32Array, k: number, E: number, alignment: number,
          weights: Float32Array | null, zeroExperts: number):
      {permutedX: Float32Array, tokensPerExpert: Int32Array, expertOffsets: Int32Array, rowMap: Int32Array};
  batchedGemm(lhs: Float32Array, R: number, K: number, rhs: Float32Array, E: number, N: number, segments: Int32Array,
              segmentsAreOffsets: boolean, transposeRhs: boolean, bias: Float32Array | null): Float32Array;
  swiglu(x: Float32Array, R: number, I: number, scale: Float32Array | null, clamped: boolean, swigluAlpha: number,
         swigluLimit: number): Float32Array;
  /** identityInput [T*D]: the zero-computation experts' input (a slot with no row, rowMap -1, adds w * it[t]). */
  combine(y: Float32Array, R: number, D: number, rowMap: Int32Array, weights: Float32Array, ids: Int32Array, T: number,
          k: number, E: number, bias: Float32Array | null, weightsApplied: boolean,
          identityInput: Float32Array | null): Float32Array;
  layerCreate(config: Record<string, unknown>, weights: Record<string, unknown>): object;
  setTuning(tuning: {pdl: boolean, gemmTiles: string, fuse: string, int4Mma: boolean, wgmma?: string}): void;
  /** output: how y reaches the host (CudaHostOutput in cuda_fused_moe.ts). */
  /** out: for 'staged', a Float32Array of T * H that y is written into (returned as output), or null for a new one. */
  /** pooled: output is a pooled pinned array (out was null and it was large enough; addon_napi.h OutputPool). */
  layerForward(handle: object, x: Float32Array, T: number, useGraph: boolean, wantIds: boolean,
               output: 'staged' | 'pinned' | 'pageable', out: Float32Array | null):
      {output: Float32Array, pooled: boolean, topkIds?: Int32Array};
  /**
   * layerForward in two halves: the start enqueues the forward (x may be reused on return) and returns the arrays
   * unwritten; the finish waits and fills them (the caller leaves them alone in between). Absent in addons built
   * before them (the wrapper then calls layerForward).
   */
  layerForwardStart?(handle: object, x: Float32Array, T: number, useGraph: boolean, wantIds: boolean,
                     output: 'staged' | 'pinned' | 'pageable', out: Float32Array | null):
      {output: Float32Array, pooled: boolean, topkIds?: Int32Array};
  layerForwardFinish?(handle: object): void;
  layerForwardDevice(handle: object, x: object, useGraph: boolean, wantIds: boolean): {output: object, topkIds?: Int32Array};
  layerLastTimings(handle: object): {uploadHostMs: number, waitMs: number, copyOutMs: number, allocMs: number,
    launchMs: number, prefaultMs: number, prefaultWaitMs: number, registerMs: number, gpuUploadMs: number, gpuKernelMs: number,
    gpuDownloadMs: number};
  activationUpload(x: Float32Array, rows: number, cols: number): object;
  /** out: a Float32Array of rows * cols to download into (returned), or null for a new (pooled when large) one. */
  activationDownload(activation: object, out: Float32Array | null): Float32Array;
  activationDispose(activation: object): void;
  hostCopyBandwidth(bytes: number, iters: number):
      {pinnedH2D: number, pinnedD2H: number, pageableH2D: number, pageableD2H: number};
  layerBenchmark(handle: object, x: Float32Array, T: number, warmup: number, iters: number, useGraph: boolean):
      Float32Array;
  layerProfile(handle: object, x: Float32Array, T: number, iters: number): Record<string, number>;
  layerDispose(handle: object): void;
  layerResidentBytes(handle: object): number;
  /** The output pool's counters on this thread (benchmarks and specs). */
  outputPoolStats(): {allocated: number, reused: number, declined: number, heldBytes: number};
}

const ADDON_RELATIVE = 'build/Release/tfjs_moe_cuda.node';

interface NodeProcessLike {
  versions?: {node?: string};
  env?: Record<string, string | undefined>;
  cwd?: () => string;
  getBuiltinModule?: (id: string) => unknown;
}
type RequireLike = ((id: string) => unknown) & {resolve: (id: string) => string};

let loaded: {addon: CudaAddon | null, status: CudaStatus} | null = null;

function nodeProcess(): NodeProcessLike | null {
  const proc = (globalThis as {process?: NodeProcessLike}).process;
  return proc?.versions?.node ? proc : null;
}

/**
 * The build command that works where the user is: inside a clone of tfjs-moe its npm script; where tfjs-moe is an
 * installed dependency (under node_modules) the package's bin, which builds into node_modules/tfjs-moe.
 */
export function buildCommand(packageDir: string | null): string {
  return packageDir != null && /[\\/]node_modules[\\/]tfjs-moe[\\/]?$/.test(packageDir) ? 'npx tfjs-moe-build-cuda' :
      'npm run build:cuda';
}

function load(): {addon: CudaAddon | null, status: CudaStatus} {
  const proc = nodeProcess();
  if (proc == null) return {addon: null, status: {available: false, code: 'not-node', reason: 'CUDA needs Node.js'}};
  const moduleApi = proc.getBuiltinModule?.('module') as {createRequire?: (from: string) => RequireLike} | undefined;
  const fs = proc.getBuiltinModule?.('fs') as {existsSync?: (p: string) => boolean} | undefined;
  if (moduleApi?.createRequire == null || fs?.existsSync == null) {
    return {addon: null, status: {available: false, code: 'node-too-old',
      reason: `loading the CUDA addon needs Node >= 20.16 (process.getBuiltinModule); this is Node ${proc.versions?.node}`}};
  }
  const cwd = proc.cwd?.() ?? '.';
  const req = moduleApi.createRequire(`${cwd}/`);
  const candidates: string[] = [];
  let packageDir: string | null = null;
  try {
    packageDir = req.resolve('tfjs-moe/package.json').slice(0, -'package.json'.length);
  } catch {
    // tfjs-moe not resolvable from here: only the working-directory candidate remains
  }
  const explicit = proc.env?.TFJS_MOE_CUDA_ADDON;
  if (explicit) {
    candidates.push(explicit);
  } else {
    if (packageDir != null) candidates.push(`${packageDir}${ADDON_RELATIVE}`);
    candidates.push(`${cwd}/${ADDON_RELATIVE}`);
  }
  const looked = [...new Set(candidates)];
  const path = looked.find(p => fs.existsSync!(p));
  if (path == null) {
    return {addon: null, status: {available: false, code: 'addon-not-built',
      reason: `the CUDA addon is not built (run \`${buildCommand(packageDir)}\`); looked for ${looked.join(', ')}`}};
  }
  let addon: CudaAddon;
  try {
    addon = req(path) as CudaAddon;
  } catch (e) {
    return {addon: null, status: {available: false, code: 'addon-load-failed',
      reason: `the CUDA addon at ${path} failed to load: ${(e as Error).message}`}};
  }
  let status: CudaStatus;
  try {
    status = addon.status();
  } catch (e) {
    status = {available: false, code: 'cuda-error', reason: (e as Error).message};
  }
  return {addon: status.available ? addon : null, status: {...status, addonPath: path}};
}

/**
 * Whether the CUDA path can run here: {available, code?, reason?, device?, computeCapability?, memoryBytes?}.
 * The result is cached; `refresh` loads again (e.g. after building the addon in the same process).
 */
export function cudaStatus(options: {refresh?: boolean} = {}): CudaStatus {
  if (loaded == null || options.refresh) loaded = load();
  return {...loaded.status};
}

/** The loaded addon, or an Error saying why CUDA cannot be used. */
export function getCudaAddon(): CudaAddon {
  if (loaded == null) loaded = load();
  if (loaded.addon == null) throw new Error(`tfjs-moe CUDA is not available: ${loaded.status.reason}`);
  return loaded.addon;
}

let untransferable: ((buffer: ArrayBuffer) => void) | null | undefined;

/**
 * Node's worker_threads.markAsUntransferable where pooled output arrays are asked for (TFJS_MOE_CUDA_OUTPUT_POOL_MIB)
 * and safe, else null. The addon reuses a
 * pooled array's memory once the array is collected, so its memory must stay with that array: marking it
 * untransferable makes postMessage / structuredClone copy it instead of moving it. ArrayBuffer.prototype.transfer
 * (newer Node) would move it regardless, so where it exists no array is pooled.
 */
export function pooledOutputMarker(): ((buffer: ArrayBuffer) => void) | null {
  // Opt-in (read per call): TFJS_MOE_CUDA_OUTPUT_POOL_MIB > 0, the pool's size (addon_napi.h OutputPool says why).
  if (!(Number(nodeProcess()?.env?.TFJS_MOE_CUDA_OUTPUT_POOL_MIB ?? 0) > 0)) return null;
  if (untransferable === undefined) {
    const threads = nodeProcess()?.getBuiltinModule?.('worker_threads') as
        {markAsUntransferable?: (o: object) => void} | undefined;
    const transfer = (ArrayBuffer.prototype as {transfer?: unknown}).transfer;
    untransferable = threads?.markAsUntransferable != null && typeof transfer !== 'function' ?
        threads.markAsUntransferable : null;
  }
  return untransferable;
}
