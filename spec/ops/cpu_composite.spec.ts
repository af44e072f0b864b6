// The op conformance suite on the composite path (plain tfjs ops), run on the cpu backend.
import {describeOpConformance} from './op_conformance.js';

describeOpConformance('cpu composite', {backend: 'cpu', composite: true, scale: 'full'});
