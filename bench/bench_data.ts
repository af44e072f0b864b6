/** Command-line arguments and seeded random data shared by the benchmarks (speed over quality: xorshift32). */

/** The value after `--name` on the command line, or dflt. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}

/** Uniform values in [-a, a) from a xorshift stream (fast enough for the 600M weights of a full layer). */
export function uniform(n: number, a: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const scale = (2 * a) / 4294967296;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = s * scale - a;
  }
  return out;
}

/** A xorshift stream of uniform values in [0, 1). */
export function rand(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

/** Roughly normal values (a sum of three uniforms) with standard deviation about scale. */
export function randn(r: () => number, n: number, scale: number): Float32Array {
  return Float32Array.from({length: n}, () => (r() + r() + r() - 1.5) * 2 * scale);
}
