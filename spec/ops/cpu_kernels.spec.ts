// The op conformance suite on the cpu backend's kernels of ours: their WebAssembly SIMD path (both builds: relaxed
// SIMD, which scripts/run-specs.mjs enables in Node 20, and plain SIMD) and their JavaScript fallback.
import {describeOpConformance} from './op_conformance.js';

describeOpConformance('cpu wasm', {backend: 'cpu', composite: false, scale: 'full', wasm: true, simd: 'relaxed'});
describeOpConformance('cpu wasm plain', {backend: 'cpu', composite: false, scale: 'full', wasm: true, simd: 'plain'});
describeOpConformance('cpu js', {backend: 'cpu', composite: false, scale: 'full', wasm: false});
