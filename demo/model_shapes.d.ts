/** Routing options of a model shape (FusedMoE option names). */
export interface ModelRouting {
  topkMethod: 'greedy' | 'noaux_tc';
  renormalize: boolean;
  nGroup?: number;
  topkGroup?: number;
  routedScalingFactor?: number;
  useCorrectionBias?: boolean;
}

export interface ModelShape {
  /** The name the demos take (`--model`, `?model=`). */
  id: string;
  /** Other accepted names. */
  aliases: string[];
  label: string;
  detail: string;
  hidden: number;
  intermediate: number;
  numExperts: number;
  topK: number;
  /** Shared experts, each as wide as a routed one (0: none). */
  sharedExperts: number;
  routing: ModelRouting;
  /** Width divisor the demo page starts with (keeps the weights a few MB). */
  defaultDivisor: number;
}

export declare const MODEL_SHAPES: ModelShape[];
export declare function findModelShape(name: string): ModelShape | undefined;
export declare function scaledModel(shape: ModelShape, divisor: number): {hidden: number, args: {
  numExperts: number, topK: number, moeIntermediateSize: number, sharedExpertIntermediateSize: number} & ModelRouting};
