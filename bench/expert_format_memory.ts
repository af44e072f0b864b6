/**
 * Peak host memory of turning one Qwen3-30B-A3B MoE layer's experts, held as bf16 checkpoint bytes (what a
 * safetensors reader keeping the dtype returns: up_gate [E, 2I, H] and down [E, H, I], torch orientation), into
 * packed expert weights on the cpu backend, per target format:
 *  - bfloat16: fromPackedHalf (the words are the bytes: one copy);
 *  - int4 (g32) and mxfp4: createExpertWeightsBuilder, one expert decoded to float32 at a time;
 *  - float32: the whole tensor decoded to float32 (what loading without the formats does).
 * Each target runs in its own process; the numbers are VmHWM (peak RSS) minus the RSS once the checkpoint bytes
 * are resident, and tf.memory().numBytes after. The FusedMoE loader (loadHuggingFaceMoe) adds its own bookkeeping
 * on top of this conversion.
 * Usage: node build/bench/expert_format_memory.js [--experts 128]
 */
import {execFileSync} from 'node:child_process';
import {readFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';

import * as tf from '@tensorflow/tfjs-core';
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import * as moe from 'tfjs-moe';

const H = 2048, I = 768;

function rssBytes(field: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find(l => l.startsWith(field))!;
  return Number(line.split(/\s+/)[1]) * 1024;
}

/** bf16 bytes of normal-ish weights (a fixed table of patterns: filling 1.2 GB must not take minutes). */
function bf16Bytes(count: number, seed: number): Uint8Array {
  const table = new Uint16Array(4096);
  const bits = new Uint32Array(1), f = new Float32Array(bits.buffer);
  for (let i = 0; i < table.length; i++) {
    f[0] = Math.sin(i * 12.9898 + seed) * 0.05;
    table[i] = bits[0] >>> 16;
  }
  const halves = new Uint16Array(count);
  for (let i = 0; i < count; i++) halves[i] = table[(i * 2654435761 >>> 20) & 4095];
  return new Uint8Array(halves.buffer);
}

function bf16ToFloat(bytes: Uint8Array, start: number, count: number): Float32Array {
  const bits = new Uint32Array(count);
  for (let i = 0; i < count; i++) bits[i] = (bytes[2 * (start + i)] | bytes[2 * (start + i) + 1] << 8) << 16;
  return new Float32Array(bits.buffer);
}

async function child(target: string, experts: number): Promise<void> {
  void version_cpu;
  await tf.setBackend('cpu');
  const projections = [{shape: [experts, 2 * I, H]}, {shape: [experts, H, I]}];
  const raw = projections.map((p, i) => bf16Bytes(p.shape[0] * p.shape[1] * p.shape[2], i));
  const base = rssBytes('VmRSS');
  const started = performance.now();
  const out: tf.TensorContainer[] = [];
  for (const [i, p] of projections.entries()) {
    const [e, rows, cols] = p.shape;
    if (target === 'bfloat16') {
      out.push(moe.fromPackedHalf({dtype: 'BF16', shape: p.shape, data: raw[i], transposed: true}) as never);
    } else if (target === 'float32') {
      out.push(tf.tensor3d(bf16ToFloat(raw[i], 0, e * rows * cols), [e, rows, cols]));
    } else {
      const builder = moe.createExpertWeightsBuilder(p.shape, target as moe.ExpertWeightFormat, {transposed: true});
      for (let x = 0; x < e; x++) builder.setExpert(x, bf16ToFloat(raw[i], x * rows * cols, rows * cols));
      out.push(builder.build() as never);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({target, experts, peakAboveCheckpointBytes: rssBytes('VmHWM') - base,
                              tfBytes: tf.memory().numBytes, checkpointBytes: raw[0].length + raw[1].length, seconds}));
  tf.dispose(out);
}

const args = process.argv.slice(2);
const experts = args.includes('--experts') ? Number(args[args.indexOf('--experts') + 1]) : 128;
if (args[0] === '--child') {
  await child(args[1], experts);
} else {
  const gb = (b: number) => (b / 1e9).toFixed(2);
  console.log(`| target | peak RSS above the bf16 checkpoint bytes (GB) | tf.memory() after (GB) | s |\n|---|---|---|---|`);
  for (const target of ['bfloat16', 'int4', 'mxfp4', 'float32']) {
    const line = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', target,
                                                 '--experts', String(experts)], {encoding: 'utf8'})
        .split('\n').find(l => l.startsWith('{'))!;
    const r = JSON.parse(line);
    console.log(`| ${target} | ${gb(r.peakAboveCheckpointBytes)} | ${gb(r.tfBytes)} | ${r.seconds.toFixed(1)} |`);
  }
}
