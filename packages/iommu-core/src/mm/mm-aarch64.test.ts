import { Errno, Kernel } from "@vsva/kernel";
import { type ArmS1Config, ArmPerm, SparseMemory, newArmWalkResult, walkStage1 } from "@vsva/pgtable";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, PageAllocator } from "../page-alloc.js";
import { Mm } from "./mm.js";
import { PhysMemBacking } from "./phys-backing.js";
import { Prot } from "./prot.js";
import { errnoOf } from "@vsva/kernel/testing";

const POOL = 0x4000_0000;
const VA = 0x7f00_0000_0000;

function rig() {
  const kernel = new Kernel();
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: POOL, size: 1024 * PAGE_SIZE }] });
  const pages = new PageAllocator({ base: POOL, size: 1024 * PAGE_SIZE, backing: new PhysMemBacking(mem), faults: kernel.faults });
  const mm = new Mm({ kernel, mem, pages, arch: "aarch64", name: "armproc" });
  return { kernel, mem, pages, mm };
}

/** What an SMMU's stage-1 walk through the CD's TTB0 sees (an independent walker, not the mm's own). */
function smmuWalk(mem: SparseMemory, mm: Mm, va: number, write: boolean) {
  const cfg: ArmS1Config = { ttb: mm.pgd, inputBits: 48, upper: false, outputBits: 46, affd: false, ha: false, hd: false, had: false };
  return walkStage1(mem, cfg, va, { write, priv: false }, newArmWalkResult());
}

describe("an AArch64 process address space", () => {
  it("reports a 48-bit VMSAv8-64 format (T0SZ 16, 4 KiB granule) and arm64's TASK_SIZE", () => {
    const { mm } = rig();
    expect(mm.arch).toBe("aarch64");
    expect(mm.format).toEqual({ arch: "aarch64", granule: 4096, t0sz: 16 });
    expect(mm.taskSize).toBe(2 ** 48);
  });

  it("refuses 5 levels: 52-bit VAs (LPA2) are not modelled", () => {
    const kernel = new Kernel();
    const mem = new SparseMemory({ addrBits: 46, regions: [{ base: POOL, size: 16 * PAGE_SIZE }] });
    const pages = new PageAllocator({ base: POOL, size: 16 * PAGE_SIZE, backing: new PhysMemBacking(mem), faults: kernel.faults });
    expect(errnoOf(() => new Mm({ kernel, mem, pages, arch: "aarch64", levels: 5 }))).toBe(Errno.EINVAL);
    expect(pages.live()).toEqual([]);
  });

  it("CPU stores go through AArch64 tables that an SMMU stage-1 walk reads identically", () => {
    const { mem, mm } = rig();
    const va = mm.mmap(VA, 2 * PAGE_SIZE, Prot.READ | Prot.WRITE);
    mm.write(va + 0x10, Uint8Array.of(1, 2, 3, 4));
    const w = smmuWalk(mem, mm, va + 0x10, true);
    expect(w.ok).toBe(true);
    expect(w.perms & ArmPerm.USER_WRITE).toBe(ArmPerm.USER_WRITE);
    expect(w.global).toBe(false); // user pages are nG: tagged with the process's ASID
    expect(mem.read32(w.pa)).toBe(0x04030201);
    expect(mm.read(va + 0x10, 4)).toEqual(Uint8Array.of(1, 2, 3, 4));
    // The second page was never touched: not present to the device either.
    expect(smmuWalk(mem, mm, va + PAGE_SIZE, false).kind).toBe("translation");
  });

  it("mprotect read-only is an EL0 permission fault for device writes, and EACCES for the CPU", () => {
    const { mem, mm } = rig();
    const va = mm.mmap(VA, PAGE_SIZE, Prot.READ | Prot.WRITE, { populate: true });
    mm.mprotect(va, PAGE_SIZE, Prot.READ);
    expect(smmuWalk(mem, mm, va, true).kind).toBe("permission");
    expect(smmuWalk(mem, mm, va, false).ok).toBe(true);
    expect(errnoOf(() => mm.write(va, Uint8Array.of(9)))).toBe(Errno.EACCES);
  });

  it("munmap tells the notifiers before the page is freed, and exit frees every table page", () => {
    const { mem, mm, pages } = rig();
    const calls: string[] = [];
    mm.registerNotifier({
      invalidateRange: (_m, s, e) => calls.push(`inv ${(e - s) / PAGE_SIZE}`),
      release: () => calls.push("release"),
    });
    const va = mm.mmap(VA, 4 * PAGE_SIZE, Prot.READ | Prot.WRITE, { populate: true });
    expect(mm.residentPages).toBe(4);
    mm.munmap(va, PAGE_SIZE);
    expect(calls).toEqual(["inv 1"]);
    mm.mmgrab(); // an SVA bond's reference to the struct
    expect(smmuWalk(mem, mm, va, false).kind).toBe("translation");
    mm.exit();
    expect(calls).toEqual(["inv 1", "release"]);
    // The pgd stays (empty) until the last mmdrop, as on x86-64.
    expect(pages.live().map((p) => p.pa)).toEqual([mm.pgd]);
    expect(smmuWalk(mem, mm, va + PAGE_SIZE, false).kind).toBe("translation");
    mm.mmdrop();
    expect(pages.live()).toEqual([]);
  });

  it("demand paging: a device-style fault brings a reclaimed page back with its contents", () => {
    const { mem, mm } = rig();
    const va = mm.mmap(VA, PAGE_SIZE, Prot.READ | Prot.WRITE);
    mm.write(va, Uint8Array.of(0xaa));
    expect(mm.reclaim(va, PAGE_SIZE)).toBe(1);
    expect(smmuWalk(mem, mm, va, false).ok).toBe(false);
    expect(mm.handleMmFault(va, { write: false })).toBe(0);
    const w = smmuWalk(mem, mm, va, false);
    expect(w.ok).toBe(true);
    expect(mem.read32(w.pa) & 0xff).toBe(0xaa);
  });
});
