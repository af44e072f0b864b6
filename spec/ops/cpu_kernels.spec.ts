// The op conformance suite on the cpu backend's kernels of ours.
import {describeOpConformance} from './op_conformance.js';

describeOpConformance('cpu', {backend: 'cpu', composite: false, scale: 'full'});
