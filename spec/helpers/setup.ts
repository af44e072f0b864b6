// Loaded before every spec file: tfjs with its cpu backend active, the package registered.
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import 'tfjs-moe';

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});
