import { Errno, KernelError } from "@vsva/kernel";
import type { FieldAccess, Layout } from "@vsva/pgtable";

/**
 * A 4 KiB PCI Express configuration space: the access machinery only. What
 * lives in it (header, capabilities) is placed by `endpoint-config.ts` from
 * layouts declared in `regs.ts`.
 *
 * Storage is 1024 little-endian dwords, so a placed register's value is a
 * `Uint32Array` view that its `Layout` reads and writes directly. Every placed
 * field's access (from its declaration) is folded into three per-dword masks:
 *
 * - writable: `RW` and `WO` bits take the written value;
 * - write-1-to-clear: `RW1C`/`RW1CS` bits are cleared where a 1 is written;
 * - write-only: `WO` bits are seen by the write hook, then read back as 0.
 *
 * Everything else (RO, reserved, and offsets where nothing is placed) ignores
 * writes; unplaced offsets read 0, as an unimplemented register must.
 *
 * Configuration accesses come from drivers, guests and VMMs, so they never
 * throw: an access of a size other than 1, 2 or 4 bytes, crossing a dword, or
 * outside the 4 KiB reads all-ones and writes nothing (what a root complex
 * returns for a request it cannot complete).
 */
export const PCI_CFG_SPACE_EXP_SIZE = 4096;
const DWORDS = PCI_CFG_SPACE_EXP_SIZE / 4;

/** `(before, after)` views of a register: `after` still holds written WO bits during the hook. */
export type WriteHook = (before: Uint32Array, after: Uint32Array) => void;

export interface PlaceOptions<F extends string> {
  /** Initial (reset) field values. */
  readonly init?: Partial<Record<F, number>>;
  /**
   * Fields this instance implements as read-only even though the layout
   * declares them writable: an enable bit for an optional feature the device
   * lacks (PASID Execute Permission Enable without execute support) is
   * hardwired to its reset value, as PCIe requires.
   */
  readonly hardwire?: readonly F[];
}

interface HookEntry {
  readonly reg: Register<string>;
  readonly fn: WriteHook;
}

const WRITABLE: ReadonlySet<FieldAccess> = new Set(["RW", "WO"]);
const W1C: ReadonlySet<FieldAccess> = new Set(["RW1C", "RW1CS"]);

function fieldMask(lsb: number, msb: number, dword: number): number {
  // Bits of [msb:lsb] (layout-relative) that fall into layout dword `dword`.
  const lo = Math.max(lsb, dword * 32);
  const hi = Math.min(msb, dword * 32 + 31);
  if (lo > hi) return 0;
  const width = hi - lo + 1;
  return (width === 32 ? 0xffff_ffff : ((1 << width) - 1) << (lo & 31)) >>> 0;
}

/** A register block placed at a config-space offset, read and written by field name. */
export class Register<F extends string> {
  /** Live view of the register's dwords in the config space. */
  readonly view: Uint32Array;

  constructor(
    readonly offset: number,
    readonly layout: Layout<F>,
    words: Uint32Array,
  ) {
    this.view = words.subarray(offset >>> 2, (offset >>> 2) + layout.dwords);
  }

  get(field: F): number {
    return this.layout.get(this.view, field);
  }

  flag(field: F): boolean {
    return this.layout.get(this.view, field) !== 0;
  }

  /** Device-side update: bypasses the software access rules (hardware sets RO and RW1C status bits). */
  set(field: F, value: number): void {
    this.layout.set(this.view, field, value);
  }

  setFlag(field: F, on: boolean): void {
    this.layout.set(this.view, field, on ? 1 : 0);
  }

  /** Field value as it was in a `before` snapshot handed to a write hook. */
  getIn(v: Uint32Array, field: F): number {
    return this.layout.get(v, field);
  }
}

export class ConfigSpace {
  readonly words = new Uint32Array(DWORDS);
  readonly #writable = new Uint32Array(DWORDS);
  readonly #w1c = new Uint32Array(DWORDS);
  readonly #writeOnly = new Uint32Array(DWORDS);
  /** Dwords already claimed by a placed register (overlaps are a construction bug). */
  readonly #claimed = new Uint8Array(DWORDS);
  readonly #hooks = new Map<number, HookEntry[]>();
  readonly #resetImage = new Uint32Array(DWORDS);

  /**
   * Places `layout` at `offset` (dword aligned). Throws EINVAL when the block
   * falls outside the space or overlaps another (a device-model bug, not guest input).
   */
  place<F extends string>(offset: number, layout: Layout<F>, opts: PlaceOptions<F> = {}): Register<F> {
    if (!Number.isInteger(offset) || offset % 4 !== 0 || offset < 0 || offset + layout.dwords * 4 > PCI_CFG_SPACE_EXP_SIZE) {
      throw new KernelError(Errno.EINVAL, `${layout.name}: offset 0x${offset.toString(16)} is not a dword inside config space`);
    }
    const first = offset >>> 2;
    for (let d = 0; d < layout.dwords; d++) {
      if (this.#claimed[first + d] !== 0) {
        throw new KernelError(Errno.EINVAL, `${layout.name} at 0x${offset.toString(16)} overlaps another register`);
      }
    }
    const hardwired = new Set<F>(opts.hardwire ?? []);
    for (let d = 0; d < layout.dwords; d++) {
      const i = first + d;
      this.#claimed[i] = 1;
      let writable = 0;
      let w1c = 0;
      let wo = 0;
      for (const f of layout.fieldNames) {
        const s = layout.spec(f);
        const m = fieldMask(s.lsb, s.msb, d);
        if (m === 0 || hardwired.has(f)) continue;
        if (WRITABLE.has(s.access)) writable |= m;
        if (W1C.has(s.access)) w1c |= m;
        if (s.access === "WO") wo |= m;
      }
      this.#writable[i] = writable >>> 0;
      this.#w1c[i] = w1c >>> 0;
      this.#writeOnly[i] = wo >>> 0;
    }
    const reg = new Register(offset, layout, this.words);
    for (const [f, v] of Object.entries(opts.init ?? {}) as [F, number | undefined][]) {
      if (v !== undefined) reg.set(f, v);
    }
    this.#resetImage.set(reg.view, first);
    return reg;
  }

  /** Runs `fn` after every software write that touches any dword of `reg`. */
  onWrite<F extends string>(reg: Register<F>, fn: WriteHook): void {
    const entry: HookEntry = { reg, fn };
    for (let d = 0; d < reg.layout.dwords; d++) {
      const i = (reg.offset >>> 2) + d;
      const list = this.#hooks.get(i);
      if (list === undefined) this.#hooks.set(i, [entry]);
      else list.push(entry);
    }
  }

  /** Restores every placed register to its value at placement (a Function Level Reset of the config state). */
  reset(): void {
    this.words.set(this.#resetImage);
  }

  /** Software read of 1, 2 or 4 bytes. All-ones for an access that cannot complete. */
  read(offset: number, size: number): number {
    const shift = ConfigSpace.#shiftOf(offset, size);
    if (shift < 0) return ConfigSpace.#allOnes(size);
    const dw = this.words[offset >>> 2] ?? 0;
    return size === 4 ? dw >>> 0 : (dw >>> shift) & ((1 << (size * 8)) - 1);
  }

  /** Software write of 1, 2 or 4 bytes, honouring RO, RW1C and WO bits. Never throws. */
  write(offset: number, size: number, value: number): void {
    const shift = ConfigSpace.#shiftOf(offset, size);
    if (shift < 0 || !Number.isFinite(value)) return;
    const i = offset >>> 2;
    const lanes = (size === 4 ? 0xffff_ffff : ((1 << (size * 8)) - 1) << shift) >>> 0;
    const val = ((value >>> 0) << shift) & lanes;
    const hooks = this.#hooks.get(i);
    const before = hooks?.map((h) => h.reg.view.slice());
    const old = this.words[i] ?? 0;
    const wr = (this.#writable[i] ?? 0) & lanes;
    const clear = (this.#w1c[i] ?? 0) & val;
    const next = (((old & ~wr) | (val & wr)) & ~clear) >>> 0;
    this.words[i] = next;
    if (hooks !== undefined && before !== undefined) {
      hooks.forEach((h, k) => {
        const snap = before[k];
        if (snap !== undefined) h.fn(snap, h.reg.view);
      });
    }
    // Write-only bits (PRI Reset, Initiate FLR) act through the hook and read back as zero.
    this.words[i] = ((this.words[i] ?? 0) & ~(this.#writeOnly[i] ?? 0)) >>> 0;
  }

  /** Shift of the access within its dword, or -1 when it cannot be performed. */
  static #shiftOf(offset: number, size: number): number {
    if (size !== 1 && size !== 2 && size !== 4) return -1;
    if (!Number.isInteger(offset) || offset < 0 || offset + size > PCI_CFG_SPACE_EXP_SIZE) return -1;
    const within = offset & 3;
    if (within + size > 4) return -1;
    return within * 8;
  }

  static #allOnes(size: number): number {
    if (size === 1) return 0xff;
    if (size === 2) return 0xffff;
    return 0xffff_ffff;
  }
}

/** Standard capability list walk (software view, as `pci_find_capability`): offset of `capId`, or 0. */
export function findCapability(cfg: ConfigSpace, capId: number): number {
  const PCI_STATUS_CAP_LIST = 0x10;
  if ((cfg.read(0x06, 2) & PCI_STATUS_CAP_LIST) === 0) return 0;
  let pos = cfg.read(0x34, 1) & 0xfc;
  // A malformed list can loop; 48 is the most capabilities 192 bytes can hold.
  for (let ttl = 48; ttl > 0 && pos >= 0x40; ttl--) {
    const hdr = cfg.read(pos, 2);
    if ((hdr & 0xff) === capId) return pos;
    pos = (hdr >>> 8) & 0xfc;
  }
  return 0;
}

/** Extended capability list walk from 0x100 (as `pci_find_ext_capability`): offset of `capId`, or 0. */
export function findExtCapability(cfg: ConfigSpace, capId: number): number {
  let pos = 0x100;
  // Each capability is at least 8 bytes: (4096 - 256) / 8 bounds a looping list.
  for (let ttl = (PCI_CFG_SPACE_EXP_SIZE - 0x100) / 8; ttl > 0 && pos >= 0x100; ttl--) {
    const hdr = cfg.read(pos, 4);
    if (hdr === 0) return 0;
    if ((hdr & 0xffff) === capId) return pos;
    pos = (hdr >>> 20) & 0xffc;
  }
  return 0;
}
