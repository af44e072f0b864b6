/** A small safetensors writer for the specs (the package only reads): raw little-endian bytes per tensor. */

export interface RawTensor {
  dtype: string;
  shape: number[];
  /** Exactly the tensor's bytes, little-endian. */
  bytes: Uint8Array;
}

export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  const view = new DataView(new ArrayBuffer(values.length * 4));
  for (let i = 0; i < values.length; i++) view.setFloat32(4 * i, values[i], true);
  return new Uint8Array(view.buffer);
}

export function f64Bytes(values: ArrayLike<number>): Uint8Array {
  const view = new DataView(new ArrayBuffer(values.length * 8));
  for (let i = 0; i < values.length; i++) view.setFloat64(8 * i, values[i], true);
  return new Uint8Array(view.buffer);
}

export function u16Bytes(bits: ArrayLike<number>): Uint8Array {
  const view = new DataView(new ArrayBuffer(bits.length * 2));
  for (let i = 0; i < bits.length; i++) view.setUint16(2 * i, bits[i], true);
  return new Uint8Array(view.buffer);
}

export function i32Bytes(values: ArrayLike<number>): Uint8Array {
  const view = new DataView(new ArrayBuffer(values.length * 4));
  for (let i = 0; i < values.length; i++) view.setInt32(4 * i, values[i], true);
  return new Uint8Array(view.buffer);
}

export function i64Bytes(values: Array<bigint>): Uint8Array {
  const view = new DataView(new ArrayBuffer(values.length * 8));
  for (let i = 0; i < values.length; i++) view.setBigInt64(8 * i, values[i], true);
  return new Uint8Array(view.buffer);
}

export function f32Tensor(values: ArrayLike<number>, shape: number[]): RawTensor {
  return {dtype: 'F32', shape, bytes: f32Bytes(values)};
}

/**
 * Serializes tensors (in the given order) with an optional header override hook, for building corrupt files.
 * The header is padded with spaces to a multiple of 8 bytes, as the reference writer does.
 */
export function writeSafetensors(
    tensors: Record<string, RawTensor>, metadata?: Record<string, string>,
    editHeader?: (header: Record<string, unknown>) => void): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = {dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length]};
    offset += t.bytes.length;
  }
  editHeader?.(header);
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += ' ';
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of Object.values(tensors)) {
    out.set(t.bytes, at);
    at += t.bytes.length;
  }
  return out;
}
