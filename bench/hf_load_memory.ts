/**
 * Peak host memory of loadHuggingFaceMoe loading one Qwen3-30B-A3B MoE layer (E 128, H 2048, I 768) from a bf16
 * checkpoint folder (config.json + model.safetensors in the hub layout: model.layers.0.mlp.gate.weight,
 * .experts.{e}.{gate,up,down}_proj.weight), per target expert format, on the cpu backend, each row in its own
 * process:
 *  - 'ckpt': readMoeLayerFromCheckpoint(dir, {layer: 0, keepDtype: true}) (tfjs-moe/node: reads the file's byte
 *    ranges, keeps BF16 as raw bytes) then loadHuggingFaceMoe(..., {expertWeightFormat}): bf16 into 'bfloat16'
 *    copies the 16-bit patterns, the other formats convert one expert at a time;
 *  - 'raw': the whole file in memory, readSafetensors(bytes, {keepDtype: true}), then the same load;
 *  - 'decoded' (with --decoded; minutes): readSafetensors(bytes) (every tensor expanded to float32) then a
 *    float32 layer, the path without formats.
 * Numbers: VmHWM (peak RSS) minus the RSS before reading (the process with tfjs loaded), the same minus the
 * checkpoint bytes (what the load holds beyond the file's data), tf.profile's peakBytes during the load and
 * tf.memory().numBytes after it (the layer alone), and the CPU seconds of the load after reading (user + system:
 * comparable across runs on a shared machine, unlike wall time). The synthetic folder (1.21 GB) is written to /tmp
 * once; --clean deletes it at the end.
 * Usage: node build/bench/hf_load_memory.js [--experts 128] [--dir /tmp/qwen3_moe_layer_bf16_e128] [--decoded]
 *        [--clean] [--targets ckpt:bfloat16,ckpt:int4,...]
 */
import {execFileSync} from 'node:child_process';
import {closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync} from 'node:fs';
import * as path from 'node:path';
import {fileURLToPath} from 'node:url';

import * as tf from '@tensorflow/tfjs-core';
import {version_cpu} from '@tensorflow/tfjs-backend-cpu';
import * as moe from 'tfjs-moe';
import {readMoeLayerFromCheckpoint} from 'tfjs-moe/node';

const PREFIX = 'model.layers.0.mlp.';

const H = 2048, I = 768;

function rssBytes(field: 'VmRSS' | 'VmHWM'): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find(l => l.startsWith(field))!;
  return Number(line.split(/\s+/)[1]) * 1024;
}

function config(experts: number) {
  return {model_type: 'qwen3_moe', hidden_size: H, num_experts: experts, num_experts_per_tok: Math.min(8, experts),
    moe_intermediate_size: I, norm_topk_prob: true, torch_dtype: 'bfloat16'};
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

/** Writes the layer's checkpoint folder: config.json and one bf16 model.safetensors, tensor by tensor. */
function writeLayerFolder(dir: string, experts: number): void {
  mkdirSync(dir, {recursive: true});
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config(experts)));
  const file = path.join(dir, 'model.safetensors');
  const tensors: Array<{name: string, shape: number[]}> = [{name: `${PREFIX}gate.weight`, shape: [experts, H]}];
  for (let e = 0; e < experts; e++) {
    const at = `${PREFIX}experts.${e}.`;
    tensors.push({name: `${at}gate_proj.weight`, shape: [I, H]}, {name: `${at}up_proj.weight`, shape: [I, H]},
                 {name: `${at}down_proj.weight`, shape: [H, I]});
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
  const fd = openSync(file, 'w');
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(json.length), true);
  writeSync(fd, len);
  writeSync(fd, new TextEncoder().encode(json));
  tensors.forEach((t, i) => writeSync(fd, bf16Bytes(t.shape[0] * t.shape[1], i)));
  closeSync(fd);
}

async function child(mode: string, target: moe.ExpertWeightFormat, dir: string, experts: number): Promise<void> {
  void version_cpu;
  await tf.setBackend('cpu');
  const file = path.join(dir, 'model.safetensors');
  const fileBytes = statSync(file).size;
  const base = rssBytes('VmRSS');
  const started = performance.now();
  let weights: Record<string, tf.Tensor | moe.RawSafetensor>;
  let prefix = PREFIX;
  if (mode === 'ckpt') {
    const ckpt = await readMoeLayerFromCheckpoint(dir, {layer: 0, keepDtype: true});
    weights = ckpt.weights;
    prefix = ckpt.prefix;
  } else {
    const buffer = readFileSync(file);
    const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
    weights = mode === 'raw' ? moe.readSafetensors(bytes, {keepDtype: true}) : moe.readSafetensors(bytes);
  }
  const readSeconds = (performance.now() - started) / 1000;
  const cpuStarted = process.cpuUsage();
  let layer: moe.FusedMoE | null = null;
  const profile = await tf.profile(() => {
    layer = moe.loadHuggingFaceMoe(config(experts), weights, {prefix, expertWeightFormat: target, name: 'qwen3_layer'});
  });
  for (const w of Object.values(weights)) if (w instanceof tf.Tensor) w.dispose();
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStarted);
  const loadCpuSeconds = (cpu.user + cpu.system) / 1e6;
  const peak = rssBytes('VmHWM') - base;
  console.log(JSON.stringify({mode, target, experts, peak, peakAboveFile: peak - fileBytes, fileBytes,
                              tfPeakBytes: profile.peakBytes, tfBytes: tf.memory().numBytes, readSeconds, seconds,
                              loadCpuSeconds}));
  layer!.dispose();
}

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => args.includes(name) ? args[args.indexOf(name) + 1] : fallback;
const experts = Number(arg('--experts', '128'));
const dir = arg('--dir', `/tmp/qwen3_moe_layer_bf16_e${experts}`);
if (args[0] === '--child') {
  await child(args[1], args[2] as moe.ExpertWeightFormat, dir, experts);
} else {
  if (!existsSync(path.join(dir, 'model.safetensors'))) writeLayerFolder(dir, experts);
  const gb = (b: number) => (b / 1e9).toFixed(2);
  console.log(`checkpoint ${dir}: ${gb(statSync(path.join(dir, 'model.safetensors')).size)} GB; experts ${experts}, ` +
              `H ${H}, I ${I}; node ${process.version}, cpu backend`);
  console.log('| read | expert format | peak RSS (GB) | peak RSS above the checkpoint bytes (GB) | tf peakBytes (GB) | ' +
              'tf.memory() after (GB) | read s | total s | load CPU s |\n|---|---|---|---|---|---|---|---|---|');
  const defaults = ['ckpt:bfloat16', 'ckpt:int4', 'ckpt:float32', 'ckpt:mxfp4', 'raw:bfloat16',
                    ...(args.includes('--decoded') ? ['decoded:float32'] : [])];
  const rows = arg('--targets', defaults.join(',')).split(',').map(t => t.split(':'));
  const how: Record<string, string> = {ckpt: 'readMoeLayerFromCheckpoint keepDtype', raw: 'readSafetensors keepDtype (file in memory)',
                                       decoded: 'readSafetensors to float32 (file in memory)'};
  for (const [mode, target] of rows) {
    const line = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', mode, target,
      '--experts', String(experts), '--dir', dir], {encoding: 'utf8', maxBuffer: 1 << 20, stdio: ['ignore', 'pipe', 'pipe']})
        .split('\n').find(l => l.startsWith('{'))!;
    const r = JSON.parse(line);
    console.log(`| ${how[mode]} | ${target} | ${gb(r.peak)} | ${gb(r.peakAboveFile)} | ${gb(r.tfPeakBytes)} | ` +
                `${gb(r.tfBytes)} | ${r.readSeconds.toFixed(1)} | ${r.seconds.toFixed(1)} | ${r.loadCpuSeconds.toFixed(1)} |`);
  }
  if (args.includes('--clean')) rmSync(dir, {recursive: true, force: true});
}
