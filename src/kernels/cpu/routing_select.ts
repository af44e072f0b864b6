/**
 * The selection rule every router shares (docs/semantics.md sections 1-2): the k largest keys in descending order,
 * ties to the lower index, NaN never wins: it ranks below everything, -Infinity included (so the -Infinity of an
 * expert in a dropped group still beats a NaN in a kept one), and a row of NaN yields indices 0..k-1.
 */

/**
 * Writes into outIds[outOffset .. outOffset+k) the indices (relative to `begin`) of the k largest of
 * keys[begin .. begin+count). `taken` is scratch of length >= count. With `eligible`, only indices i with
 * eligible[i] != 0 compete (getMoeScores' kept groups: a NaN there still beats any expert of a dropped group).
 *
 * k passes of an arg-max are O(k*count); k <= 8 and count <= 256 in every MoE router, where this beats a
 * sort and is trivially stable.
 */
export function selectTopK(
    keys: ArrayLike<number>, begin: number, count: number, k: number, outIds: Int32Array, outOffset: number,
    taken: Uint8Array, eligible: Uint8Array | null = null): void {
  if (eligible == null) taken.fill(0, 0, count);
  else for (let i = 0; i < count; i++) taken[i] = eligible[i] !== 0 ? 0 : 1;
  for (let slot = 0; slot < k; slot++) {
    let best = -1;
    let bestKey = NaN;
    for (let i = 0; i < count; i++) {
      if (taken[i] !== 0) continue;
      const key = keys[begin + i];
      // Strict '>' while scanning upwards keeps the lower index on ties; a NaN best loses to any number.
      if (best < 0 || key > bestKey || (bestKey !== bestKey && key === key)) {
        best = i;
        bestKey = key;
      }
    }
    taken[best] = 1;
    outIds[outOffset + slot] = best;
  }
}
