/**
 * Peak host memory of loadHuggingFaceMoe loading one Qwen3-30B-A3B MoE layer (E 128, H 2048, I 768) from a bf16
 * safetensors file in the hub layout (router, experts.{e}.{gate,up,down}_proj.weight), per target expert format,
 * on the cpu backend, each target in its own process:
 *  - 'raw': readSafetensors(bytes, {keepDtype: true}) then loadHuggingFaceMoe(..., {expertWeightFormat}): the
 *    experts are converted one at a time into the layer's variables (bfloat16, int4 g32, mxfp4, float32);
 *  - 'decoded': readSafetensors(bytes) (every tensor expanded to float32) then loading into a float32 layer, the
 *    path without formats.
 * Numbers: VmHWM (peak RSS) minus the RSS once the file's bytes are resident, and tf.memory().numBytes after
 * the load (the layer alone). The synthetic file (1.21 GB) is written to /tmp once.
 * Usage: node build/bench/hf_load_memory.js [--experts 128] [--file /tmp/qwen3_moe_layer_bf16.safetensors]
 */
import {execFileSync} from 'node:child_process';
import {closeSync, existsSync, openSync, readFileSync, statSync, writeSync} from 'node:fs';
import {fileURLToPath} from 'node:url';

import * as tf from '@tensorflow/tfjs-core';
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import * as moe from 'tfjs-moe';

const H = 2048, I = 768;

function rssBytes(field: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find(l => l.startsWith(field))!;
  return Number(line.split(/\s+/)[1]) * 1024;
}

function config(experts: number) {
  return {model_type: 'qwen3_moe', hidden_size: H, num_experts: experts, num_experts_per_tok: 8,
    moe_intermediate_size: I, norm_topk_prob: true};
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
  for (let i = 0; i < count; i++) halves[i] = table[((i + seed * 7919) * 2654435761 >>> 20) & 4095];
  return new Uint8Array(halves.buffer);
}

/** Writes the layer's tensors as one bf16 safetensors file, tensor by tensor (never the whole file in memory). */
function writeLayerFile(path: string, experts: number): void {
  const tensors: Array<{name: string, shape: number[]}> = [{name: 'gate.weight', shape: [experts, H]}];
  for (let e = 0; e < experts; e++) {
    tensors.push({name: `experts.${e}.gate_proj.weight`, shape: [I, H]}, {name: `experts.${e}.up_proj.weight`, shape: [I, H]},
                 {name: `experts.${e}.down_proj.weight`, shape: [H, I]});
  }
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    const bytes = 2 * t.shape[0] * t.shape[1];
    header[t.name] = {dtype: 'BF16', shape: t.shape, data_offsets: [offset, offset + bytes]};
    offset += bytes;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += ' ';
  const fd = openSync(path, 'w');
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
  writeSync(fd, len);
  writeSync(fd, new TextEncoder().encode(json));
  tensors.forEach((t, i) => writeSync(fd, bf16Bytes(t.shape[0] * t.shape[1], i)));
  closeSync(fd);
}

async function child(mode: string, target: moe.ExpertWeightFormat, file: string, experts: number): Promise<void> {
  void version_cpu;
  await tf.setBackend('cpu');
  const buffer = readFileSync(file);
  const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
  const base = rssBytes('VmRSS');
  const started = performance.now();
  const weights = mode === 'raw' ? moe.readSafetensors(bytes, {keepDtype: true}) : moe.readSafetensors(bytes);
  const layer = moe.loadHuggingFaceMoe(config(experts), weights, {expertWeightFormat: target, name: 'qwen3_layer'});
  for (const w of Object.values(weights)) if (w instanceof tf.Tensor) w.dispose();
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({mode, target, experts, peakAboveFile: rssBytes('VmHWM') - base, fileBytes: bytes.length,
                              tfBytes: tf.memory().numBytes, seconds}));
  layer.dispose();
}

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => args.includes(name) ? args[args.indexOf(name) + 1] : fallback;
const experts = Number(arg('--experts', '128'));
const file = arg('--file', `/tmp/qwen3_moe_layer_bf16_e${experts}.safetensors`);
if (args[0] === '--child') {
  await child(args[1], args[2] as moe.ExpertWeightFormat, file, experts);
} else {
  if (!existsSync(file)) writeLayerFile(file, experts);
  const gb = (b: number) => (b / 1e9).toFixed(2);
  console.log(`file ${file}: ${gb(statSync(file).size)} GB; experts ${experts}, H ${H}, I ${I}`);
  console.log('| load | expert format | peak RSS above the file bytes (GB) | tf.memory() after (GB) | s |\n|---|---|---|---|---|');
  for (const [mode, target] of [['raw', 'bfloat16'], ['raw', 'int4'], ['raw', 'mxfp4'], ['raw', 'float32'],
    ['decoded', 'float32']]) {
    const line = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', mode, target,
      '--experts', String(experts), '--file', file], {encoding: 'utf8', maxBuffer: 1 << 20})
        .split('\n').find(l => l.startsWith('{'))!;
    const r = JSON.parse(line);
    const how = mode === 'raw' ? 'keepDtype, expert by expert' : 'decoded to float32 first';
    console.log(`| ${how} | ${target} | ${gb(r.peakAboveFile)} | ${gb(r.tfBytes)} | ${r.seconds.toFixed(1)} |`);
  }
}
