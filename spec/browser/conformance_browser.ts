// The op and layer conformance suites, instantiated for the browser. The full-scale cpu instances run in Node;
// here the small scale proves the browser bundle's kernels and paths on both backends.
import {describeLayerConformance} from '../layers/layer_conformance.js';
import {describeOpConformance} from '../ops/op_conformance.js';

describeOpConformance('browser webgpu', {backend: 'webgpu', composite: false, scale: 'small'});
describeOpConformance('browser webgpu composite', {backend: 'webgpu', composite: true, scale: 'small'});
// Chromium runs relaxed SIMD by default: both wasm builds run here.
describeOpConformance('browser cpu wasm', {backend: 'cpu', composite: false, scale: 'small', wasm: true, simd: 'relaxed'});
describeOpConformance('browser cpu wasm plain', {backend: 'cpu', composite: false, scale: 'small', wasm: true, simd: 'plain'});
describeOpConformance('browser cpu js', {backend: 'cpu', composite: false, scale: 'small', wasm: false});

describeLayerConformance('browser webgpu kernels', {backend: 'webgpu', layerBackend: 'webgpu', small: true});
describeLayerConformance('browser webgpu composite', {backend: 'webgpu', layerBackend: 'composite', small: true});
describeLayerConformance('browser cpu kernels', {backend: 'cpu', layerBackend: 'cpu', small: true});
