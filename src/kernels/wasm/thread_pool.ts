/**
 * Worker threads for the wasm kernels in Node. A tfjs kernel must return synchronously, so the calling thread
 * publishes a call in a shared control block, runs its own share (thread 0), and blocks in Atomics.wait until
 * the workers are done. Idle workers sleep in Atomics.wait (no CPU) and are unref'd (they never keep a process
 * alive). Each worker instantiates the same modules (one per SIMD level) on the same shared memory; the kernels
 * use no C stack, so the instances share nothing but the arrays the call names.
 */

// Control block (Int32 slots).
const GENERATION = 0;  // bumped once per call; workers wait on it
const PENDING = 1;     // workers still running the current call
const READY = 2;       // workers started
const FAILED = 3;      // a worker's call threw
const ENTRY = 4;       // index into ENTRIES; -1 stops the workers
const THREADS = 5;     // threads of the current call (workers with index >= THREADS - 1 sit it out)
const MODULE = 6;     // index into the modules the pool was started with
const ARGC = 7;
const ARGS = 8;
const MAX_ARGS = 16;
const CONTROL_SLOTS = ARGS + MAX_ARGS;

const ENTRIES = ['moe_gemm', 'moe_gemm_swiglu'];
const START_TIMEOUT_MS = 20_000;

// Runs in every worker (CommonJS, eval'd by Node's Worker): `index` is the worker's thread number minus 1.
const WORKER_SOURCE = `
const {workerData} = require('worker_threads');
const {modules, memory, control, index} = workerData;
const c = new Int32Array(control);
const entries = modules.map(module => {
  if (module == null) return null;
  const exports = new WebAssembly.Instance(module, {env: {memory}}).exports;
  return ${JSON.stringify(ENTRIES)}.map(name => exports[name]);
});
Atomics.add(c, ${READY}, 1);
Atomics.notify(c, ${READY});
let seen = 0;
for (;;) {
  Atomics.wait(c, ${GENERATION}, seen);
  seen = Atomics.load(c, ${GENERATION});
  const entry = Atomics.load(c, ${ENTRY});
  if (entry < 0) break;
  const threads = c[${THREADS}];
  if (index + 1 >= threads) continue;
  try {
    const args = [];
    for (let i = 0; i < c[${ARGC}]; i++) args.push(c[${ARGS} + i] >>> 0);
    entries[c[${MODULE}]][entry](...args, index + 1, threads);
  } catch (e) {
    Atomics.store(c, ${FAILED}, 1);
  }
  if (Atomics.sub(c, ${PENDING}, 1) === 1) Atomics.notify(c, ${PENDING});
}
`;

interface WorkerLike {
  unref(): void;
  terminate(): Promise<number>;
  on(event: 'error', fn: (e: Error) => void): void;
}
type WorkerCtor = new (source: string, options: {eval: true, workerData: unknown}) => WorkerLike;

export interface ThreadPool {
  /** Workers (the calling thread is not one of them). */
  readonly size: number;
  /** Runs `entry` of modules[module] on threads 1..threads-1 and `own()` (thread 0) here; returns when all are done. */
  run(entry: string, module: number, args: number[], threads: number, own: () => void): void;
  stop(): void;
}

/** modules: the builds a call may name (null where this engine has none). */
export function startThreadPool(modules: Array<WebAssembly.Module | null>, memory: WebAssembly.Memory,
                                size: number): ThreadPool {
  const proc = (globalThis as {process?: {getBuiltinModule?: (id: string) => unknown}}).process;
  const wt = proc?.getBuiltinModule?.('worker_threads') as {Worker?: WorkerCtor} | undefined;
  if (wt?.Worker == null) throw new Error('worker_threads is not available');
  const control = new SharedArrayBuffer(CONTROL_SLOTS * 4);
  const c = new Int32Array(control);
  const workers: WorkerLike[] = [];
  let workerError: Error | null = null;
  for (let index = 0; index < size; index++) {
    const worker = new wt.Worker(WORKER_SOURCE, {eval: true, workerData: {modules, memory, control, index}});
    worker.on('error', e => {
      workerError = e;
    });
    worker.unref();
    workers.push(worker);
  }
  const stop = () => {
    Atomics.store(c, ENTRY, -1);
    Atomics.add(c, GENERATION, 1);
    Atomics.notify(c, GENERATION);
    for (const w of workers) void w.terminate();
  };
  // Worker start-up runs on the workers' own threads, so blocking here is safe.
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (let ready = Atomics.load(c, READY); ready < size; ready = Atomics.load(c, READY)) {
    if (Date.now() > deadline) {
      stop();
      throw new Error(`only ${ready} of ${size} worker threads started within ${START_TIMEOUT_MS} ms`);
    }
    Atomics.wait(c, READY, ready, 50);
  }
  return {
    size,
    run(entry, module, args, threads, own) {
      if (workerError != null) throw new Error(`a wasm worker thread failed: ${workerError.message}`);
      if (args.length > MAX_ARGS) throw new Error(`thread pool: ${args.length} arguments (at most ${MAX_ARGS})`);
      const index = ENTRIES.indexOf(entry);
      if (index < 0) throw new Error(`thread pool: unknown entry point ${entry}`);
      if (modules[module] == null) throw new Error(`thread pool: no module ${module}`);
      Atomics.store(c, ENTRY, index);
      c[MODULE] = module;
      c[THREADS] = threads;
      c[ARGC] = args.length;
      for (let i = 0; i < args.length; i++) c[ARGS + i] = args[i] | 0;
      c[FAILED] = 0;
      Atomics.store(c, PENDING, threads - 1);
      Atomics.add(c, GENERATION, 1);
      Atomics.notify(c, GENERATION);
      try {
        own();
      } finally {
        for (let p = Atomics.load(c, PENDING); p !== 0; p = Atomics.load(c, PENDING)) Atomics.wait(c, PENDING, p);
      }
      if (c[FAILED] !== 0) throw new Error(`wasm kernel ${entry} failed on a worker thread`);
    },
    stop,
  };
}
