// On the GPU machine: the addon is found, loads, and reports the device.
import {cudaStatus} from 'tfjs-moe';

describe('cudaStatus on the GPU machine', () => {
  it('is available and describes the device', () => {
    const s = cudaStatus();
    console.log(`\ncudaStatus: ${JSON.stringify(s)}`);
    expect(s.available).withContext(String(s.reason)).toBeTrue();
    expect(s.device).toMatch(/\S/);
    expect(s.computeCapability).toMatch(/^\d+\.\d+$/);
    expect(s.memoryBytes).toBeGreaterThan(1e9);
  });
});
