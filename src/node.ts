/** tfjs-moe/node: Node-only helpers (file system access). The root entry 'tfjs-moe' stays browser-safe. */
export {readMoeLayerFromCheckpoint, readSafetensorsFile} from './io/node/checkpoint.js';
export type {MoeLayerCheckpoint, ReadMoeLayerOptions, ReadSafetensorsFileOptions} from './io/node/checkpoint.js';
export {initWebGPUForNode, SWIFTSHADER_ICD} from './node/webgpu.js';
export type {InitWebGPUForNodeOptions, WebGPUForNodeStatus} from './node/webgpu.js';
