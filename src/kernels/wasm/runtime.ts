/**
 * The WebAssembly SIMD runtime behind the cpu kernels: loads the modules shipped in moe_kernels_wasm.ts (detecting
 * SIMD and relaxed SIMD by validating them, not by guessing from the platform), owns their linear memory, and
 * hands the kernels a synchronous `run` that spreads one call over the thread pool where there is one.
 *
 * Two SIMD levels of the same source: 'plain' (128-bit SIMD) and 'relaxed' (its tiles' multiply-adds as
 * f32x4.relaxed_madd, a fused multiply-add where the CPU has one: on by default in Chromium and Node 22+, behind
 * --experimental-wasm-relaxed-simd in Node 20). Both are instantiated on one memory (they pack weights alike, so
 * one weight cache serves both) and a call runs the level the flag picks.
 *
 * Flags (tf.env()):
 *   MOE_WASM (bool, default true): false forces the JavaScript kernels.
 *   MOE_WASM_THREADS (number, default: the machine's cores, at most 8): threads per kernel call. Threads run
 *     only in Node (worker_threads, shared memory, the calling thread waiting with Atomics.wait); a browser page
 *     runs single-threaded (its main thread may not block).
 *   MOE_WASM_CACHE_MB (number, default 3072): bytes of packed expert weights kept in wasm memory (weight_cache.ts).
 *   MOE_WASM_RELAXED_SIMD (bool, default true): run the relaxed-SIMD build where the engine accepts it; false runs
 *     the plain one (results then round every product, as the JavaScript kernels do: docs/semantics.md).
 */
import * as tf from '@tensorflow/tfjs-core';

import {plainSharedMemoryFlagOffset, plainThreadsWasmBase64, relaxedSharedMemoryFlagOffset, relaxedThreadsWasmBase64}
    from './moe_kernels_wasm.js';
import {registerWeightCacheSweeper} from '../weight_caches.js';
import {startThreadPool, ThreadPool} from './thread_pool.js';
import {sweepWasmWeightCache} from './weight_cache.js';

/**
 * Registers the flags above (src/register_all.ts calls it at import, before anyone can set them) and the packed
 * weights' sweeper (kernels/weight_caches.ts).
 */
export function registerWasmRuntime(): void {
  registerWeightCacheSweeper(sweepWasmWeightCache);
  tf.env().registerFlag('MOE_WASM', () => true);
  tf.env().registerFlag('MOE_WASM_THREADS', () => defaultThreads());
  tf.env().registerFlag('MOE_WASM_CACHE_MB', () => 3072);
  tf.env().registerFlag('MOE_WASM_RELAXED_SIMD', () => true);
}

const PAGE = 65536;
const MAX_PAGES = 65536;  // 4 GiB, the wasm32 limit (the modules are linked with this maximum)
const ALIGN = 64;

/** The kernels' exports; pointers are byte offsets into the module's memory. */
export interface MoeWasmExports {
  packed_expert_bytes(format: number, k: number, n: number, group: number, halves: number): number;
  scratch_floats_per_thread(k: number): number;
  pack_expert(src: number, dst: number, k: number, n: number, transposed: number, halves: number): void;
  pack_expert_quantized(words: number, scales: number, dst: number, format: number, k: number, n: number,
                        group: number, transposed: number, halves: number): void;
  moe_gemm(lhs: number, k: number, out: number, n: number, offsets: number, numExperts: number, weights: number,
           bias: number, format: number, group: number, scratch: number, work: number, thread: number,
           threads: number): void;
  moe_gemm_swiglu(lhs: number, k: number, out: number, intermediate: number, offsets: number, numExperts: number,
                  weights: number, bias: number, format: number, group: number, scale: number, scratch: number,
                  work: number, thread: number, threads: number): void;
  moe_combine(y: number, hidden: number, rowMap: number, weights: number, tokens: number, topK: number,
              weightsApplied: number, out: number): void;
}

/** Which build of the wasm kernels runs: plain 128-bit SIMD, or relaxed SIMD (FMA in the GEMM tiles). */
export type SimdLevel = 'plain' | 'relaxed';
/** The module builds, in the order the thread pool's workers hold them. */
export const SIMD_LEVELS: readonly SimdLevel[] = ['plain', 'relaxed'];

/** Entry points a pool thread can run: every one takes (..., thread, threads) last. */
export type ThreadedEntry = 'moe_gemm' | 'moe_gemm_swiglu';

/** Whether the WebAssembly SIMD kernels run here, and why not. */
export interface WasmStatus {
  available: boolean;
  /** Why the JavaScript kernels run instead (when not available). */
  reason?: string;
  variant?: 'single' | 'threads';
  /** The SIMD level the next call runs ('relaxed' only where the engine accepts it and the flag allows it). */
  simd?: SimdLevel;
  /** Whether this engine accepts the relaxed-SIMD build. */
  relaxedSimd?: boolean;
  /** Threads a kernel call may use now (MOE_WASM_THREADS as far as the platform allows). */
  threads?: number;
  /** Threads the last kernel call ran on (small calls run on one). */
  lastCallThreads?: number;
}

interface NodeProcessLike {
  versions?: {node?: string};
  getBuiltinModule?: (id: string) => unknown;
}

function nodeProcess(): NodeProcessLike | null {
  const proc = (globalThis as {process?: NodeProcessLike}).process;
  return proc?.versions?.node ? proc : null;
}

function defaultThreads(): number {
  const os = nodeProcess()?.getBuiltinModule?.('os') as {availableParallelism?: () => number} | undefined;
  const nav = (globalThis as {navigator?: {hardwareConcurrency?: number}}).navigator;
  const cores = os?.availableParallelism?.() ?? nav?.hardwareConcurrency ?? 1;
  return Math.max(1, Math.min(8, cores));
}

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** A free block of memory [offset, offset + size). */
interface Block {
  offset: number;
  size: number;
}

export class WasmRuntime {
  private readonly instances: Partial<Record<SimdLevel, MoeWasmExports>> = {};
  private readonly free: Block[] = [];
  private top: number;
  private pool: ThreadPool | null = null;
  private poolFailed: string | null = null;
  private lastCallThreads = 0;

  /** modules: the plain build, and the relaxed one when this engine accepts it. */
  constructor(readonly modules: Partial<Record<SimdLevel, WebAssembly.Module>>, readonly memory: WebAssembly.Memory,
              readonly variant: 'single' | 'threads') {
    let heapBase = 0;
    for (const level of SIMD_LEVELS) {
      const module = modules[level];
      if (module == null) continue;
      const instance = new WebAssembly.Instance(module, {env: {memory}});
      this.instances[level] = instance.exports as unknown as MoeWasmExports;
      heapBase = Math.max(heapBase, (instance.exports.__heap_base as WebAssembly.Global).value as number);
    }
    this.top = Math.ceil(heapBase / ALIGN) * ALIGN;
  }

  /** The SIMD level a call runs now: relaxed where accepted, unless the flag says otherwise. */
  simd(): SimdLevel {
    return this.instances.relaxed != null && tf.env().getBool('MOE_WASM_RELAXED_SIMD') ? 'relaxed' : 'plain';
  }

  /** The exports of the level a call runs now (packing and sizes are the same in both). */
  get exports(): MoeWasmExports {
    return this.instances[this.simd()]!;
  }

  get buffer(): ArrayBuffer {
    return this.memory.buffer as ArrayBuffer;
  }

  f32(offset: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, length);
  }

  i32(offset: number, length: number): Int32Array {
    return new Int32Array(this.memory.buffer, offset, length);
  }

  u32(offset: number, length: number): Uint32Array {
    return new Uint32Array(this.memory.buffer, offset, length);
  }

  /**
   * `bytes` of memory (aligned), or null when the memory cannot grow that far (4 GiB limit, or the host refused).
   * First fit over the freed blocks, else the top of the heap, growing the memory.
   */
  alloc(bytes: number): number | null {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.free.length; i++) {
      const block = this.free[i];
      if (block.size < size) continue;
      const offset = block.offset;
      if (block.size === size) this.free.splice(i, 1);
      else {
        block.offset += size;
        block.size -= size;
      }
      return offset;
    }
    const end = this.top + size;
    if (end > MAX_PAGES * PAGE) return null;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      try {
        this.memory.grow(Math.ceil((end - have) / PAGE));
      } catch {
        return null;
      }
    }
    const offset = this.top;
    this.top = end;
    return offset;
  }

  release(offset: number, bytes: number): void {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    // Kept sorted by offset and coalesced, so freed neighbours merge and a freed top block lowers the top.
    let i = 0;
    while (i < this.free.length && this.free[i].offset < offset) i++;
    this.free.splice(i, 0, {offset, size});
    if (i + 1 < this.free.length && offset + size === this.free[i + 1].offset) {
      this.free[i].size += this.free[i + 1].size;
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1].offset + this.free[i - 1].size === this.free[i].offset) {
      this.free[i - 1].size += this.free[i].size;
      this.free.splice(i, 1);
      i--;
    }
    const last = this.free[this.free.length - 1];
    if (last.offset + last.size === this.top) {
      this.top = last.offset;
      this.free.pop();
    }
  }

  /** Threads a call uses now: the flag, limited to what this platform can run. */
  threads(): number {
    const wanted = Math.max(1, Math.floor(tf.env().getNumber('MOE_WASM_THREADS')));
    if (wanted === 1 || this.variant !== 'threads' || this.poolFailed != null) return 1;
    if (this.pool == null || this.pool.size + 1 < wanted) {
      this.pool?.stop();
      this.pool = null;
      try {
        this.pool = startThreadPool(SIMD_LEVELS.map(l => this.modules[l] ?? null), this.memory, wanted - 1);
      } catch (e) {
        this.poolFailed = (e as Error).message;
        return 1;
      }
    }
    return wanted;
  }

  /** Runs `entry(...args, thread, threads)` on every thread; returns when all are done. */
  run(entry: ThreadedEntry, args: number[], threads: number): void {
    this.lastCallThreads = threads > 1 && this.pool != null ? threads : 1;
    const level = this.simd();
    const fn = this.instances[level]![entry] as (...a: number[]) => void;
    if (threads > 1 && this.pool != null) {
      this.pool.run(entry, SIMD_LEVELS.indexOf(level), args, threads, () => fn(...args, 0, threads));
      return;
    }
    fn(...args, 0, 1);
  }

  status(): WasmStatus {
    return {available: true, variant: this.variant, simd: this.simd(), relaxedSimd: this.instances.relaxed != null,
      threads: this.threads(), lastCallThreads: this.lastCallThreads,
      ...(this.poolFailed != null ? {reason: `threads unavailable: ${this.poolFailed}`} : {})};
  }
}

let runtime: WasmRuntime | null = null;
let unavailable: string | null = null;
let pending: Promise<void> | null = null;

function canShareMemory(): boolean {
  // Threads need Node (worker_threads; the calling thread may block in Atomics.wait).
  return nodeProcess()?.getBuiltinModule?.('worker_threads') != null && typeof SharedArrayBuffer === 'function';
}

function initialise(): void {
  if (typeof WebAssembly !== 'object') {
    unavailable = 'this platform has no WebAssembly';
    return;
  }
  const variant = canShareMemory() ? 'threads' : 'single';
  const build = (base64: string, flagOffset: number) => {
    const bytes = decodeBase64(base64);
    // The single build is the threads build with a plain (not shared) memory import (scripts/build-wasm.mjs).
    if (variant === 'single') bytes[flagOffset] &= ~2;
    return bytes;
  };
  const plain = build(plainThreadsWasmBase64, plainSharedMemoryFlagOffset);
  if (!WebAssembly.validate(plain)) {
    unavailable = 'this WebAssembly engine does not support 128-bit SIMD (the module does not validate)';
    return;
  }
  const relaxed = build(relaxedThreadsWasmBase64, relaxedSharedMemoryFlagOffset);
  const binaries: Partial<Record<SimdLevel, Uint8Array<ArrayBuffer>>> = {plain};
  if (WebAssembly.validate(relaxed)) binaries.relaxed = relaxed;
  const memory = new WebAssembly.Memory({initial: 16, maximum: MAX_PAGES, ...(variant === 'threads' ? {shared: true} : {})});
  const modules: Partial<Record<SimdLevel, WebAssembly.Module>> = {};
  try {
    for (const level of SIMD_LEVELS) {
      const bytes = binaries[level];
      if (bytes != null) modules[level] = new WebAssembly.Module(bytes);
    }
  } catch (e) {
    // Browsers refuse to compile large modules synchronously on the main thread: compile in the background and
    // run the JavaScript kernels until it is done.
    if (!(e instanceof RangeError)) throw e;
    unavailable = 'the WebAssembly module is still compiling';
    pending = Promise.all(SIMD_LEVELS.map(l => binaries[l] != null ? WebAssembly.compile(binaries[l]) : null))
        .then(([p, r]) => {
          runtime = new WasmRuntime({plain: p!, ...(r != null ? {relaxed: r} : {})}, memory, variant);
          unavailable = null;
        }, (err: Error) => {
          unavailable = `compiling the WebAssembly module failed: ${err.message}`;
        });
    return;
  }
  runtime = new WasmRuntime(modules, memory, variant);
}

let initialised = false;

/** The runtime when the wasm kernels should run now (flag on, SIMD supported, module compiled), else null. */
export function wasmRuntime(): WasmRuntime | null {
  if (!tf.env().getBool('MOE_WASM')) return null;
  if (!initialised) {
    initialised = true;
    initialise();
  }
  return runtime;
}

/** The runtime if one was created, whatever the flags say now (to free what it holds). */
export function existingRuntime(): WasmRuntime | null {
  return runtime;
}

/** Whether the cpu kernels run as WebAssembly, and why not when they do not. */
export function wasmStatus(): WasmStatus {
  if (!tf.env().getBool('MOE_WASM')) return {available: false, reason: "the flag MOE_WASM is false"};
  const rt = wasmRuntime();
  return rt == null ? {available: false, reason: unavailable ?? 'unknown'} : rt.status();
}

/** Resolves when the module is compiled (or failed to); the kernels use it from then on. */
export async function wasmReady(): Promise<WasmStatus> {
  wasmRuntime();
  if (pending != null) await pending;
  return wasmStatus();
}
