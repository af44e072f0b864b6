import type {Tensor1D, Tensor2D} from '@tensorflow/tfjs-core';

import {moePermuteComposite} from '../kernels/composite/moe_permute_composite.js';
import {MoePermute, MoePermuteAttrs, permutedRowCount} from '../kernels/kernel_names.js';
import {runMoeKernel} from './dispatch.js';
import {checkDerivedSize, checkElementCount, MAX_EXPERTS} from './limits.js';
import {checkInt, checkShape, checkTensor} from './validate.js';

const OP = 'moePermute';

/**
 * Dispatch (docs/semantics.md section 3): rows grouped by ascending expert then token, each expert's segment
 * padded to a multiple of `alignment`. The row count R is static (T*k, plus E*(alignment-1) when aligned) so
 * no backend reads data back to size it; unused and padding rows are zero.
 */
export function moePermute(x: Tensor2D, topkIds: Tensor2D, numExperts: number, alignment = 1): {
  permutedX: Tensor2D, tokensPerExpert: Tensor1D, expertOffsets: Tensor1D, rowMap: Tensor2D
} {
  const $x = checkTensor(OP, 'x', x, 2, 'float32', '[T,D]') as Tensor2D;
  const ids = checkTensor(OP, 'topkIds', topkIds, 2, 'int32', '[T,k]') as Tensor2D;
  if (ids.shape[0] !== $x.shape[0]) checkShape(OP, 'topkIds', ids, [$x.shape[0], ids.shape[1]], '[T,k]');
  checkInt(OP, 'numExperts', numExperts, 1, MAX_EXPERTS);
  checkInt(OP, 'alignment', alignment, 1);
  // R bounds every offset, so one check covers expertOffsets as well.
  const numRows = checkDerivedSize(OP, 'the permuted row count R',
      permutedRowCount($x.shape[0], ids.shape[1], numExperts, alignment), undefined, 'T*k + E*(alignment-1)');
  checkElementCount(OP, 'permutedX', [numRows, $x.shape[1]]);

  const attrs: MoePermuteAttrs = {numExperts, alignment};
  const [permutedX, tokensPerExpert, expertOffsets, rowMap] = runMoeKernel(
      MoePermute, {x: $x, topkIds: ids}, attrs, () => moePermuteComposite($x, ids, attrs)) as Tensor2D[];
  return {
    permutedX,
    tokensPerExpert: tokensPerExpert as unknown as Tensor1D,
    expertOffsets: expertOffsets as unknown as Tensor1D,
    rowMap,
  };
}
