/**
 * Every registration side effect of the package, in one place (src/index.ts imports this first): our kernels for
 * 'cpu', 'wasm' (tfjs-backend-wasm) and 'webgpu' (registering for 'webgpu' needs nothing from tfjs-backend-webgpu), their gradients, the tfjs
 * flags the kernels read, the cpu and webgpu whole-layer forwards (kernels/cpu/layer_forward.ts,
 * kernels/webgpu/layer_forward.ts: decode and prefill), and the optional CUDA layer executor
 * (browser-safe: it touches Node only when a layer asks for backend 'cuda').
 */
import {registerMoeGradients} from './gradients/register_all.js';
import {registerQuantizedCompositeFlags} from './kernels/composite/quantized_composite.js';
import {registerCpuLayerForward} from './kernels/cpu/layer_forward.js';
import {HOST_KERNEL_BACKENDS, registerHostKernels} from './kernels/cpu/register_all.js';
import {registerCudaLayerExecutor} from './kernels/cuda/cuda_layer_executor.js';
import {registerCudaFlags} from './kernels/cuda/flags_cuda.js';
import {registerWasmRuntime} from './kernels/wasm/runtime.js';
import {registerWebGPULayerForward} from './kernels/webgpu/layer_forward.js';
import {registerWebGPUKernels} from './kernels/webgpu/register_all.js';
import {registerOpFlags} from './ops/dispatch.js';

registerOpFlags();
registerQuantizedCompositeFlags();
registerWasmRuntime();
for (const backendName of HOST_KERNEL_BACKENDS) registerHostKernels(backendName);
registerCpuLayerForward();
registerWebGPUKernels();
registerWebGPULayerForward();
registerMoeGradients();
registerCudaFlags();
registerCudaLayerExecutor();
