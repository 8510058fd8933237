import { Errno, KernelError } from "@vsva/kernel";
import type { Layout } from "@vsva/pgtable";

/**
 * Building a unit from ID/capability register images (VT-d CAP/ECAP, SMMUv3
 * IDR0–IDR5), so that it can be made to match a real part. Each unit decodes
 * its image into its named options; what both name must agree, and the
 * registers the unit then builds must read back exactly the image: a field
 * the unit would report differently (a feature the model does not implement,
 * or one it always has) is EINVAL naming that field.
 */

/** One named option a register field decodes to, with the field's name for errors. */
export interface DecodedField<O> {
  readonly key: Extract<keyof O, string>;
  readonly value: unknown;
  /** "CAP.SAGAW", "IDR0.S1P"... */
  readonly field: string;
}

function same(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) {
    const sa = [...(a as unknown[])].map(String).sort();
    const sb = [...(b as unknown[])].map(String).sort();
    return sa.length === sb.length && sa.every((x, i) => x === sb[i]);
  }
  return a === b;
}

/**
 * The options with the image's fields filled in: a named option that the
 * image also gives must have the same value, else EINVAL naming the field.
 */
export function mergeImageOptions<O extends object>(unit: string, o: O, decoded: readonly DecodedField<O>[]): O {
  const out = { ...o } as Record<string, unknown>;
  for (const d of decoded) {
    const given = out[d.key];
    if (given !== undefined && !same(given, d.value)) {
      throw new KernelError(
        Errno.EINVAL,
        `${unit}: option ${d.key} = ${JSON.stringify(given)} disagrees with ${d.field} in the register image (${JSON.stringify(d.value)})`,
      );
    }
    out[d.key] = d.value;
  }
  return out as O;
}

/** A 64-bit register image as the layout's dwords; EINVAL unless a bigint in 0..2^64−1. */
export function image64(unit: string, reg: string, v: unknown): Uint32Array {
  if (typeof v !== "bigint" || v < 0n || v >= 1n << 64n) {
    throw new KernelError(Errno.EINVAL, `${unit}: the ${reg} image must be a bigint in 0..2^64-1`);
  }
  return Uint32Array.of(Number(v & 0xffffffffn), Number(v >> 32n));
}

/** A 32-bit register image; EINVAL unless an integer (number or bigint) in 0..2^32−1. */
export function image32(unit: string, reg: string, v: unknown): Uint32Array {
  const n = typeof v === "bigint" ? (v >= 0n && v < 1n << 32n ? Number(v) : -1) : typeof v === "number" ? v : -1;
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new KernelError(Errno.EINVAL, `${unit}: the ${reg} image must be an integer in 0..2^32-1`);
  }
  return Uint32Array.of(n);
}

/**
 * Checks that the register the unit built from its configuration reads back
 * as the image: every field equal (`why[field]` says what the model does
 * instead, for the fields it cannot take from an image) and no bit set that
 * no field of the layout covers.
 */
export function checkReadBack<F extends string>(
  unit: string,
  layout: Layout<F>,
  built: Uint32Array,
  image: Uint32Array,
  why: Partial<Record<F, string>>,
): void {
  for (const f of layout.fieldNames) {
    const want = layout.get(image, f);
    const have = layout.get(built, f);
    if (want !== have) {
      const reason = why[f] ?? `this model reports ${have}`;
      throw new KernelError(Errno.EINVAL, `${unit}: ${layout.name}.${f} is ${want} in the register image, but ${reason}`);
    }
  }
  for (let w = 0; w < layout.dwords; w++) {
    const extra = ((image[w] ?? 0) & (layout.reservedMask[w] ?? 0)) >>> 0;
    if (extra !== 0) {
      const bit = 31 - Math.clz32(extra & -extra) + 32 * w;
      throw new KernelError(Errno.EINVAL, `${unit}: ${layout.name} bit ${bit} is set in the register image, a field this model does not implement`);
    }
  }
}

/** The dwords of a register as a bigint (64-bit) or number (32-bit), for reading an image back. */
export function imageValue(v: Uint32Array): bigint {
  let x = 0n;
  for (let i = v.length - 1; i >= 0; i--) x = (x << 32n) | BigInt(v[i] ?? 0);
  return x;
}
