import { Errno, KernelError } from "@vsva/kernel";

/**
 * C structs that cross the user/kernel boundary, declared once as data
 * (field name -> offset, type, size) and read and written only through the
 * accessors derived here. Integers are little-endian (x86-64 and arm64 hosts),
 * offsets are the natural C alignment of those ABIs (include/uapi/linux/iommu.h of v5.10).
 *
 * u64 fields read as `bigint`: a user can put any 64-bit value there and the
 * boundary must see it exactly, not rounded to a double. This is not a hot path.
 */
export type ScalarType = "u8" | "u16" | "u32" | "u64";

export type FieldDecl = readonly [offset: number, type: ScalarType] | readonly [offset: number, type: "bytes", size: number];

type ValueOf<D> = D extends readonly [number, "u64"] ? bigint : D extends readonly [number, "bytes", number] ? Uint8Array : number;

const SCALAR_SIZE: Readonly<Record<ScalarType, number>> = { u8: 1, u16: 2, u32: 4, u64: 8 };

export interface StructLayout<D extends Readonly<Record<string, FieldDecl>>> {
  readonly name: string;
  /** `sizeof(struct ...)`. */
  readonly size: number;
  readonly fields: D;
  offsetOf(field: keyof D & string): number;
  /** `offsetofend()`: the first byte after the field. */
  offsetOfEnd(field: keyof D & string): number;
  /** Reads a field of the struct that starts at `base` in `buf` (the caller has checked the bounds). */
  get<K extends keyof D & string>(buf: Uint8Array, field: K, base?: number): ValueOf<D[K]>;
  set<K extends keyof D & string>(buf: Uint8Array, field: K, value: ValueOf<D[K]>, base?: number): void;
  /** True when every byte of the field is zero (reserved and padding checks). */
  isZero(buf: Uint8Array, field: keyof D & string, base?: number): boolean;
}

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Declares a struct. The declaration is checked once, here: scalars naturally
 * aligned, no two fields overlapping, every field inside `size`. A typo in an
 * offset table is a programming error, so it throws at module load.
 */
export function defineStruct<const D extends Readonly<Record<string, FieldDecl>>>(name: string, size: number, fields: D): StructLayout<D> {
  const plan = new Map<string, { offset: number; size: number; type: ScalarType | "bytes" }>();
  const covered = new Uint8Array(size);
  for (const [field, decl] of Object.entries(fields)) {
    const offset = decl[0];
    const type = decl[1];
    const width = decl[1] === "bytes" ? decl[2] : SCALAR_SIZE[decl[1]];
    if (type !== "bytes" && offset % width !== 0) {
      throw new KernelError(Errno.EINVAL, `${name}.${field}: ${type} at offset ${offset} is not naturally aligned`);
    }
    if (offset < 0 || width <= 0 || offset + width > size) {
      throw new KernelError(Errno.EINVAL, `${name}.${field}: [${offset}, ${offset + width}) lies outside ${size} bytes`);
    }
    for (let i = offset; i < offset + width; i++) {
      if (covered[i] !== 0) throw new KernelError(Errno.EINVAL, `${name}.${field}: overlaps another field at byte ${i}`);
      covered[i] = 1;
    }
    plan.set(field, { offset, size: width, type });
  }
  const spec = (field: string) => {
    const p = plan.get(field);
    if (p === undefined) throw new KernelError(Errno.EINVAL, `${name} has no field ${field}`);
    return p;
  };

  return {
    name,
    size,
    fields,
    offsetOf: (field) => spec(field).offset,
    offsetOfEnd: (field) => {
      const p = spec(field);
      return p.offset + p.size;
    },
    get(buf, field, base = 0) {
      const p = spec(field);
      const at = base + p.offset;
      const dv = view(buf);
      switch (p.type) {
        case "u8":
          return dv.getUint8(at) as ValueOf<D[typeof field]>;
        case "u16":
          return dv.getUint16(at, true) as ValueOf<D[typeof field]>;
        case "u32":
          return dv.getUint32(at, true) as ValueOf<D[typeof field]>;
        case "u64":
          return dv.getBigUint64(at, true) as ValueOf<D[typeof field]>;
        case "bytes":
          return buf.slice(at, at + p.size) as ValueOf<D[typeof field]>;
      }
    },
    set(buf, field, value, base = 0) {
      const p = spec(field);
      const at = base + p.offset;
      const dv = view(buf);
      switch (p.type) {
        case "u8":
          dv.setUint8(at, value as number);
          return;
        case "u16":
          dv.setUint16(at, value as number, true);
          return;
        case "u32":
          dv.setUint32(at, value as number, true);
          return;
        case "u64":
          dv.setBigUint64(at, value as bigint, true);
          return;
        case "bytes": {
          const bytes = value as Uint8Array;
          if (bytes.length !== p.size) throw new KernelError(Errno.EINVAL, `${name}.${field} takes ${p.size} bytes, got ${bytes.length}`);
          buf.set(bytes, at);
          return;
        }
      }
    },
    isZero(buf, field, base = 0) {
      const p = spec(field);
      for (let i = base + p.offset; i < base + p.offset + p.size; i++) if (buf[i] !== 0) return false;
      return true;
    },
  };
}

/**
 * `copy_from_user()`: the user buffer is the bytes the user mapped at the
 * pointer it passed; reading past them faults. Copies `len` bytes from user
 * offset `from` into `into` at the same offset.
 */
export function copyFromUser(user: Uint8Array, into: Uint8Array, from: number, len: number): void {
  if (len <= 0) return;
  if (from + len > user.length) {
    throw new KernelError(Errno.EFAULT, `copy_from_user of [${from}, ${from + len}) beyond the ${user.length} user bytes`);
  }
  into.set(user.subarray(from, from + len), from);
}

/** `copy_to_user()`: the same rule the other way. */
export function copyToUser(user: Uint8Array, from: Uint8Array, at: number, len: number): void {
  if (len <= 0) return;
  if (at + len > user.length) {
    throw new KernelError(Errno.EFAULT, `copy_to_user of [${at}, ${at + len}) beyond the ${user.length} user bytes`);
  }
  user.set(from.subarray(at, at + len), at);
}

/** The user's `argsz`, the u32 every struct of the series starts with. Fewer than 4 mapped bytes fault. */
export function readArgsz(user: Uint8Array): number {
  if (user.length < 4) throw new KernelError(Errno.EFAULT, `argsz needs 4 user bytes, ${user.length} mapped`);
  return view(user).getUint32(0, true);
}

/**
 * How bytes past the struct the kernel knows are treated when the user's
 * argsz is larger.
 *
 * - `"ignore"` is what the series merged (drivers/iommu/iommu.c v5.10–v5.14,
 *   `iommu_sva_prepare_bind_data` / `iommu_uapi_cache_invalidate`): copy
 *   `min(argsz, sizeof)` and never look at the rest, so a newer user header
 *   keeps working on an older kernel.
 * - `"strict"` is `copy_struct_from_user()` (and iommufd): the tail must be
 *   zero or the call fails with E2BIG, for prototyping the stricter ABI.
 */
export type TrailingBytesRule = "ignore" | "strict";

/**
 * Checks the tail `[known, argsz)` under the strict rule. Unmapped tail bytes
 * fault first, as `check_zeroed_user()` reading them would.
 */
export function checkTail(user: Uint8Array, known: number, argsz: number, rule: TrailingBytesRule): void {
  if (rule === "ignore" || argsz <= known) return;
  if (argsz > user.length) throw new KernelError(Errno.EFAULT, `argsz ${argsz} beyond the ${user.length} user bytes`);
  for (let i = known; i < argsz; i++) {
    if (user[i] !== 0) throw new KernelError(Errno.E2BIG, `non-zero byte at ${i} past the ${known} bytes this kernel knows`);
  }
}
