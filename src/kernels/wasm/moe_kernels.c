// Expert GEMMs for the cpu backend (float32, and int8 / symmetric int4 codes with float32 group scales, as
// docs/formats.md defines them), compiled to WebAssembly with 128-bit SIMD (scripts/build-wasm.mjs).
//
// Memory is owned by the JS side (src/kernels/wasm/runtime.ts): it places every array in this module's linear
// memory and passes offsets. Nothing here uses the C stack (no arrays, no address-taken locals): the threaded
// build runs one instance per worker on one shared memory, and the instances would share one stack region. The
// build script fails when the compiled code touches the stack pointer.
//
// Expert weights are stored packed (pack_expert) once per weight tensor and expert by the JS weight cache:
// column panels of PANEL columns, each panel depth-major [K][PANEL], zero-padded past N. One layout serves the
// decode path (a row streams each panel once from memory) and the prefill path (a block of ROW_BLOCK rows is
// multiplied against a panel that stays in L1/L2), so a cached expert never needs a second copy.
//
// Threads take every expert's panels (not the experts) in chunks, first come first served: each thread streams
// part of every active expert, which balances decode (few experts, one row each) as well as prefill.
//
// Named parameters, fixed per build: PANEL (columns per panel, the register tiles' width), ROW_BLOCK (rows that
// share one pass over a panel). The build variants (threads: shared memory and atomics, or not) compile this
// same source.
//
// Low-bit formats keep the panel order (PANEL columns, gate and up halves apart) with codes in place of floats:
// per panel, per group of K, the group's codes then (after all panels) each group's PANEL scales. Blocks of up to
// INT_ROWS rows (decode, small prefill segments) split every row into two int16 halves (x = S * (hi + lo / 2^15),
// exact to 2^-29 of its largest value) and multiply them with the codes in int32 (no per-weight conversion), two
// rows per pass over a panel's codes, the scale applied once per group. Larger blocks, and blocks with a row that
// has a non-finite value (or only tiny ones), run in float32: one row streams the codes, several dequantize the
// panel in L1-sized slices (w = s * q, docs/formats.md's rounding) for the float tiles.

#include <stdint.h>
#include <wasm_simd128.h>

#ifndef PANEL
#define PANEL 8
#endif
#ifndef ROW_BLOCK
#define ROW_BLOCK 32
#endif

#if PANEL != 8
#error "the tile kernels below are written for PANEL == 8 (two f32x4 column groups)"
#endif

#define EXPORT(name) __attribute__((export_name(#name)))

// Expert weight formats (the values of the `format` arguments).
#define FORMAT_F32 0
#define FORMAT_INT8 1
#define FORMAT_INT4 2

// ---------------------------------------------------------------------------------------------------------------
// Packing

static inline int panel_count(int n) { return (n + PANEL - 1) / PANEL; }

// Packs columns [c0, c0 + count) of one expert's weights into `count_panels` panels at dst. src is [K,N] row-major
// or, with transposed, [N,K] row-major. Columns past c0 + count are zero.
static void pack_columns(const float* src, float* dst, int k, int n, int transposed, int c0, int count) {
  const int panels = panel_count(count);
  for (int p = 0; p < panels; p++) {
    float* panel = dst + (long)p * k * PANEL;
    const int first = p * PANEL;
    const int valid = count - first < PANEL ? count - first : PANEL;
    if (transposed) {
      // Rows of [N,K] are the panel's columns: read each row once, contiguously.
      for (int j = 0; j < PANEL; j++) {
        const float* s = src + (long)(c0 + first + j) * k;
        for (int kk = 0; kk < k; kk++) panel[kk * PANEL + j] = j < valid ? s[kk] : 0.0f;
      }
    } else {
      // A panel row is PANEL consecutive floats of a [K,N] row.
      const float* s = src + c0 + first;
      for (int kk = 0; kk < k; kk++) {
        for (int j = 0; j < PANEL; j++) panel[kk * PANEL + j] = j < valid ? s[(long)kk * n + j] : 0.0f;
      }
    }
  }
}

// Bytes of one panel's codes for one group of K (a group is a multiple of 4 k: int4 packs 4 k per 16 bytes).
static inline int group_code_bytes(int format, int group) {
  return format == FORMAT_INT8 ? group * PANEL : group * PANEL / 2;
}

// Bytes of `panels` packed panels over depth k: floats, or codes plus scales.
static inline long panels_bytes(int format, int k, int group, int panels) {
  if (format == FORMAT_F32) return (long)panels * k * PANEL * 4;
  const int groups = k / group;
  return (long)panels * groups * (group_code_bytes(format, group) + PANEL * 4);
}

// Bytes one packed expert takes: plain layout (moe_gemm) or split into its two halves (moe_gemm_swiglu, where
// half the columns are the gate and half the up projection, each padded to whole panels). group: codes per scale
// (a multiple of 4 dividing k; ignored for float32).
EXPORT(packed_expert_bytes) int packed_expert_bytes(int format, int k, int n, int group, int halves) {
  return (int)(halves ? 2 * panels_bytes(format, k, group, panel_count(n / 2))
                      : panels_bytes(format, k, group, panel_count(n)));
}

EXPORT(pack_expert) void pack_expert(const float* src, float* dst, int k, int n, int transposed, int halves) {
  if (!halves) {
    pack_columns(src, dst, k, n, transposed, 0, n);
    return;
  }
  const int half = n / 2;
  pack_columns(src, dst, k, n, transposed, 0, half);
  pack_columns(src, dst + (long)panel_count(half) * k * PANEL, k, n, transposed, half, half);
}

// Code (k, col) of one expert's int8 / int4 words (docs/formats.md 2.1: P codes per int32 word along K, the lowest
// k in the lowest bits; [K/P, N] words, or [N, K/P] transposed): int8 as its signed value, int4 as the nibble.
static inline int code_at(const int32_t* words, int k, int n, int transposed, int format, int kk, int col) {
  const int per = format == FORMAT_INT8 ? 4 : 8;
  const int kw = (k + per - 1) / per;
  const uint32_t w = (uint32_t)(transposed ? words[(long)col * kw + kk / per] : words[(long)(kk / per) * n + col]);
  const int shift = (kk % per) * (32 / per);
  return format == FORMAT_INT8 ? (int)(int8_t)(uint8_t)(w >> shift) : (int)((w >> shift) & 15);
}

// Packs columns [c0, c0 + count) of one expert's codes and scales ([K/group, N], or [N, K/group] transposed) at
// dst. Per panel and group, 16 bytes per step of k, in the pair order of i32x4.dot_i16x8_s (lane j of the i16
// vector = k pair element j % 2 of column j / 2): int8 steps of 2 k, byte 2j + h = column j's k = 2t + h; int4
// steps of 4 k, byte 2j + h holding column j's k = 4t + h in its low nibble and 4t + 2 + h in its high one (a
// mask and a shift give two pair vectors). Columns past count get the code of 0 (int8 0, int4 8) and scale 0.
static void pack_quantized_columns(const int32_t* words, const float* scales, uint8_t* dst, int format, int k, int n,
                                   int group, int transposed, int c0, int count) {
  const int panels = panel_count(count), groups = k / group, code_bytes = group_code_bytes(format, group);
  float* dst_scales = (float*)(dst + (long)panels * groups * code_bytes);
  for (int p = 0; p < panels; p++) {
    for (int g = 0; g < groups; g++) {
      uint8_t* c = dst + ((long)p * groups + g) * code_bytes;
      for (int j = 0; j < PANEL; j++) {
        const int col = c0 + p * PANEL + j, valid = p * PANEL + j < count;
        dst_scales[((long)p * groups + g) * PANEL + j] =
            valid ? (transposed ? scales[(long)col * groups + g] : scales[(long)g * n + col]) : 0.0f;
        for (int kk = 0; kk < group; kk++) {
          const int code = valid ? code_at(words, k, n, transposed, format, g * group + kk, col) : (format == FORMAT_INT8 ? 0 : 8);
          if (format == FORMAT_INT8) {
            c[(kk / 2) * 16 + 2 * j + (kk & 1)] = (uint8_t)code;
          } else {
            const int r = kk % 4;
            uint8_t* byte = c + (kk / 4) * 16 + 2 * j + (r & 1);
            *byte = r < 2 ? (uint8_t)((*byte & 0xf0) | code) : (uint8_t)((*byte & 0x0f) | (code << 4));
          }
        }
      }
    }
  }
}

EXPORT(pack_expert_quantized)
void pack_expert_quantized(const int32_t* words, const float* scales, uint8_t* dst, int format, int k, int n, int group,
                           int transposed, int halves) {
  if (!halves) {
    pack_quantized_columns(words, scales, dst, format, k, n, group, transposed, 0, n);
    return;
  }
  const int half = n / 2;
  pack_quantized_columns(words, scales, dst, format, k, n, group, transposed, 0, half);
  pack_quantized_columns(words, scales, dst + panels_bytes(format, k, group, panel_count(half)), format, k, n, group,
                         transposed, half, half);
}

// ---------------------------------------------------------------------------------------------------------------
// Register tiles: tile[r][0..PANEL) = sum_k a[r][k] * panel[k][0..PANEL), for the rows of a at stride lda.
// One tile per row count up to 4, so that a block's rows pass over the panel ceil(rows / 4) times; wider tiles
// (6 rows, or k unrolled) measured slower: V8 runs out of the 16 xmm registers and spills.

// c + a * b. The relaxed build (MOE_RELAXED_SIMD, compiled with -mrelaxed-simd) uses f32x4.relaxed_madd, which
// the engine runs as one fused multiply-add (one rounding) where the CPU has FMA, else as a multiply and an add
// (two roundings, as the plain build): half the floating-point instructions of the tiles, which are bound by the
// core's instruction throughput, not by memory, at 4 or more rows per block.
static inline v128_t madd(v128_t a, v128_t b, v128_t c) {
#ifdef MOE_RELAXED_SIMD
  return wasm_f32x4_relaxed_madd(a, b, c);
#else
  return wasm_f32x4_add(c, wasm_f32x4_mul(a, b));
#endif
}

// Decode: one row streams the panel; two accumulator pairs hide the add latency.
static inline void tile_1(const float* a, const float* b, int k, float* tile) {
  v128_t c0 = wasm_f32x4_splat(0), c1 = c0, d0 = c0, d1 = c0;
  int kk = 0;
  for (; kk + 2 <= k; kk += 2, b += 2 * PANEL) {
    const v128_t x0 = wasm_v128_load32_splat(a + kk), x1 = wasm_v128_load32_splat(a + kk + 1);
    c0 = madd(x0, wasm_v128_load(b), c0);
    c1 = madd(x0, wasm_v128_load(b + 4), c1);
    d0 = madd(x1, wasm_v128_load(b + 8), d0);
    d1 = madd(x1, wasm_v128_load(b + 12), d1);
  }
  if (kk < k) {
    const v128_t x0 = wasm_v128_load32_splat(a + kk);
    c0 = madd(x0, wasm_v128_load(b), c0);
    c1 = madd(x0, wasm_v128_load(b + 4), c1);
  }
  wasm_v128_store(tile, wasm_f32x4_add(c0, d0));
  wasm_v128_store(tile + 4, wasm_f32x4_add(c1, d1));
}

static inline void tile_2(const float* a, int lda, const float* b, int k, float* tile) {
  const float* a1 = a + lda;
  v128_t c00 = wasm_f32x4_splat(0), c01 = c00, c10 = c00, c11 = c00;
  for (int kk = 0; kk < k; kk++, b += PANEL) {
    const v128_t b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 4);
    const v128_t x0 = wasm_v128_load32_splat(a + kk), x1 = wasm_v128_load32_splat(a1 + kk);
    c00 = madd(x0, b0, c00);
    c01 = madd(x0, b1, c01);
    c10 = madd(x1, b0, c10);
    c11 = madd(x1, b1, c11);
  }
  wasm_v128_store(tile, c00);
  wasm_v128_store(tile + 4, c01);
  wasm_v128_store(tile + PANEL, c10);
  wasm_v128_store(tile + PANEL + 4, c11);
}


static inline void tile_3(const float* a, int lda, const float* b, int k, float* tile) {
  const float *a1 = a + lda, *a2 = a1 + lda;
  v128_t c00 = wasm_f32x4_splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  for (int kk = 0; kk < k; kk++, b += PANEL) {
    const v128_t b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 4);
    v128_t x = wasm_v128_load32_splat(a + kk);
    c00 = madd(x, b0, c00);
    c01 = madd(x, b1, c01);
    x = wasm_v128_load32_splat(a1 + kk);
    c10 = madd(x, b0, c10);
    c11 = madd(x, b1, c11);
    x = wasm_v128_load32_splat(a2 + kk);
    c20 = madd(x, b0, c20);
    c21 = madd(x, b1, c21);
  }
  wasm_v128_store(tile, c00);
  wasm_v128_store(tile + 4, c01);
  wasm_v128_store(tile + PANEL, c10);
  wasm_v128_store(tile + PANEL + 4, c11);
  wasm_v128_store(tile + 2 * PANEL, c20);
  wasm_v128_store(tile + 2 * PANEL + 4, c21);
}

// Prefill: 4 rows x 8 columns, 16 multiply-adds per 2 panel loads and 4 broadcasts, the 4 rows packed depth-major
// ([k][4], pack_rows): one pointer walks them and the broadcasts take constant offsets, which saves V8 three
// address increments per step (measured 12% faster than reading the 4 rows in place).
static inline void tile_4p(const float* ap, const float* b, int k, float* tile) {
  v128_t c00 = wasm_f32x4_splat(0), c01 = c00, c10 = c00, c11 = c00;
  v128_t c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  for (int kk = 0; kk < k; kk++, b += PANEL, ap += 4) {
    const v128_t b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 4);
    v128_t x = wasm_v128_load32_splat(ap);
    c00 = madd(x, b0, c00);
    c01 = madd(x, b1, c01);
    x = wasm_v128_load32_splat(ap + 1);
    c10 = madd(x, b0, c10);
    c11 = madd(x, b1, c11);
    x = wasm_v128_load32_splat(ap + 2);
    c20 = madd(x, b0, c20);
    c21 = madd(x, b1, c21);
    x = wasm_v128_load32_splat(ap + 3);
    c30 = madd(x, b0, c30);
    c31 = madd(x, b1, c31);
  }
  wasm_v128_store(tile, c00);
  wasm_v128_store(tile + 4, c01);
  wasm_v128_store(tile + PANEL, c10);
  wasm_v128_store(tile + PANEL + 4, c11);
  wasm_v128_store(tile + 2 * PANEL, c20);
  wasm_v128_store(tile + 2 * PANEL + 4, c21);
  wasm_v128_store(tile + 3 * PANEL, c30);
  wasm_v128_store(tile + 3 * PANEL + 4, c31);
}

// Packs the full groups of 4 rows of a block (rows at stride lda) as [group][k][4].
static void pack_rows(const float* a, int lda, int rows, int k, float* ap) {
  for (int g = 0; g + 4 <= rows; g += 4) {
    const float* r = a + (long)g * lda;
    float* dst = ap + (long)g * k;
    for (int kk = 0; kk < k; kk++) {
      dst[kk * 4] = r[kk];
      dst[kk * 4 + 1] = r[lda + kk];
      dst[kk * 4 + 2] = r[2 * lda + kk];
      dst[kk * 4 + 3] = r[3 * lda + kk];
    }
  }
}

// tile[0 .. rows * PANEL) for `rows` consecutive rows of a (any count up to ROW_BLOCK).
// ap_k: the depth pack_rows packed the rows with (ap may point into it, for a slice of k starting there).
static void row_block_tiles(const float* a, const float* ap, int lda, int rows, const float* b, int k, float* tile,
                            int ap_k) {
  int r = 0;
  for (; r + 4 <= rows; r += 4) tile_4p(ap + (long)r * ap_k, b, k, tile + r * PANEL);
  const float* ar = a + (long)r * lda;
  switch (rows - r) {
    case 3: tile_3(ar, lda, b, k, tile + r * PANEL); break;
    case 2: tile_2(ar, lda, b, k, tile + r * PANEL); break;
    case 1: tile_1(ar, b, k, tile + r * PANEL); break;
    default: break;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Low-bit panels. A panel's codes for group g start at codes + g * group_code_bytes, its scales at
// scales + g * PANEL.

// A 16-byte step of codes as i16x8 pair vectors (see pack_quantized_columns): int8 gives w0 (columns 0-3) and
// w1 (4-7) for one k pair; int4 gives w0, w1 for k pair (4t, 4t + 1) and w2, w3 for (4t + 2, 4t + 3), as c - 8.
#define INT8_PAIRS(q, w0, w1)                \
  do {                                       \
    w0 = wasm_i16x8_extend_low_i8x16(q);     \
    w1 = wasm_i16x8_extend_high_i8x16(q);    \
  } while (0)
#define INT4_PAIRS(q, w0, w1, w2, w3)                                                               \
  do {                                                                                              \
    const v128_t lo_ = wasm_i8x16_sub(wasm_v128_and(q, wasm_i8x16_splat(0x0f)), wasm_i8x16_splat(8)); \
    const v128_t hi_ = wasm_i8x16_sub(wasm_u8x16_shr(q, 4), wasm_i8x16_splat(8));                    \
    INT8_PAIRS(lo_, w0, w1);                                                                        \
    INT8_PAIRS(hi_, w2, w3);                                                                        \
  } while (0)

// An i16x8 pair vector's codes as float32, k-major: f0 = its k0 codes of columns c..c+3, f1 = its k1 codes. Shifts
// of the i32 lanes, not extend + convert: clang folds those into an i16 -> f32 conversion that wasm lacks and
// scalarizes (per element an extract and a scalar convert, measured 6x slower).
#define PAIRS_TO_F32(w, f0, f1)                                                       \
  do {                                                                                \
    f0 = wasm_f32x4_convert_i32x4(wasm_i32x4_shr(wasm_i32x4_shl(w, 16), 16));         \
    f1 = wasm_f32x4_convert_i32x4(wasm_i32x4_shr(w, 16));                             \
  } while (0)

// Decode of one row whose values are not all finite or are tiny (x_split below declines them): in float32, the
// codes converted as they stream, the scale applied once per group.
static inline void q_tile_1_float(int format, const float* a, const uint8_t* codes, const float* scales, int k,
                                  int group, float* tile) {
  v128_t acc0 = wasm_f32x4_splat(0), acc1 = acc0;
  for (int k0 = 0; k0 < k; k0 += group, scales += PANEL) {
    v128_t p0 = wasm_f32x4_splat(0), p1 = p0;
    for (int kk = k0; kk < k0 + group; kk += format == FORMAT_INT8 ? 2 : 4, codes += 16) {
      const v128_t q = wasm_v128_load(codes);
      v128_t w0, w1, w2, w3, f0, f1;
      if (format == FORMAT_INT8) {
        INT8_PAIRS(q, w0, w1);
      } else {
        INT4_PAIRS(q, w0, w1, w2, w3);
        const v128_t x2 = wasm_v128_load32_splat(a + kk + 2), x3 = wasm_v128_load32_splat(a + kk + 3);
        PAIRS_TO_F32(w2, f0, f1);
        p0 = wasm_f32x4_add(p0, wasm_f32x4_add(wasm_f32x4_mul(x2, f0), wasm_f32x4_mul(x3, f1)));
        PAIRS_TO_F32(w3, f0, f1);
        p1 = wasm_f32x4_add(p1, wasm_f32x4_add(wasm_f32x4_mul(x2, f0), wasm_f32x4_mul(x3, f1)));
      }
      const v128_t x0 = wasm_v128_load32_splat(a + kk), x1 = wasm_v128_load32_splat(a + kk + 1);
      PAIRS_TO_F32(w0, f0, f1);
      p0 = wasm_f32x4_add(p0, wasm_f32x4_add(wasm_f32x4_mul(x0, f0), wasm_f32x4_mul(x1, f1)));
      PAIRS_TO_F32(w1, f0, f1);
      p1 = wasm_f32x4_add(p1, wasm_f32x4_add(wasm_f32x4_mul(x0, f0), wasm_f32x4_mul(x1, f1)));
    }
    acc0 = wasm_f32x4_add(acc0, wasm_f32x4_mul(p0, wasm_v128_load(scales)));
    acc1 = wasm_f32x4_add(acc1, wasm_f32x4_mul(p1, wasm_v128_load(scales + 4)));
  }
  wasm_v128_store(tile, acc0);
  wasm_v128_store(tile + 4, acc1);
}

// k per integer accumulation before it is moved to float32: |dot| <= 2 * 128 * 2^14 = 2^22 per k pair, so 256 k
// stay below 2^29 (int4: 2^19 per 4 k).
#define INT_CHUNK 256

// Splits row a[0..k) (k a multiple of 4) into int16 pairs x = S * (hi + lo * 2^-15) at xs (hi: k values, then lo:
// k), S a power of two with max|x| / S in [2^13, 2^14), so |hi|, |lo| <= 2^14 and the residual is below
// max|x| * 2^-29 (the float32 rounding of the products is 2^-24). Returns S; 0 when a value is not finite or
// max|x| < 2^-100 (such rows take q_tile_1_float).
static float x_split(const float* a, int k, int16_t* xs) {
  float m = 0;
  for (int kk = 0; kk < k; kk++) {
    const float v = __builtin_fabsf(a[kk]);
    if (!(v <= 3.4028235e38f)) return 0;
    if (v > m) m = v;
  }
  int16_t* lo = xs + k;
  if (m == 0) {
    for (int kk = 0; kk < k; kk++) xs[kk] = lo[kk] = 0;
    return 1;
  }
  const uint32_t e = __builtin_bit_cast(uint32_t, m) >> 23;  // biased exponent of m (m > 0, finite)
  if (e < 27) return 0;
  const float scale = __builtin_bit_cast(float, (e - 13) << 23);
  const float inverse = __builtin_bit_cast(float, (254 - e + 13) << 23);
  for (int kk = 0; kk < k; kk++) {
    const float t = a[kk] * inverse;  // exact: a power of two, no underflow (e >= 27)
    const float h = __builtin_rintf(t);
    xs[kk] = (int16_t)h;
    lo[kk] = (int16_t)__builtin_rintf((t - h) * 32768.0f);  // t - h is exact (|t - h| <= 1/2 of h's unit)
  }
  return scale;
}

// ROWS (1 or 2) rows (each split by x_split: xs + r * 2k, scale x_scale[r]) stream the panel's codes;
// the products accumulate exactly in int32 (i32x4.dot_i16x8_s: 8 multiply-adds per instruction, no conversion
// of the codes to float), moved to float32 every INT_CHUNK k and times the scale once per group.
// tile: ROWS rows of PANEL.
#define Q_TILE_INT(ROWS)                                                                                          \
  static inline void q_tile_int_##ROWS(int format, const int16_t* xs, const float* x_scale, const uint8_t* codes, \
                                       const float* scales, int k, int group, float* tile) {                     \
    const v128_t lo_unit = wasm_f32x4_splat(1.0f / 32768);                                                        \
    v128_t acc[ROWS][2];                                                                                          \
    for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = wasm_f32x4_splat(0);                                   \
    for (int k0 = 0; k0 < k; k0 += group, scales += PANEL) {                                                      \
      v128_t f[ROWS][2];                                                                                          \
      for (int r = 0; r < ROWS; r++) f[r][0] = f[r][1] = wasm_f32x4_splat(0);                                     \
      for (int c0 = k0; c0 < k0 + group; c0 += INT_CHUNK) {                                                       \
        const int c1 = c0 + INT_CHUNK < k0 + group ? c0 + INT_CHUNK : k0 + group;                                 \
        v128_t h[ROWS][2], l[ROWS][2];                                                                            \
        for (int r = 0; r < ROWS; r++) h[r][0] = h[r][1] = l[r][0] = l[r][1] = wasm_i32x4_splat(0);               \
        if (format == FORMAT_INT8) {                                                                              \
          for (int kk = c0; kk < c1; kk += 2, codes += 16) {                                                      \
            v128_t w0, w1;                                                                                        \
            INT8_PAIRS(wasm_v128_load(codes), w0, w1);                                                            \
            for (int r = 0; r < ROWS; r++) {                                                                      \
              const int16_t* x = xs + 2L * r * k;                                                                 \
              const v128_t xh = wasm_v128_load32_splat(x + kk), xl = wasm_v128_load32_splat(x + k + kk);          \
              h[r][0] = wasm_i32x4_add(h[r][0], wasm_i32x4_dot_i16x8(w0, xh));                                    \
              h[r][1] = wasm_i32x4_add(h[r][1], wasm_i32x4_dot_i16x8(w1, xh));                                    \
              l[r][0] = wasm_i32x4_add(l[r][0], wasm_i32x4_dot_i16x8(w0, xl));                                    \
              l[r][1] = wasm_i32x4_add(l[r][1], wasm_i32x4_dot_i16x8(w1, xl));                                    \
            }                                                                                                     \
          }                                                                                                       \
        } else {                                                                                                  \
          for (int kk = c0; kk < c1; kk += 4, codes += 16) {                                                      \
            v128_t w0, w1, w2, w3;                                                                                \
            INT4_PAIRS(wasm_v128_load(codes), w0, w1, w2, w3);                                                    \
            for (int r = 0; r < ROWS; r++) {                                                                      \
              const int16_t* x = xs + 2L * r * k;                                                                 \
              const v128_t xh01 = wasm_v128_load32_splat(x + kk), xh23 = wasm_v128_load32_splat(x + kk + 2);      \
              const v128_t xl01 = wasm_v128_load32_splat(x + k + kk), xl23 = wasm_v128_load32_splat(x + k + kk + 2); \
              h[r][0] = wasm_i32x4_add(h[r][0], wasm_i32x4_add(wasm_i32x4_dot_i16x8(w0, xh01),                    \
                                                               wasm_i32x4_dot_i16x8(w2, xh23)));                  \
              h[r][1] = wasm_i32x4_add(h[r][1], wasm_i32x4_add(wasm_i32x4_dot_i16x8(w1, xh01),                    \
                                                               wasm_i32x4_dot_i16x8(w3, xh23)));                  \
              l[r][0] = wasm_i32x4_add(l[r][0], wasm_i32x4_add(wasm_i32x4_dot_i16x8(w0, xl01),                    \
                                                               wasm_i32x4_dot_i16x8(w2, xl23)));                  \
              l[r][1] = wasm_i32x4_add(l[r][1], wasm_i32x4_add(wasm_i32x4_dot_i16x8(w1, xl01),                    \
                                                               wasm_i32x4_dot_i16x8(w3, xl23)));                  \
            }                                                                                                     \
          }                                                                                                       \
        }                                                                                                         \
        for (int r = 0; r < ROWS; r++) {                                                                          \
          for (int c = 0; c < 2; c++) {                                                                           \
            f[r][c] = wasm_f32x4_add(f[r][c], wasm_f32x4_add(wasm_f32x4_convert_i32x4(h[r][c]),                   \
                                                             wasm_f32x4_mul(wasm_f32x4_convert_i32x4(l[r][c]), lo_unit))); \
          }                                                                                                       \
        }                                                                                                         \
      }                                                                                                           \
      for (int r = 0; r < ROWS; r++) {                                                                            \
        acc[r][0] = wasm_f32x4_add(acc[r][0], wasm_f32x4_mul(f[r][0], wasm_v128_load(scales)));                   \
        acc[r][1] = wasm_f32x4_add(acc[r][1], wasm_f32x4_mul(f[r][1], wasm_v128_load(scales + 4)));               \
      }                                                                                                           \
    }                                                                                                             \
    for (int r = 0; r < ROWS; r++) {                                                                              \
      const v128_t s = wasm_f32x4_splat(x_scale[r]);                                                              \
      wasm_v128_store(tile + r * PANEL, wasm_f32x4_mul(acc[r][0], s));                                            \
      wasm_v128_store(tile + r * PANEL + 4, wasm_f32x4_mul(acc[r][1], s));                                        \
    }                                                                                                             \
  }
Q_TILE_INT(1)
Q_TILE_INT(2)

// Stores a step's pair vector w times the scales s of its 4 columns as float32 rows k0 and k1 of [k][PANEL] at dst
// (+ the column offset, 0 or 4).
static inline void store_pairs(v128_t w, v128_t s, float* dst) {
  v128_t f0, f1;
  PAIRS_TO_F32(w, f0, f1);
  wasm_v128_store(dst, wasm_f32x4_mul(s, f0));
  wasm_v128_store(dst + PANEL, wasm_f32x4_mul(s, f1));
}

#ifdef MOE_RELAXED_SIMD
// int8 codes times 2^24 as float32 (the code in the top byte of each i32 lane, converted: exact) for the 4
// columns of half h (0: columns 0-3, 1: 4-7) at k = 2t + kk of a step: column j's code is byte 2 (4h + j) + kk
// (pack_quantized_columns); indices -128 (0x80) give zero bytes.
#define INT8_TOP(h, kk)                                                                                     \
  wasm_i8x16_make(-128, -128, -128, 8 * (h) + (kk), -128, -128, -128, 8 * (h) + 2 + (kk), -128, -128, -128, \
                  8 * (h) + 4 + (kk), -128, -128, -128, 8 * (h) + 6 + (kk))

// One int8 group of a panel as float32 [group][PANEL] at dst: one byte shuffle and one conversion per 4 weights,
// times s * 2^-24 (s scaled exactly), so each weight is round(s * c), the same float as the pair conversion's
// s * q, in 17 instructions per 16-byte step instead of 22 (int8 T = 256: the dequantization was a fifth of the
// GEMM time; this build only, where relaxed_swizzle is one pshufb: the standard swizzle's out-of-range fix-up
// made the plain build no faster). Returns 0 (not done) when a scale is nonzero and below 2^-102 in magnitude,
// where s * 2^-24 would be subnormal and inexact.
static inline int int8_group_by_shuffle(const uint8_t* codes, const float* scales, int group, float* dst) {
  const v128_t s0 = wasm_v128_load(scales), s1 = wasm_v128_load(scales + 4);
  const v128_t tiny = wasm_f32x4_splat(0x1p-102f), zero = wasm_f32x4_splat(0);
  const v128_t inexact = wasm_v128_or(
      wasm_v128_and(wasm_f32x4_lt(wasm_f32x4_abs(s0), tiny), wasm_f32x4_ne(s0, zero)),
      wasm_v128_and(wasm_f32x4_lt(wasm_f32x4_abs(s1), tiny), wasm_f32x4_ne(s1, zero)));
  if (wasm_v128_any_true(inexact)) return 0;
  const v128_t unit = wasm_f32x4_splat(0x1p-24f);
  const v128_t t0 = wasm_f32x4_mul(s0, unit), t1 = wasm_f32x4_mul(s1, unit);
  const v128_t m00 = INT8_TOP(0, 0), m01 = INT8_TOP(0, 1), m10 = INT8_TOP(1, 0), m11 = INT8_TOP(1, 1);
  for (int kk = 0; kk < group; kk += 2, codes += 16, dst += 2 * PANEL) {
    const v128_t q = wasm_v128_load(codes);
    wasm_v128_store(dst, wasm_f32x4_mul(t0, wasm_f32x4_convert_i32x4(wasm_i8x16_relaxed_swizzle(q, m00))));
    wasm_v128_store(dst + 4, wasm_f32x4_mul(t1, wasm_f32x4_convert_i32x4(wasm_i8x16_relaxed_swizzle(q, m10))));
    wasm_v128_store(dst + PANEL, wasm_f32x4_mul(t0, wasm_f32x4_convert_i32x4(wasm_i8x16_relaxed_swizzle(q, m01))));
    wasm_v128_store(dst + PANEL + 4,
                    wasm_f32x4_mul(t1, wasm_f32x4_convert_i32x4(wasm_i8x16_relaxed_swizzle(q, m11))));
  }
  return 1;
}
#endif

// Several rows: the panel as float32 [k][PANEL] at dst, w = s * q (one rounding, as docs/formats.md).
static void dequantize_panel(int format, const uint8_t* codes, const float* scales, int k, int group, float* dst) {
  for (int k0 = 0; k0 < k; k0 += group, scales += PANEL) {
#ifdef MOE_RELAXED_SIMD
    if (format == FORMAT_INT8 && int8_group_by_shuffle(codes, scales, group, dst)) {
      codes += group * PANEL;
      dst += group * PANEL;
      continue;
    }
#endif
    const v128_t s0 = wasm_v128_load(scales), s1 = wasm_v128_load(scales + 4);
    for (int kk = k0; kk < k0 + group; kk += format == FORMAT_INT8 ? 2 : 4, codes += 16) {
      const v128_t q = wasm_v128_load(codes);
      v128_t w0, w1, w2, w3;
      if (format == FORMAT_INT8) {
        INT8_PAIRS(q, w0, w1);
      } else {
        INT4_PAIRS(q, w0, w1, w2, w3);
        store_pairs(w2, s0, dst + 2 * PANEL);
        store_pairs(w3, s1, dst + 2 * PANEL + 4);
      }
      store_pairs(w0, s0, dst);
      store_pairs(w1, s1, dst + 4);
      dst += format == FORMAT_INT8 ? 2 * PANEL : 4 * PANEL;
    }
  }
}

// k per dequantized slice of a panel (rounded to whole groups; a group larger than this is one slice): 4 KB of
// float32, in L1 with the row block's slice (16 rows: 8 KB). Measured (bench/cpu_gemm_micro.ts shapes, int8 g32,
// relaxed build, 8 / 16 / 32 rows per expert): 128 gives 17.3 / 20.5-20.8 / 23.0 GMAC/s, 256 gave 16.0 /
// 17.5-19.8 / 22.3, 64 and 96 no better than 128.
#define DQ_SLICE 128

// Rows per block up to which the integer tiles take the block; larger blocks dequantize the panel for the float
// tiles. Measured on Qwen3-30B-A3B's expert shapes (moe_gemm alone, int8 and int4 g32, 1 thread): up to 6 rows
// the integer tiles are as fast or faster (they read each code once per 2 rows, the float tiles' panel has to be
// written first), from 8 rows the dequantized panel is faster (16 rows: 47 vs 56 ms for the up projection of 16
// experts, the float tiles' 4 rows per pass against the integer tiles' 2).
#define INT_ROWS 7

// tile[0 .. rows * PANEL) for panel p of one packed half (`panels` panels at w) in any format; dq: k * PANEL
// floats of scratch for a dequantized panel; xs, x_scale: the block's rows split by x_split when
// rows <= INT_ROWS (x_scale null: not split, or a row could not be).
static inline void panel_tiles(int format, int group, const uint8_t* w, int panels, int p, const float* a,
                               const float* ap, int lda, int rows, int k, float* tile, float* dq, const int16_t* xs,
                               const float* x_scale) {
  if (format == FORMAT_F32) {
    row_block_tiles(a, ap, lda, rows, (const float*)w + (long)p * k * PANEL, k, tile, k);
    return;
  }
  const int groups = k / group, code_bytes = group_code_bytes(format, group);
  const uint8_t* codes = w + (long)p * groups * code_bytes;
  const float* scales = (const float*)(w + (long)panels * groups * code_bytes) + (long)p * groups * PANEL;
  if (x_scale != 0) {
    int r = 0;
    for (; r + 2 <= rows; r += 2) q_tile_int_2(format, xs + 2L * r * k, x_scale + r, codes, scales, k, group, tile + r * PANEL);
    if (r < rows) q_tile_int_1(format, xs + 2L * r * k, x_scale + r, codes, scales, k, group, tile + r * PANEL);
    return;
  }
  if (rows == 1) {
    q_tile_1_float(format, a, codes, scales, k, group, tile);
    return;
  }
  // Slices of whole groups, about DQ_SLICE k each, so that the dequantized slice stays in L1 while the row
  // tiles pass over it; the slices' tiles add up.
  const int slice_groups = group >= DQ_SLICE ? 1 : DQ_SLICE / group;
  float* part = dq + (long)(k > DQ_SLICE ? k : DQ_SLICE) * PANEL;
  for (int g0 = 0; g0 < groups; g0 += slice_groups) {
    const int ks = g0 * group, len = (g0 + slice_groups <= groups ? slice_groups : groups - g0) * group;
    dequantize_panel(format, codes + (long)g0 * code_bytes, scales + (long)g0 * PANEL, len, group, dq);
    float* dst = g0 == 0 ? tile : part;
    row_block_tiles(a + ks, ap + (long)ks * 4, lda, rows, dq, len, dst, k);
    if (g0 > 0) {
      for (int i = 0; i < rows * PANEL; i += 4) {
        wasm_v128_store(tile + i, wasm_f32x4_add(wasm_v128_load(tile + i), wasm_v128_load(part + i)));
      }
    }
  }
}

// Splits the block's rows (rows <= INT_ROWS) for the integer tiles: x_scale[r] per row; returns x_scale, or 0
// (use the float tiles) when the format is float32, the block is larger, or a row cannot be split.
static inline const float* split_rows(int format, const float* a, int rows, int k, int16_t* xs, float* x_scale) {
  if (format == FORMAT_F32 || rows > INT_ROWS) return 0;
  for (int r = 0; r < rows; r++) {
    x_scale[r] = x_split(a + (long)r * k, k, xs + 2L * r * k);
    if (x_scale[r] == 0) return 0;
  }
  return x_scale;
}

// ---------------------------------------------------------------------------------------------------------------
// Epilogues

// Stores the first `count` (0..4) lanes of v at dst.
static inline void store_lanes(float* dst, v128_t v, int count) {
  if (count >= 4) {
    wasm_v128_store(dst, v);
    return;
  }
  if (count > 0) dst[0] = wasm_f32x4_extract_lane(v, 0);
  if (count > 1) dst[1] = wasm_f32x4_extract_lane(v, 1);
  if (count > 2) dst[2] = wasm_f32x4_extract_lane(v, 2);
}

// The first `count` (0..4) floats at src as a vector (zeros past them): never reads past src + count.
static inline v128_t load_lanes(const float* src, int count) {
  if (count >= 4) return wasm_v128_load(src);
  v128_t v = wasm_f32x4_splat(0);
  if (count > 0) v = wasm_f32x4_replace_lane(v, 0, src[0]);
  if (count > 1) v = wasm_f32x4_replace_lane(v, 1, src[1]);
  if (count > 2) v = wasm_f32x4_replace_lane(v, 2, src[2]);
  return v;
}

// e^x for every lane, relative error about 1e-7; +inf above 88.72 (as Math.exp), NaN stays NaN.
static inline v128_t exp_f32x4(v128_t x) {
  const v128_t overflow = wasm_f32x4_gt(x, wasm_f32x4_splat(88.72283f));
  // Below -87.3 the result would be subnormal: clamped there (relative error irrelevant next to 1 + e^x).
  v128_t xc = wasm_f32x4_max(wasm_f32x4_min(x, wasm_f32x4_splat(88.0f)), wasm_f32x4_splat(-87.33654f));
  const v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(xc, wasm_f32x4_splat(1.44269504f)));
  // x - n ln2 in two steps (ln2 split into an exactly representable high part and the rest).
  v128_t r = wasm_f32x4_sub(xc, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  // Taylor to degree 6 on |r| <= ln2 / 2: truncation below 1e-7.
  v128_t p = wasm_f32x4_splat(1.0f / 720);
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 120));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 24));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f / 6));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(0.5f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
  p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(1.0f));
  const v128_t scale = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  const v128_t result = wasm_f32x4_mul(p, scale);
  return wasm_v128_bitselect(wasm_f32x4_splat(__builtin_inff()), result, overflow);
}

// silu(g) * u * s per lane: g / (1 + e^-g) * u * s, the cpu kernel's formula.
static inline v128_t swiglu_f32x4(v128_t g, v128_t u, v128_t s) {
  const v128_t e = exp_f32x4(wasm_f32x4_neg(g));
  const v128_t silu = wasm_f32x4_div(g, wasm_f32x4_add(wasm_f32x4_splat(1.0f), e));
  return wasm_f32x4_mul(wasm_f32x4_mul(silu, u), s);
}

// A dequantized slice (at most max(k, DQ_SLICE) k: a group can exceed DQ_SLICE) and a row block's partial tile.
static inline int dq_floats(int k) { return (k > DQ_SLICE ? k : DQ_SLICE) * PANEL + ROW_BLOCK * PANEL; }

// Each thread's scratch, at scratch + thread * scratch_floats_per_thread(k): two row-block tiles, the block's rows
// packed for tile_4p, then (low-bit formats) one dequantized panel, INT_ROWS rows' x_split (2k int16 each) and
// their scales.
static inline int scratch_floats(int k) {
  return 2 * ROW_BLOCK * PANEL + ROW_BLOCK * k + dq_floats(k) + INT_ROWS * k + INT_ROWS;
}
EXPORT(scratch_floats_per_thread) int scratch_floats_per_thread(int k) { return scratch_floats(k); }

// Work items: each row block of every segment, its panels in chunks of CHUNK_PANELS, in order. The threads take
// them first come first served from a counter in memory (zeroed by the caller before the call), so a thread that
// shares its core with another process takes fewer: a static split would make the call wait for it. A panel is
// still computed whole by one thread with the same code, so results do not depend on the thread count.
#define CHUNK_PANELS 4

static inline int claim(int32_t* work) { return __atomic_fetch_add(work, 1, __ATOMIC_RELAXED); }

// ---------------------------------------------------------------------------------------------------------------
// Entry points (one call per thread; thread 0 of 1 runs everything)

// out[r] = lhs[r] @ W[e] (+ bias[e]) for r in segment e = [offsets[e], offsets[e+1]). lhs [R,k], out [R,n] (rows
// outside every segment are not written), weights[e] = packed expert e (0 for an empty segment) in `format` with
// `group` codes per scale, bias [E,n] or 0, scratch: scratch_floats(k) per thread.
EXPORT(moe_gemm)
void moe_gemm(const float* lhs, int k, float* out, int n, const int32_t* offsets, int num_experts,
              const uint32_t* weights, const float* bias, int format, int group, float* scratch, int32_t* work,
              int thread, int threads) {
  (void)threads;
  const int panels = panel_count(n), chunks = (panels + CHUNK_PANELS - 1) / CHUNK_PANELS;
  scratch += (long)thread * scratch_floats(k);
  float* apack = scratch + 2 * ROW_BLOCK * PANEL;
  float* dq = apack + ROW_BLOCK * k;
  int16_t* xs = (int16_t*)(dq + dq_floats(k));
  float* x_scale = dq + dq_floats(k) + INT_ROWS * k;
  int item = 0, ticket = claim(work);
  for (int e = 0; e < num_experts; e++) {
    const int seg_start = offsets[e], seg_end = offsets[e + 1];
    if (seg_start >= seg_end) continue;
    const uint8_t* w = (const uint8_t*)(uintptr_t)weights[e];
    for (int r0 = seg_start; r0 < seg_end; r0 += ROW_BLOCK, item += chunks) {
      if (ticket >= item + chunks) continue;  // none of this block's chunks is this thread's
      const int rows = seg_end - r0 < ROW_BLOCK ? seg_end - r0 : ROW_BLOCK;
      const float* a = lhs + (long)r0 * k;
      pack_rows(a, k, rows, k, apack);
      const float* rows_scale = split_rows(format, a, rows, k, xs, x_scale);
      for (int p = 0; p < panels; p++) {
        if (item + p / CHUNK_PANELS != ticket) continue;
        if (p % CHUNK_PANELS == CHUNK_PANELS - 1 || p == panels - 1) ticket = claim(work);
        panel_tiles(format, group, w, panels, p, a, apack, k, rows, k, scratch, dq, xs, rows_scale);
        const int c0 = p * PANEL;
        const int valid = n - c0 < PANEL ? n - c0 : PANEL;
        const v128_t bias0 = bias ? load_lanes(bias + (long)e * n + c0, valid) : wasm_f32x4_splat(0);
        const v128_t bias1 = bias ? load_lanes(bias + (long)e * n + c0 + 4, valid - 4) : wasm_f32x4_splat(0);
        for (int r = 0; r < rows; r++) {
          float* dst = out + (long)(r0 + r) * n + c0;
          store_lanes(dst, wasm_f32x4_add(wasm_v128_load(scratch + r * PANEL), bias0), valid);
          store_lanes(dst + 4, wasm_f32x4_add(wasm_v128_load(scratch + r * PANEL + 4), bias1), valid - 4);
        }
      }
    }
  }
}

// The up projection with SwiGLU x scale fused: out[r, i] = silu(h[r, i]) * h[r, I + i] * scale[r] where
// h = lhs @ W[e] (+ bias[e]) over the 2I columns of W[e] (gate half first), packed with halves = 1.
// out [R, I]; bias [E, 2I] or 0; scale [R] or 0 (1); format and group as moe_gemm's; scratch: scratch_floats(k)
// per thread.
EXPORT(moe_gemm_swiglu)
void moe_gemm_swiglu(const float* lhs, int k, float* out, int intermediate, const int32_t* offsets,
                     int num_experts, const uint32_t* weights, const float* bias, int format, int group,
                     const float* scale, float* scratch, int32_t* work, int thread, int threads) {
  (void)threads;
  const int panels = panel_count(intermediate), chunks = (panels + CHUNK_PANELS - 1) / CHUNK_PANELS;
  scratch += (long)thread * scratch_floats(k);
  float* gate_tile = scratch;
  float* up_tile = scratch + ROW_BLOCK * PANEL;
  float* apack = scratch + 2 * ROW_BLOCK * PANEL;
  float* dq = apack + ROW_BLOCK * k;
  int16_t* xs = (int16_t*)(dq + dq_floats(k));
  float* x_scale = dq + dq_floats(k) + INT_ROWS * k;
  const int n = 2 * intermediate;
  int item = 0, ticket = claim(work);
  for (int e = 0; e < num_experts; e++) {
    const int seg_start = offsets[e], seg_end = offsets[e + 1];
    if (seg_start >= seg_end) continue;
    const uint8_t* w = (const uint8_t*)(uintptr_t)weights[e];
    const uint8_t* up_w = w + panels_bytes(format, k, group, panels);
    for (int r0 = seg_start; r0 < seg_end; r0 += ROW_BLOCK, item += chunks) {
      if (ticket >= item + chunks) continue;  // none of this block's chunks is this thread's
      const int rows = seg_end - r0 < ROW_BLOCK ? seg_end - r0 : ROW_BLOCK;
      const float* a = lhs + (long)r0 * k;
      pack_rows(a, k, rows, k, apack);
      const float* rows_scale = split_rows(format, a, rows, k, xs, x_scale);
      for (int p = 0; p < panels; p++) {
        if (item + p / CHUNK_PANELS != ticket) continue;
        if (p % CHUNK_PANELS == CHUNK_PANELS - 1 || p == panels - 1) ticket = claim(work);
        panel_tiles(format, group, w, panels, p, a, apack, k, rows, k, gate_tile, dq, xs, rows_scale);
        panel_tiles(format, group, up_w, panels, p, a, apack, k, rows, k, up_tile, dq, xs, rows_scale);
        const int c0 = p * PANEL;
        const int valid = intermediate - c0 < PANEL ? intermediate - c0 : PANEL;
        v128_t gb0 = wasm_f32x4_splat(0), gb1 = gb0, ub0 = gb0, ub1 = gb0;
        if (bias) {
          const float* be = bias + (long)e * n;
          gb0 = load_lanes(be + c0, valid);
          gb1 = load_lanes(be + c0 + 4, valid - 4);
          ub0 = load_lanes(be + intermediate + c0, valid);
          ub1 = load_lanes(be + intermediate + c0 + 4, valid - 4);
        }
        for (int r = 0; r < rows; r++) {
          const v128_t s = wasm_f32x4_splat(scale ? scale[r0 + r] : 1.0f);
          const float* g = gate_tile + r * PANEL;
          const float* u = up_tile + r * PANEL;
          float* dst = out + (long)(r0 + r) * intermediate + c0;
          store_lanes(dst, swiglu_f32x4(wasm_f32x4_add(wasm_v128_load(g), gb0),
                                        wasm_f32x4_add(wasm_v128_load(u), ub0), s), valid);
          store_lanes(dst + 4, swiglu_f32x4(wasm_f32x4_add(wasm_v128_load(g + 4), gb1),
                                            wasm_f32x4_add(wasm_v128_load(u + 4), ub1), s), valid - 4);
        }
      }
    }
  }
}

// The weighted combine (docs/semantics.md section 6) of rows y [*, hidden] in this memory into out [tokens,
// hidden]: out[t] = sum over slots j = 0..top_k-1, in that order, of w[t, j] * y[row_map[t, j]] (weights_applied:
// the rows are weighted already, the plain sum), each product and each sum rounded to float32 (a multiply then
// an add, never fused: the same floats as the JavaScript combine, moe_combine_impl.ts). Every row_map entry is a
// row of y (the caller combines identity slots and biases in JavaScript). Single-threaded: a few milliseconds at
// T = 256 where the GEMMs take hundreds, and the rows of y stay where the down projection wrote them.
EXPORT(moe_combine)
void moe_combine(const float* y, int hidden, const int32_t* row_map, const float* weights, int tokens, int top_k,
                 int weights_applied, float* out) {
  const int vec = hidden & ~3;
  for (int t = 0; t < tokens; t++) {
    float* o = out + (long)t * hidden;
    for (int j = 0; j < top_k; j++) {
      const float* r = y + (long)row_map[t * top_k + j] * hidden;
      const float w = weights[t * top_k + j];
      const v128_t ws = wasm_f32x4_splat(w);
      if (j == 0) {
        // 0 + p is p (and +0 for p = -0, as the JavaScript sum from 0 gives).
        for (int d = 0; d < vec; d += 4) {
          const v128_t p = weights_applied ? wasm_v128_load(r + d) : wasm_f32x4_mul(ws, wasm_v128_load(r + d));
          wasm_v128_store(o + d, wasm_f32x4_add(wasm_f32x4_splat(0), p));
        }
        for (int d = vec; d < hidden; d++) o[d] = 0.0f + (weights_applied ? r[d] : w * r[d]);
        continue;
      }
      for (int d = 0; d < vec; d += 4) {
        const v128_t p = weights_applied ? wasm_v128_load(r + d) : wasm_f32x4_mul(ws, wasm_v128_load(r + d));
        wasm_v128_store(o + d, wasm_f32x4_add(wasm_v128_load(o + d), p));
      }
      for (int d = vec; d < hidden; d++) {
        const float p = weights_applied ? r[d] : w * r[d];
        o[d] = o[d] + p;
      }
    }
  }
}
