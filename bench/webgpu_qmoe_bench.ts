/**
 * bench/webgpu_formats_bench.ts with ONNX Runtime's com.microsoft.QMoE side by side, in the same process (ort_qmoe.ts:
 * the same codes and scales behind a MatMul router), on onnxruntime-node's WebGPU EP (BENCH_ORT_EP=cpu for a check
 * on this machine's CPU EP); its output is compared with the same float64 reference as ours. BENCH_ORT=0: ours only.
 */
import {ortQMoeHooks} from './ort_qmoe.js';
import {runFormatsBench} from './webgpu_formats_bench.js';

const EP = process.env.BENCH_ORT_EP ?? 'webgpu';
const ORT_FORMATS = (process.env.BENCH_ORT_FORMATS ?? 'int4 g32,int8 g128,int4 g128').split(',');
const [H, I, E, K] = (process.env.BENCH_SHAPE ?? '2048,768,128,8').split(',').map(Number);

runFormatsBench(process.env.BENCH_ORT === '0' ? null : ortQMoeHooks({H, I, E, K}, EP, ORT_FORMATS)).then(
    () => process.exit(0), e => {
      console.error(e);
      process.exit(1);
    });
