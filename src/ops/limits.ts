/**
 * Size limits shared by the ops, the layer and the readers, and (re-exported) the one way messages show a value. Every kernel
 * indexes with int32 (WGSL i32, CUDA int, tfjs's own Int32Array shapes), so a size or a value derived from the
 * sizes (a row count R, an offset, an element count) above MAX_INT32 would wrap: each op checks its derived sizes
 * here before anything is allocated.
 */
export const MAX_INT32 = 2 ** 31 - 1;

/**
 * The most experts an op or a layer accepts. Routers keep per-expert state in registers/shared memory per token
 * (webgpu: one workgroup per row, CUDA: one block per row) and scratch of E per row on the cpu; today's largest
 * MoE models use a few hundred experts, so 65536 leaves room without letting E = 2^31 reach an allocation.
 */
export const MAX_EXPERTS = 65536;

export {describeValue} from '../kernels/describe_value.js';

/** Throws when a size derived from the arguments (named `what`, computed as `formula`) exceeds `max`. */
export function checkDerivedSize(op: string, what: string, value: number, max = MAX_INT32, formula = ''): number {
  if (!(value <= max)) {
    throw new Error(`${op}: ${what}${formula === '' ? '' : ` (${formula})`} would be ${value}, above the maximum ${max}` +
        (max === MAX_INT32 ? ' (int32 indexing)' : ''));
  }
  return value;
}

/** The element count of a shape, checked against int32 (the counts are exact doubles up to 2^53). */
export function checkElementCount(op: string, what: string, shape: readonly number[]): number {
  const count = shape.reduce((a, b) => a * b, 1);
  return checkDerivedSize(op, `the element count of ${what} [${shape.join(',')}]`, count);
}

/** An expert count E (given, or a tensor's dimension named `arg`) within MAX_EXPERTS. */
export function checkExpertCount(op: string, arg: string, numExperts: number): number {
  if (numExperts > MAX_EXPERTS) {
    throw new Error(`${op}: argument '${arg}' must have an expert count E <= ${MAX_EXPERTS}, got E = ${numExperts}`);
  }
  return numExperts;
}
