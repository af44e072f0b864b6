// The op conformance suite on the cpu backend's kernels of ours: their WebAssembly SIMD path and their
// JavaScript fallback.
import {describeOpConformance} from './op_conformance.js';

describeOpConformance('cpu wasm', {backend: 'cpu', composite: false, scale: 'full', wasm: true});
describeOpConformance('cpu js', {backend: 'cpu', composite: false, scale: 'full', wasm: false});
