/**
 * Backend kernels may keep device-side copies derived from persistent weights (webgpu: expert-range copies of
 * weights past the binding limit). Each registers how to free the copies whose source weight is gone; a layer that
 * disposes its weights runs them all (through ops/weight_caches.ts), so nothing outlives the layer.
 */
const sweepers = new Set<() => void>();

export function registerWeightCacheSweeper(sweep: () => void): void {
  sweepers.add(sweep);
}

export function sweepWeightCaches(): void {
  for (const sweep of sweepers) sweep();
}
