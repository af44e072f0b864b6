/** Finds out whether this page can run WebGPU, and on what, before anything is offered to the user. */
import * as tf from '@tensorflow/tfjs-core';

export interface WebGPUProbe {
  available: boolean;
  /** Why not, in words a user can act on. */
  reason?: string;
  adapter?: string;
  /** A software rasterizer (SwiftShader, lavapipe, WARP): WebGPU runs on the CPU, timings are not a GPU's. */
  software?: boolean;
  maxStorageBufferBindingSize?: number;
}

interface AdapterLike {
  info?: {vendor?: string, architecture?: string, device?: string, description?: string};
  limits: {maxStorageBufferBindingSize: number};
}

export async function probeWebGPU(): Promise<WebGPUProbe> {
  const gpu = (navigator as Navigator & {gpu?: {requestAdapter(): Promise<AdapterLike | null>}}).gpu;
  if (gpu == null) {
    return {available: false, reason: window.isSecureContext ?
        'this browser has no WebGPU (navigator.gpu is missing; Chrome/Edge 113+ have it, Chromium on Linux needs ' +
        '--enable-unsafe-webgpu)' :
        'WebGPU needs a secure context: open the page over https or from localhost'};
  }
  let adapter: AdapterLike | null = null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (e) {
    return {available: false, reason: `requesting a WebGPU adapter failed: ${(e as Error).message}`};
  }
  if (adapter == null) return {available: false, reason: 'WebGPU found no usable GPU adapter (blocklisted or absent)'};
  const info = adapter.info ?? {};
  const name = [info.vendor, info.architecture, info.device, info.description].filter(s => s != null && s !== '')
      .join(' · ') || 'unnamed adapter';
  if (tf.findBackendFactory('webgpu') == null || !(await tf.setBackend('webgpu').catch(() => false))) {
    return {available: false, adapter: name, reason: 'tfjs could not start its webgpu backend on this adapter'};
  }
  return {available: true, adapter: name, software: /swiftshader|llvmpipe|lavapipe|warp|software/i.test(name),
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize};
}
