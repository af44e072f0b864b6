/**
 * WebGPU in Node: dawn.node (the `webgpu` package) behind the globals @tensorflow/tfjs-backend-webgpu expects
 * (`navigator.gpu`, the GPU* classes), then the tfjs 'webgpu' backend. One bootstrap for users, the demos, the
 * benchmarks and the specs.
 */
import * as tf from '@tensorflow/tfjs-core';

import {setDeviceAdapterInfo} from '../kernels/webgpu/half_matrices.js';

/** Where Debian's chromium package puts SwiftShader's Vulkan driver manifest (a CPU implementation of Vulkan). */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

/** Options of {@link initWebGPUForNode}. */
export interface InitWebGPUForNodeOptions {
  /**
   * Which adapters are acceptable: `'any'` (default: a hardware adapter when there is one, else a software one
   * such as SwiftShader), `'hardware'` (a software adapter counts as unavailable), `'software'` (ask dawn for
   * its fallback adapter).
   */
  adapter?: 'any' | 'hardware' | 'software';
  /**
   * Passed to `navigator.gpu.requestAdapter`. Default 'high-performance', so that a GPU is preferred to the
   * SwiftShader driver this function adds.
   */
  powerPreference?: 'low-power' | 'high-performance';
  /**
   * dawn.node instance options, passed to the `webgpu` package's `create()`: dawn toggles and flags such as
   * `'enable-dawn-features=allow_unsafe_apis'` or `'disable-dawn-features=timestamp_quantization'` (default none).
   */
  dawnOptions?: string[];
  /**
   * A Vulkan driver manifest (ICD JSON) to add to the system's drivers, so that dawn finds an adapter on a machine
   * without a GPU driver. Default: SwiftShader from Debian's chromium when that file exists; `null`: add none.
   * Added through `VK_ADD_DRIVER_FILES` (hardware drivers stay visible) unless `VK_ICD_FILENAMES` is already set.
   */
  vulkanDriver?: string | null;
  /** Make 'webgpu' the active tfjs backend on success (default true); false restores the backend active before. */
  setBackend?: boolean;
  /**
   * Optional device features the tfjs device is created with when the adapter has them (tfjs itself asks only for
   * timestamp-query), e.g. `['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']` for the
   * MOE_WEBGPU_GEMM_HALF_MATRICES path (on NVIDIA with dawnOptions
   * `'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'`). Default `['subgroups']` (the decode
   * path's routing reduces with subgroup shuffles where the device has them; tfjs's own programs ignore it). With those three the
   * tiled expert GEMMs run on subgroup matrices by default: f16 products, not exact (docs/semantics.md section
   * 10); set that flag false to keep the exact float32 tiles.
   */
  features?: string[];
}

/** What {@link initWebGPUForNode} found. */
export interface WebGPUForNodeStatus {
  /** The tfjs 'webgpu' backend is registered and initialised (and active, unless `setBackend: false`). */
  available: boolean;
  /** Why not, when unavailable. */
  reason?: string;
  /** The adapter's vendor, architecture and description, when one was found. */
  adapterName?: string;
  /** Whether that adapter is a software implementation (SwiftShader, llvmpipe, dawn's fallback adapter). */
  software?: boolean;
  /** The adapter's `info` fields. */
  adapterInfo?: {vendor?: string, architecture?: string, device?: string, description?: string};
  /** The adapter's optional features (e.g. 'timestamp-query', 'shader-f16'). */
  features?: string[];
  /** The adapter's limits that matter for MoE weights: maxStorageBufferBindingSize, maxBufferSize. */
  limits?: {maxStorageBufferBindingSize?: number, maxBufferSize?: number};
}

interface GpuLike {
  requestAdapter(options?: object): Promise<AdapterLike | null>;
}
interface AdapterLike {
  info?: {vendor?: string, architecture?: string, description?: string, device?: string, subgroupMinSize?: number,
    subgroupMaxSize?: number, subgroupMatrixConfigs?: Iterable<Record<string, unknown>>};
  isFallbackAdapter?: boolean;
  features?: Iterable<string> & {has?(name: string): boolean};
  requestDevice?(descriptor?: {requiredFeatures?: Iterable<string>}): Promise<unknown>;
  limits?: {maxStorageBufferBindingSize?: number, maxBufferSize?: number};
}

/** The optional features the tfjs device asks for when initWebGPUForNode's `features` is absent (where the adapter has them). */
const DEFAULT_DEVICE_FEATURES = ['subgroups'];

let pending: Promise<WebGPUForNodeStatus> | null = null;

/**
 * Makes WebGPU usable by tfjs in Node: loads dawn.node (`npm install webgpu`), installs its globals and
 * `navigator.gpu`, checks that an acceptable adapter exists, then imports @tensorflow/tfjs-backend-webgpu and
 * initialises its backend. Never throws for a missing piece: the result says what is missing. The first call
 * does the work (its `dawnOptions`, `vulkanDriver` and adapter request apply); later calls reuse that adapter
 * (dawn's globals are installed once) and apply only their own `adapter: 'hardware'` and `setBackend`.
 *
 * Read results of webgpu tensors with `await t.data()`: a synchronous `dataSync()` is not supported there.
 *
 * @example
 * const status = await initWebGPUForNode();
 * if (!status.available) console.log(`no WebGPU: ${status.reason}`);
 */
export async function initWebGPUForNode(options: InitWebGPUForNodeOptions = {}): Promise<WebGPUForNodeStatus> {
  pending ??= init(options);
  const status = await pending;
  if (status.available && status.software && options.adapter === 'hardware') {
    return {...status, available: false, reason: `only a software adapter (${status.adapterName})`};
  }
  if (status.available && options.setBackend !== false) await tf.setBackend('webgpu');
  return status;
}

async function init(options: InitWebGPUForNodeOptions): Promise<WebGPUForNodeStatus> {
  const proc = (globalThis as {process?: {env: Record<string, string | undefined>}}).process;
  if (proc?.env == null) return {available: false, reason: 'initWebGPUForNode needs Node.js'};
  const fs = (globalThis as {process?: {getBuiltinModule?: (id: string) => unknown}}).process?.getBuiltinModule?.('fs') as
      {existsSync(p: string): boolean} | undefined;
  const driver = options.vulkanDriver === undefined ? SWIFTSHADER_ICD : options.vulkanDriver;
  // The Vulkan loader reads these when dawn creates its instance, so they must be set before create().
  if (driver != null && proc.env.VK_ICD_FILENAMES == null && (fs?.existsSync(driver) ?? true)) {
    const added = proc.env.VK_ADD_DRIVER_FILES;
    if (!added?.split(':').includes(driver)) proc.env.VK_ADD_DRIVER_FILES = added ? `${added}:${driver}` : driver;
  }
  let gpu: GpuLike;
  try {
    const {create, globals} = await import('webgpu') as unknown as
        {create(options: string[]): GpuLike, globals: Record<string, unknown>};
    Object.assign(globalThis, globals);
    gpu = withDeviceFeatures(create(options.dawnOptions ?? []), options.features ?? DEFAULT_DEVICE_FEATURES);
    // tfjs-backend-webgpu reads navigator.gpu; Node 20 has no navigator, newer Nodes a getter without gpu.
    Object.defineProperty(globalThis, 'navigator', {value: {gpu}, configurable: true, writable: true});
  } catch (e) {
    return {available: false, reason: `the webgpu package (dawn.node) did not load: ${(e as Error).message} ` +
        '(npm install webgpu)'};
  }
  const choice = options.adapter ?? 'any';
  const adapter = await gpu.requestAdapter({powerPreference: options.powerPreference ?? 'high-performance',
    forceFallbackAdapter: choice === 'software'});
  if (adapter == null) {
    return {available: false, reason: 'no WebGPU adapter: no Vulkan driver found (without a GPU, install ' +
        `Debian's chromium for SwiftShader at ${SWIFTSHADER_ICD} and libvulkan1, or set VK_ICD_FILENAMES)`};
  }
  const info = adapter.info ?? {};
  const adapterName = [info.vendor, info.architecture, info.description || info.device].filter(Boolean).join(' ') ||
      'unknown adapter';
  const software = adapter.isFallbackAdapter === true || /swiftshader|llvmpipe|lavapipe/i.test(adapterName);
  const found = {adapterName, software, adapterInfo: {vendor: info.vendor, architecture: info.architecture,
    device: info.device, description: info.description}, features: [...(adapter.features ?? [])],
  limits: {maxStorageBufferBindingSize: adapter.limits?.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits?.maxBufferSize}};
  try {
    await import('@tensorflow/tfjs-backend-webgpu');
  } catch (e) {
    return {available: false, reason: `@tensorflow/tfjs-backend-webgpu did not load: ${(e as Error).message} ` +
        '(npm install @tensorflow/tfjs-backend-webgpu)', ...found};
  }
  let previous: string | null = null;
  try {
    previous = tf.getBackend() ?? null;
  } catch {
    // no backend registered besides webgpu
  }
  if (!(await tf.setBackend('webgpu'))) {
    return {available: false, reason: `tfjs could not initialise its webgpu backend on ${adapterName}`, ...found};
  }
  if (previous != null) await tf.setBackend(previous);
  return {available: true, ...found};
}

/**
 * navigator.gpu whose adapters create devices with `extra` features too (those the adapter has): tfjs creates
 * its device itself from navigator.gpu, so this is where optional features can join its request.
 */
function withDeviceFeatures(gpu: GpuLike, extra: string[]): GpuLike {
  if (extra.length === 0) return gpu;
  const adapterWith = (adapter: AdapterLike): AdapterLike => new Proxy(adapter, {
    get(target, key) {
      if (key === 'requestDevice') {
        return async (d: {requiredFeatures?: Iterable<string>} = {}) => {
          const device = await target.requestDevice!({...d, requiredFeatures: [
            ...(d.requiredFeatures ?? []), ...extra.filter(f => target.features?.has?.(f) === true)]});
          if (device != null && target.info != null) setDeviceAdapterInfo(device as object, target.info);
          return device;
        };
      }
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return new Proxy(gpu, {
    get(target, key) {
      if (key === 'requestAdapter') {
        return async (o?: object) => {
          const adapter = await target.requestAdapter(o);
          return adapter == null ? adapter : adapterWith(adapter);
        };
      }
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
