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

/**
 * WebGPU validation errors fail the spec they happen in. tfjs does not check for them (the browser only logs a
 * warning), and the command buffer they belong to is dropped whole, so a spec could pass on stale or zero data,
 * and other work submitted with it silently vanishes. Seen e.g. for zero-size bindings and oversized bindings.
 */
interface DeviceLike {
  addEventListener(type: 'uncapturederror', listener: (e: {error: {message: string}}) => void): void;
  queue: {onSubmittedWorkDone(): Promise<void>};
}
const watched = new WeakSet<object>();
let gpuErrors: string[] = [];

function watchedDevice(): DeviceLike | null {
  const device = (tf.findBackend('webgpu') as unknown as {device?: DeviceLike} | null)?.device ?? null;
  if (device != null && !watched.has(device)) {
    watched.add(device);
    device.addEventListener('uncapturederror', e => gpuErrors.push(e.error.message.split('\n')[0]));
  }
  return device;
}

beforeEach(() => {
  watchedDevice();
  gpuErrors = [];
});

afterEach(async () => {
  const device = watchedDevice();
  // Errors arrive asynchronously from the GPU process: let the queue drain and the events be dispatched.
  if (device != null) await device.queue.onSubmittedWorkDone();
  await new Promise(resolve => setTimeout(resolve, 0));
  expect(gpuErrors).withContext('WebGPU validation errors during this spec').toEqual([]);
});
