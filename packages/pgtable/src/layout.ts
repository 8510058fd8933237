import { Errno, KernelError } from "@vsva/kernel";
import type { PhysMem } from "./mem/phys-mem.js";

/**
 * Declarative bit layouts: an entry or register is declared once
 * as data, field name -> bit range (and access, for registers), and every
 * reader, writer, encoder and reserved-bit mask is derived from that
 * declaration. No magic shifts elsewhere.
 *
 * A value of the layout is a `Uint32Array` of its dwords, little-endian
 * (dword 0 holds bits 31:0). Fields are at most 53 bits wide so they fit a JS
 * number exactly; wider architectural fields are declared as parts.
 */

/** How software may access a register field (VT-d and SMMUv3 spec notation). */
export type FieldAccess = "RW" | "RO" | "RW1C" | "RW1CS" | "RW1S" | "WO" | "RsvdZ" | "RsvdP";

export interface FieldSpec {
  readonly msb: number;
  readonly lsb: number;
  readonly access?: FieldAccess;
}

/** `[msb, lsb]` shorthand or a full spec. */
export type FieldDecl = readonly [msb: number, lsb: number] | FieldSpec;

interface FieldPlan {
  readonly lsb: number;
  readonly width: number;
  readonly access: FieldAccess;
  /** dword index of the lsb */
  readonly word: number;
  readonly shift: number;
  /** set when the field lies inside one dword: the mask after shifting down */
  readonly singleMask: number;
}

export interface Layout<F extends string> {
  readonly name: string;
  readonly bits: number;
  readonly dwords: number;
  readonly fieldNames: readonly F[];
  /** Bit range and access of a field. */
  spec(field: F): Required<FieldSpec>;
  /** A zeroed value of this layout. */
  alloc(): Uint32Array;
  get(v: Uint32Array, field: F): number;
  set(v: Uint32Array, field: F, value: number): void;
  /**
   * Field value shifted to its position within its own 64-bit word (for
   * address fields: the address). Wide entries are made of qwords and an
   * address field's low bits are implied zeros of its qword, so a field at
   * bits 139:140 of a PASID entry holds `addr >> 12`, not `addr >> 140`.
   */
  getAddr(v: Uint32Array, field: F): number;
  /** Stores the address shifted down by the field's lsb within its qword; lower bits must be zero. */
  setAddr(v: Uint32Array, field: F, addr: number): void;
  encode(values: Partial<Record<F, number>>): Uint32Array;
  decode(v: Uint32Array): Record<F, number>;
  /** Per dword, the bits no field covers plus fields declared RsvdZ/RsvdP. */
  readonly reservedMask: Uint32Array;
  /** True if any reserved bit of `v` is set. */
  hasReservedBits(v: Uint32Array): boolean;
  /** Reads the whole value from memory into `into`; false on abort. Counts one reference per 8 bytes. */
  read(mem: PhysMem, pa: number, into: Uint32Array): boolean;
  write(mem: PhysMem, pa: number, v: Uint32Array): boolean;
  /** Single-bit field test, the common case in walkers. */
  bit(field: F): { readonly word: number; readonly mask: number };
}

function normalise(d: FieldDecl): Required<FieldSpec> {
  if (Array.isArray(d)) {
    const [msb, lsb] = d as readonly [number, number];
    return { msb, lsb, access: "RW" };
  }
  const s = d as FieldSpec;
  return { msb: s.msb, lsb: s.lsb, access: s.access ?? "RW" };
}

export function defineLayout<const F extends string>(
  name: string,
  bits: number,
  fields: Readonly<Record<F, FieldDecl>>,
): Layout<F> {
  if (bits % 32 !== 0 || bits <= 0) throw new Error(`${name}: layout width ${bits} must be a multiple of 32`);
  const dwords = bits / 32;
  const specs = new Map<F, Required<FieldSpec>>();
  const plans = new Map<F, FieldPlan>();
  const covered = new Uint32Array(dwords);
  const reservedMask = new Uint32Array(dwords);
  const names = Object.keys(fields) as F[];

  for (const f of names) {
    const s = normalise(fields[f]);
    const width = s.msb - s.lsb + 1;
    if (s.lsb < 0 || s.msb >= bits || width < 1 || width > 53) {
      throw new Error(`${name}.${f}: bad bit range ${s.msb}:${s.lsb}`);
    }
    for (let b = s.lsb; b <= s.msb; b++) {
      const w = b >>> 5;
      const m = 1 << (b & 31);
      if (((covered[w] ?? 0) & m) !== 0) throw new Error(`${name}.${f}: bit ${b} overlaps another field`);
      covered[w] = ((covered[w] ?? 0) | m) >>> 0;
      if (s.access === "RsvdZ" || s.access === "RsvdP") reservedMask[w] = ((reservedMask[w] ?? 0) | m) >>> 0;
    }
    const shift = s.lsb & 31;
    const single = shift + width <= 32;
    specs.set(f, s);
    plans.set(f, {
      lsb: s.lsb,
      width,
      access: s.access,
      word: s.lsb >>> 5,
      shift,
      singleMask: single ? (width === 32 ? 0xffff_ffff : (1 << width) - 1) >>> 0 : 0,
    });
  }
  for (let w = 0; w < dwords; w++) reservedMask[w] = ((reservedMask[w] ?? 0) | ~(covered[w] ?? 0)) >>> 0;

  const plan = (f: F): FieldPlan => {
    const p = plans.get(f);
    if (p === undefined) throw new Error(`${name}: no field ${f}`);
    return p;
  };

  function get(v: Uint32Array, f: F): number {
    const p = plan(f);
    // `>>> 0`: a field of a whole dword would otherwise read back as a negative int32.
    if (p.singleMask !== 0) return (((v[p.word] ?? 0) >>> p.shift) & p.singleMask) >>> 0;
    // Multi-dword: gather bit by dword chunks with multiplication (no BigInt).
    let value = 0;
    let got = 0;
    let bit = p.lsb;
    while (got < p.width) {
      const w = bit >>> 5;
      const sh = bit & 31;
      const take = Math.min(32 - sh, p.width - got);
      const mask = take === 32 ? 0xffff_ffff : (1 << take) - 1;
      const chunk = ((v[w] ?? 0) >>> sh) & mask;
      value += (chunk >>> 0) * 2 ** got;
      got += take;
      bit += take;
    }
    return value;
  }

  function set(v: Uint32Array, f: F, value: number): void {
    const p = plan(f);
    if (!Number.isInteger(value) || value < 0 || value >= 2 ** p.width) {
      throw new KernelError(Errno.ERANGE, `${name}.${f}: value ${value} does not fit ${p.width} bits`);
    }
    let rest = value;
    let put = 0;
    let bit = p.lsb;
    while (put < p.width) {
      const w = bit >>> 5;
      const sh = bit & 31;
      const take = Math.min(32 - sh, p.width - put);
      const mask = take === 32 ? 0xffff_ffff : (1 << take) - 1;
      const chunk = rest % 2 ** take;
      rest = Math.floor(rest / 2 ** take);
      v[w] = (((v[w] ?? 0) & ~((mask << sh) >>> 0)) | ((chunk & mask) << sh)) >>> 0;
      put += take;
      bit += take;
    }
  }

  const layout: Layout<F> = {
    name,
    bits,
    dwords,
    fieldNames: names,
    spec(f) {
      const s = specs.get(f);
      if (s === undefined) throw new Error(`${name}: no field ${f}`);
      return s;
    },
    alloc: () => new Uint32Array(dwords),
    get,
    set,
    getAddr: (v, f) => get(v, f) * 2 ** (plan(f).lsb & 63),
    setAddr(v, f, addr) {
      const unit = 2 ** (plan(f).lsb & 63);
      if (addr % unit !== 0) {
        throw new KernelError(Errno.EINVAL, `${name}.${f}: address 0x${addr.toString(16)} is not ${unit}-byte aligned`);
      }
      set(v, f, addr / unit);
    },
    encode(values) {
      const v = new Uint32Array(dwords);
      for (const f of Object.keys(values) as F[]) {
        const x = values[f];
        if (x !== undefined) set(v, f, x);
      }
      return v;
    },
    decode(v) {
      const out = {} as Record<F, number>;
      for (const f of names) out[f] = get(v, f);
      return out;
    },
    reservedMask,
    hasReservedBits(v) {
      for (let w = 0; w < dwords; w++) if ((((v[w] ?? 0) & (reservedMask[w] ?? 0)) >>> 0) !== 0) return true;
      return false;
    },
    read(mem, pa, into) {
      const tmp = { lo: 0, hi: 0 };
      for (let w = 0; w < dwords; w += 2) {
        if (w + 1 < dwords) {
          if (!mem.read64(pa + w * 4, tmp)) return false;
          into[w] = tmp.lo;
          into[w + 1] = tmp.hi;
        } else {
          const x = mem.read32(pa + w * 4);
          if (x < 0) return false;
          into[w] = x;
        }
      }
      return true;
    },
    write(mem, pa, v) {
      for (let w = 0; w < dwords; w += 2) {
        const ok = w + 1 < dwords ? mem.write64(pa + w * 4, v[w] ?? 0, v[w + 1] ?? 0) : mem.write32(pa + w * 4, v[w] ?? 0);
        if (!ok) return false;
      }
      return true;
    },
    bit(f) {
      const p = plan(f);
      if (p.width !== 1) throw new Error(`${name}.${f} is not a single bit`);
      return { word: p.word, mask: (1 << p.shift) >>> 0 };
    },
  };
  return layout;
}
