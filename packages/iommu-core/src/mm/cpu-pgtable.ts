import {
  type ArmS1Config,
  ArmTableWriter,
  type FirstLevelConfig,
  type Mapping,
  type PhysMem,
  type PteProt,
  TableWriter,
  newArmWalkResult,
  newWalkResult,
  walkFirstLevel,
  walkStage1,
  x86Format,
} from "@vsva/pgtable";

/** Which CPU's page tables an mm builds. */
export type MmArch = "x86-64" | "aarch64";

/**
 * How a device walks an mm's tables, for an SVA driver to check before it
 * points its hardware at them (a VT-d first level walks x86-64 tables, an
 * SMMUv3 CD walks AArch64 ones).
 */
export type PgtableFormat =
  | { readonly arch: "x86-64"; readonly levels: 4 | 5 }
  /** VMSAv8-64 stage 1 through TTB0: `t0sz` = 64 − VA bits; the granule is 4 KiB. */
  | { readonly arch: "aarch64"; readonly granule: 4096; readonly t0sz: number };

/** The table operations the mm needs, whatever the format (both writers plan then apply). */
export interface CpuTableWriter {
  readonly root: number;
  map(va: number, pa: number, size: number, prot: PteProt): void;
  unmap(va: number, size: number): number;
  protect(va: number, size: number, prot: PteProt): void;
  lookup(va: number): Mapping | null;
  tablePages(): number[];
}

/** A CPU's page tables: a writer, and the CPU's own walk (a user-mode access, setting A/D or AF). */
export interface CpuPgtable {
  readonly writer: CpuTableWriter;
  readonly format: PgtableFormat;
  /** End of the user address space (TASK_SIZE). */
  readonly taskSize: number;
  /** The physical address `va` reaches for a user access, or a fault kind. */
  walk(va: number, write: boolean): { ok: true; pa: number } | { ok: false; kind: string };
}

export interface CpuPgtableOptions {
  readonly arch: MmArch;
  readonly levels: 4 | 5;
  readonly mem: PhysMem;
  readonly alloc: () => number | null;
  readonly free: (pa: number) => void;
}

const PAGE = 4096;

/**
 * Builds the tables of one mm. x86-64: 4 or 5 levels, TASK_SIZE one page
 * below the canonical hole. AArch64: 48-bit VA (T0SZ = 16, 4 levels with
 * the 4 KiB granule), TASK_SIZE = 2^48 as arm64 Linux with VA_BITS = 48;
 * leaves are written as arm64 user pages (AP[1] = 1, nG, AF preset, XN
 * unless executable). 52-bit VA (LPA2) is not modelled: EINVAL from the caller.
 */
export function cpuPgtable(o: CpuPgtableOptions): CpuPgtable {
  const wopts = { alloc: o.alloc, free: o.free, outBits: o.mem.addrBits };
  if (o.arch === "aarch64") {
    const inputBits = 48;
    const writer = ArmTableWriter.stage1(o.mem, { ...wopts, inputBits });
    // The CPU's view: EL0 accesses, hardware AF updates (ARMv8.1 TTHM, as arm64 Linux enables).
    const cfg: ArmS1Config = { ttb: writer.root, inputBits, upper: false, outputBits: Math.min(o.mem.addrBits, 48), affd: false, ha: true, hd: false, had: false };
    const out = newArmWalkResult();
    return {
      writer,
      format: { arch: "aarch64", granule: PAGE, t0sz: 64 - inputBits },
      taskSize: 2 ** inputBits,
      walk(va, write) {
        const r = walkStage1(o.mem, cfg, va, { write, priv: false }, out);
        return r.ok ? { ok: true, pa: r.pa } : { ok: false, kind: r.kind ?? "?" };
      },
    };
  }
  const levels = o.levels;
  const writer = new TableWriter(o.mem, x86Format({ levels }), wopts);
  // The CPU's view: user-mode accesses with NX, SMEP/WP-like checks on.
  const cfg: FirstLevelConfig = { root: writer.root, levels, addrBits: o.mem.addrBits, sre: true, wpe: true, nxe: true, ere: true, eafe: false, pages1g: true };
  const out = newWalkResult();
  return {
    writer,
    format: { arch: "x86-64", levels },
    taskSize: 2 ** (levels === 4 ? 47 : 56) - PAGE,
    walk(va, write) {
      return walkFirstLevel(o.mem, cfg, va, { write, priv: false }, out).ok ? { ok: true, pa: out.pa } : { ok: false, kind: out.kind ?? "?" };
    },
  };
}
