// The browser counterpart of spec/helpers/setup.ts: tfjs's cpu and webgpu backends and layers (from the page's
// import map, whose tfjs-core also registers chained ops as @tensorflow/tfjs does), the package's browser bundle,
// and 'cpu' active before every suite, as in Node.
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgpu';
import '@tensorflow/tfjs-layers';
import * as tf from '@tensorflow/tfjs-core';
import 'tfjs-moe';

beforeAll(async () => {
  await tf.setBackend('cpu');
  await tf.ready();
});
