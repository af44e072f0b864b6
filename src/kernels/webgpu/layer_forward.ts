/**
 * The webgpu backend's whole-layer FusedMoE forward (the layer's kernel path tries it first): the decode programs
 * where they take the call (decode/: small T), else the op chain's programs replayed (prefill/), else null (the op
 * chain through tfjs). src/register_all.ts registers it once.
 */
import {registerKernelPathLayerForward} from '../../executor/layer_executor.js';
import {releaseDecodeState, webgpuDecodeForward} from './decode/decode_forward.js';
import {encodedForwardActive} from './encoded_forward.js';
import {releasePrefillState, webgpuPrefillForward} from './prefill/prefill_forward.js';

export function registerWebGPULayerForward(): void {
  registerKernelPathLayerForward('webgpu', {
    forward: (x, w, o, context, opChain) => !encodedForwardActive() ? null :
        webgpuDecodeForward(x, w, o, context.owner) ?? webgpuPrefillForward(x, w, o, context.owner, opChain),
    release: owner => {
      releaseDecodeState(owner);
      releasePrefillState(owner);
    },
  });
}
