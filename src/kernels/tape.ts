/** The engine's gradient state, asked one way everywhere (tfjs 4.22's Engine has no typed accessor for it). */
import * as tf from '@tensorflow/tfjs-core';

interface EngineGradientState {
  state: {activeTape: unknown[] | null};
}

/** A gradient tape records the ops called now (tf.grad / variableGrads / model.fit forward). */
export function tapeIsRecording(): boolean {
  return tf.engine().isTapeOn();
}

/**
 * A gradient computation is under way: its forward (tape recording) or its backward pass (the tape still exists
 * while tfjs walks it, though nothing records). Kernels keep no caches then: the variables change every step.
 */
export function gradientInProgress(): boolean {
  return tapeIsRecording() || (tf.engine() as unknown as EngineGradientState).state.activeTape != null;
}
