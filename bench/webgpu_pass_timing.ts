/** GPU time of one compute pass (timestamp queries; the device needs 'timestamp-query'), for the WebGPU benches. */

/* eslint-disable @typescript-eslint/no-explicit-any */
/**
 * Milliseconds between the start and end timestamps of a pass holding n dispatches of `workgroups` workgroups of
 * pipe (with bind group 0 = group when given): submitted and read back on its own.
 */
export async function timePassMs(device: any, pipe: any, group: any, n: number, workgroups = 1): Promise<number> {
  const qs = device.createQuerySet({type: 'timestamp', count: 2});
  const resolve = device.createBuffer({size: 16, usage: 0x200 | 0x04});
  const read = device.createBuffer({size: 16, usage: 0x01 | 0x08});
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass({timestampWrites: {querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1}});
  pass.setPipeline(pipe);
  if (group != null) pass.setBindGroup(0, group);
  for (let i = 0; i < n; i++) pass.dispatchWorkgroups(workgroups);
  pass.end();
  enc.resolveQuerySet(qs, 0, 2, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(0x01);
  const stamps = new BigUint64Array(read.getMappedRange().slice(0));
  read.unmap();
  [resolve, read].forEach(b => b.destroy());
  qs.destroy();
  return Number(stamps[1] - stamps[0]) / 1e6;
}
