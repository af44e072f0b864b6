/**
 * Where a FusedMoE's weights live. tfjs moves a tensor between backends on first use by a synchronous read of its
 * old backend, which webgpu cannot do in Node (it needs OffscreenCanvas): a layer that ran on webgpu used to fail
 * deep inside tfjs on its first cpu call. The layer checks this before any work (a clear error saying what to do),
 * and moveWeightsToBackend() copies the weights over with asynchronous reads, which every backend supports.
 */
import * as tf from '@tensorflow/tfjs-core';

interface EngineInternals {
  state: {tensorInfo: WeakMap<object, {backend: tf.KernelBackend}>};
  registry: Record<string, tf.KernelBackend>;
}

/** The name of the backend holding t's data (null when tfjs does not say). */
export function backendOf(t: tf.Tensor): string | null {
  const engine = tf.engine() as unknown as EngineInternals;
  const owner = engine.state.tensorInfo.get(t.dataId)?.backend;
  if (owner == null) return null;
  return Object.keys(engine.registry).find(name => engine.registry[name] === owner) ?? null;
}

/** Whether the active backend can take t's data synchronously (tfjs's own move). */
function movableSynchronously(t: tf.Tensor): boolean {
  const owner = backendOf(t);
  return owner == null || owner === tf.getBackend() || owner !== 'webgpu' || typeof OffscreenCanvas !== 'undefined';
}

/** Throws, naming the weight and what to do, when a weight cannot move to the active backend synchronously. */
export function checkWeightsReadable(layerName: string, weights: Record<string, tf.Tensor | undefined>): void {
  for (const [name, t] of Object.entries(weights)) checkWeightReadable(layerName, t, name);
}

/**
 * checkWeightsReadable for one weight (name, and `part` of a packed one: '<name>.<part>' in the error). A layer
 * checks every weight on every call: a tensor on the active backend passes without the registry lookup.
 */
export function checkWeightReadable(layerName: string, t: tf.Tensor | null | undefined, name: string, part?: string):
    void {
  if (t == null) return;
  const engine = tf.engine() as unknown as EngineInternals & {backend: tf.KernelBackend};
  if (engine.state.tensorInfo.get(t.dataId)?.backend === engine.backend || movableSynchronously(t)) return;
  const active = tf.getBackend();
  throw new Error(`FusedMoE '${layerName}': weight '${part == null ? name : `${name}.${part}`}' lives on the ` +
      `'${backendOf(t)}' backend, and tfjs cannot ` +
      `move it to '${active}' here (a synchronous webgpu read needs OffscreenCanvas, absent in Node). Call ` +
      `'await layer.moveWeightsToBackend()' after tf.setBackend('${active}') to copy the weights over ` +
      'asynchronously, then call the layer');
}

/**
 * Copies every variable whose data lives on another backend onto the active one, reading asynchronously (the
 * old copy is freed). Returns how many moved.
 */
export async function moveVariablesToActiveBackend(variables: Iterable<{read(): tf.Tensor, write(v: tf.Tensor): unknown}>):
    Promise<number> {
  const active = tf.getBackend();
  let moved = 0;
  for (const variable of variables) {
    const value = variable.read();
    const owner = backendOf(value);
    if (owner == null || owner === active) continue;
    const data = await value.data();
    const copy = tf.tensor(data, value.shape, value.dtype);
    variable.write(copy);
    copy.dispose();
    moved++;
  }
  return moved;
}
