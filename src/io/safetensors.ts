/**
 * A safetensors reader that runs in browsers and Node alike (no node: imports): 8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}, then the data.
 * Half-precision and bfloat16 become float32 and int64 becomes int32 (tfjs has neither), with a range check.
 * Every offset is validated before any tensor is made, so corrupt input throws instead of reading garbage.
 */
import * as tf from '@tensorflow/tfjs-core';

import {describeValue} from '../ops/limits.js';

/** The dtypes of the safetensors format that readSafetensors decodes. */
export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const BYTES_PER_ELEMENT: Record<SafetensorsDtype, number> =
    {F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1};

/** One tensor's header entry; `begin`/`end` are byte offsets into the data section. */
export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** A safetensors file's parsed header: its tensor entries, metadata and where the data section starts. */
export interface SafetensorsHeader {
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
  /** Byte offset of the data section from the start of the file (8 + header length). */
  dataStart: number;
  /** Byte length of the data section that the header describes. */
  dataLength: number;
}

/** Headers beyond this size are rejected as corrupt (the reference implementation caps them at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

function fail(what: string): never {
  throw new Error(`readSafetensors: ${what}`);
}

function toBytes(bytes: Uint8Array | ArrayBuffer): Uint8Array {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  return fail(`argument 'bytes' must be a Uint8Array or an ArrayBuffer, got ${Object.prototype.toString.call(bytes)}`);
}

/**
 * Reads the header from the first bytes of a file. `fileLength` is the whole file's length when `bytes` holds
 * only a prefix of it (the Node checkpoint reader reads headers alone); it defaults to bytes.length.
 */
export function parseSafetensorsHeader(bytes: Uint8Array | ArrayBuffer, fileLength?: number): SafetensorsHeader {
  const buf = toBytes(bytes);
  const total = fileLength ?? buf.length;
  if (buf.length < 8) fail(`file too short for the 8-byte header length (${buf.length} bytes)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const lo = view.getUint32(0, true), hi = view.getUint32(4, true);
  const headerLength = hi * 2 ** 32 + lo;
  // The length is the file's first 8 bytes: print it only when it could be one, never echo other content.
  if (headerLength > MAX_HEADER_BYTES) fail('not a safetensors file');
  if (headerLength < 2) fail(`not a safetensors file (header length ${headerLength} is below the 2 of '{}')`);
  if (8 + headerLength > total) {
    fail(`not a safetensors file (header length ${headerLength} exceeds the file size ${total})`);
  }
  if (8 + headerLength > buf.length) fail(`need ${8 + headerLength} bytes to read the header, got ${buf.length}`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', {fatal: true}).decode(buf.subarray(8, 8 + headerLength)));
  } catch (e) {
    // V8's JSON.parse messages quote the text: keep only the position.
    const at = /position (\d+)/.exec((e as Error).message);
    fail(`header is not valid UTF-8 JSON${at == null ? '' : ` (at position ${at[1]})`}`);
  }
  if (json == null || typeof json !== 'object' || Array.isArray(json)) fail('header must be a JSON object');
  const dataStart = 8 + headerLength;
  const dataLength = total - dataStart;
  const entries: SafetensorsEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw == null || typeof raw !== 'object' || Array.isArray(raw) ||
          Object.values(raw).some(v => typeof v !== 'string')) {
        fail('__metadata__ must be an object of strings');
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    entries.push(parseEntry(name, raw));
  }
  // The format requires the data section to be covered exactly, in order, without holes or overlaps.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of sorted) {
    if (e.begin !== cursor) {
      fail(`tensor '${e.name}' starts at byte ${e.begin} but the previous data ends at ${cursor} (overlap or hole)`);
    }
    cursor = e.end;
  }
  if (cursor !== dataLength) {
    fail(`the tensors cover ${cursor} data bytes but the file holds ${dataLength} after the header`);
  }
  return {entries, metadata, dataStart, dataLength};
}

function parseEntry(name: string, raw: unknown): SafetensorsEntry {
  if (raw == null || typeof raw !== 'object' || Array.isArray(raw)) fail(`entry '${name}' must be an object`);
  const {dtype, shape, data_offsets: offsets} = raw as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in BYTES_PER_ELEMENT)) {
    fail(`tensor '${name}' has unsupported dtype ${JSON.stringify(dtype)} (supported: ${
        Object.keys(BYTES_PER_ELEMENT).join(', ')})`);
  }
  if (!Array.isArray(shape) || shape.some(d => !Number.isSafeInteger(d) || d < 0)) {
    fail(`tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || offsets.some(o => !Number.isSafeInteger(o) || o < 0) ||
      offsets[0] > offsets[1]) {
    fail(`tensor '${name}' has invalid data_offsets ${JSON.stringify(offsets)}`);
  }
  const numel = (shape as number[]).reduce((a, b) => a * b, 1);
  const expectedBytes = numel * BYTES_PER_ELEMENT[dtype as SafetensorsDtype];
  const [begin, end] = offsets as number[];
  if (end - begin !== expectedBytes) {
    fail(`tensor '${name}' (${dtype} [${shape}]) needs ${expectedBytes} bytes but data_offsets span ${end - begin}`);
  }
  return {name, dtype: dtype as SafetensorsDtype, shape: shape as number[], begin, end};
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Copies `bytes` into a fresh buffer so typed-array views are aligned (file offsets need not be). */
function aligned(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer;
}

let halfTable: Float32Array | null = null;
/** float16 bit pattern -> float32 value, for all 65536 patterns (built once on first use). */
function halfToFloatTable(): Float32Array {
  if (halfTable != null) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    halfTable[h] = exponent === 0 ? sign * mantissa * 2 ** -24 :
        exponent === 31 ? (mantissa === 0 ? sign * Infinity : NaN) :
                          sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  return halfTable;
}

function readUint16s(bytes: Uint8Array, count: number): Uint16Array {
  if (LITTLE_ENDIAN_HOST) return new Uint16Array(aligned(bytes), 0, count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Uint16Array.from({length: count}, (_, i) => view.getUint16(2 * i, true));
}

/** Decodes one tensor from exactly its data bytes. */
export function decodeSafetensor(entry: SafetensorsEntry, bytes: Uint8Array): tf.Tensor {
  const {name, dtype, shape} = entry;
  const numel = shape.reduce((a, b) => a * b, 1);
  if (bytes.length !== numel * BYTES_PER_ELEMENT[dtype]) {
    fail(`tensor '${name}': got ${bytes.length} data bytes, expected ${numel * BYTES_PER_ELEMENT[dtype]}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32':
      return tf.tensor(LITTLE_ENDIAN_HOST ? new Float32Array(aligned(bytes), 0, numel) :
                                            Float32Array.from({length: numel}, (_, i) => view.getFloat32(4 * i, true)),
          shape, 'float32');
    case 'F64': {
      const out = new Float32Array(numel);
      for (let i = 0; i < numel; i++) {
        const v = view.getFloat64(8 * i, true);
        out[i] = v;
        // Like I64's range check: a finite value that float32 cannot hold is an error, not a silent Infinity.
        if (out[i] === Infinity || out[i] === -Infinity) {
          if (Number.isFinite(v)) {
            fail(`tensor '${name}' (F64) holds ${v} at flat index ${i}, outside the float32 range tfjs can hold`);
          }
        }
      }
      return tf.tensor(out, shape, 'float32');
    }
    case 'F16': {
      const table = halfToFloatTable(), half = readUint16s(bytes, numel), out = new Float32Array(numel);
      for (let i = 0; i < numel; i++) out[i] = table[half[i]];
      return tf.tensor(out, shape, 'float32');
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: shift the bits into place.
      const half = readUint16s(bytes, numel), bits = new Uint32Array(numel);
      for (let i = 0; i < numel; i++) bits[i] = half[i] << 16;
      return tf.tensor(new Float32Array(bits.buffer), shape, 'float32');
    }
    case 'I32':
      return tf.tensor(LITTLE_ENDIAN_HOST ? new Int32Array(aligned(bytes), 0, numel) :
                                            Int32Array.from({length: numel}, (_, i) => view.getInt32(4 * i, true)),
          shape, 'int32');
    case 'I64': {
      const out = new Int32Array(numel);
      for (let i = 0; i < numel; i++) {
        const lo = view.getUint32(8 * i, true), hi = view.getInt32(8 * i + 4, true);
        // In int32 range iff the high word is the sign extension of the low word.
        if (hi !== (lo >= 0x80000000 ? -1 : 0)) {
          fail(`tensor '${name}' (I64) holds ${BigInt(hi) * 2n ** 32n + BigInt(lo)} at flat index ${i}, ` +
              'outside the int32 range tfjs can hold');
        }
        out[i] = lo | 0;
      }
      return tf.tensor(out, shape, 'int32');
    }
    case 'I16':
      return tf.tensor(Int32Array.from({length: numel}, (_, i) => view.getInt16(2 * i, true)), shape, 'int32');
    case 'I8':
      return tf.tensor(Int32Array.from({length: numel}, (_, i) => view.getInt8(i)), shape, 'int32');
    case 'U8':
      return tf.tensor(Int32Array.from(bytes), shape, 'int32');
    case 'BOOL':
      return tf.tensor(Uint8Array.from(bytes, b => (b !== 0 ? 1 : 0)), shape, 'bool');
  }
}

/** Options of {@link readSafetensors}. */
export interface ReadSafetensorsOptions {
  /** Only these tensors (names, or a predicate); the rest are validated but not decoded. */
  names?: readonly string[] | ((name: string) => boolean);
  /**
   * Return F16 / BF16 / U8 / I8 tensors as their raw bytes (RawSafetensor, a view into `bytes`: no copy, no float32
   * expansion) instead of tensors, for packed expert weights (fromPackedHalf, fromGptOssMxfp4, loadHuggingFaceMoe).
   */
  keepDtype?: boolean;
}

/** A tensor kept in its file dtype (readSafetensors with keepDtype): its little-endian bytes, a view into the file. */
export interface RawSafetensor {
  dtype: 'F16' | 'BF16' | 'U8' | 'I8';
  shape: number[];
  data: Uint8Array;
}

const KEPT_DTYPES: ReadonlySet<SafetensorsDtype> = new Set(['F16', 'BF16', 'U8', 'I8']);

/** Whether a value is a RawSafetensor (rather than a tf.Tensor). */
export function isRawSafetensor(v: unknown): v is RawSafetensor {
  return v != null && typeof v === 'object' && !(v instanceof tf.Tensor) && (v as RawSafetensor).data instanceof Uint8Array &&
      KEPT_DTYPES.has((v as RawSafetensor).dtype);
}

/** With `keepDtype`, F16 / BF16 / U8 / I8 data as a RawSafetensor viewing `data`; otherwise (or another dtype) decoded. */
export function keepOrDecode(entry: SafetensorsEntry, data: Uint8Array, keepDtype: boolean): tf.Tensor | RawSafetensor {
  return keepDtype && KEPT_DTYPES.has(entry.dtype) ?
      {dtype: entry.dtype as RawSafetensor['dtype'], shape: entry.shape, data} : decodeSafetensor(entry, data);
}

/** The float32 tensor a RawSafetensor stands for (exact for F16 / BF16). */
export function decodeRawSafetensor(name: string, raw: RawSafetensor): tf.Tensor {
  return decodeSafetensor({name, dtype: raw.dtype, shape: raw.shape, begin: 0, end: raw.data.length}, raw.data);
}

/**
 * Decodes a safetensors file into tensors keyed by name: F32/F16/BF16/F64 -> float32, I32/I64/I16/I8/U8 ->
 * int32 (I64 outside int32 throws), BOOL -> bool. Throws on any malformed header or offset, naming the tensor.
 * On failure no tensor survives.
 */
export function readSafetensors(bytes: Uint8Array | ArrayBuffer, options?: ReadSafetensorsOptions & {keepDtype?: false}):
    Record<string, tf.Tensor>;
export function readSafetensors(bytes: Uint8Array | ArrayBuffer, options: ReadSafetensorsOptions):
    Record<string, tf.Tensor | RawSafetensor>;
export function readSafetensors(bytes: Uint8Array | ArrayBuffer, options: ReadSafetensorsOptions = {}):
    Record<string, tf.Tensor | RawSafetensor> {
  const buf = toBytes(bytes);
  const wanted = nameFilter(options);
  const header = parseSafetensorsHeader(buf);
  if (wanted.names != null) {
    const present = new Set(header.entries.map(e => e.name));
    const missing = wanted.names.filter(n => !present.has(n));
    if (missing.length > 0) fail(`requested tensors not in the file: ${missing.join(', ')}`);
  }
  // Null prototype: a tensor named '__proto__' or 'constructor' is an own key like any other, never a setter.
  const out: Record<string, tf.Tensor | RawSafetensor> = Object.create(null);
  try {
    for (const entry of header.entries) {
      if (!wanted.test(entry.name)) continue;
      const data = buf.subarray(header.dataStart + entry.begin, header.dataStart + entry.end);
      out[entry.name] = keepOrDecode(entry, data, options.keepDtype === true);
    }
  } catch (e) {
    Object.values(out).forEach(t => { if (t instanceof tf.Tensor) t.dispose(); });
    throw e;
  }
  return out;
}

/** options.names as a test; a list is looked up in a Set (names x entries would be quadratic). */
function nameFilter(options: unknown): {test: (name: string) => boolean, names: string[] | null} {
  if (options == null) return {test: () => true, names: null};
  if (typeof options !== 'object' || Array.isArray(options)) {
    fail(`argument 'options' must be an options object {names?}, got ${describeValue(options)}`);
  }
  const names = (options as ReadSafetensorsOptions).names;
  if (names == null) return {test: () => true, names: null};
  if (typeof names === 'function') return {test: name => names(name) === true, names: null};
  if (!Array.isArray(names) || names.some(n => typeof n !== 'string')) {
    fail(`option 'names' must be an array of tensor names or a predicate, got ${describeValue(names)}`);
  }
  const set = new Set(names as string[]);
  return {test: name => set.has(name), names: [...set]};
}
