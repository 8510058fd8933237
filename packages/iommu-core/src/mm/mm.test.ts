import { Errno, Kernel, KernelBug } from "@vsva/kernel";
import { SparseMemory, newWalkResult, walkFirstLevel } from "@vsva/pgtable";
import { describe, expect, it } from "vitest";
import { PAGE_SIZE, PageAllocator } from "../page-alloc.js";
import { Mm } from "./mm.js";
import type { MmuNotifier } from "./mmu-notifier.js";
import { PhysMemBacking } from "./phys-backing.js";
import { Prot } from "./prot.js";
import { errnoOf } from "@vsva/kernel/testing";

const POOL = 0x4000_0000;
const VA = 0x4000_0000_0000;

function rig(levels: 4 | 5 = 4) {
  const kernel = new Kernel();
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: POOL, size: 1024 * PAGE_SIZE }] });
  const pages = new PageAllocator({ base: POOL, size: 1024 * PAGE_SIZE, backing: new PhysMemBacking(mem), faults: kernel.faults });
  const mm = new Mm({ kernel, mem, pages, levels, name: "proc" });
  return { kernel, mem, pages, mm };
}

interface Seen {
  readonly calls: string[];
  readonly n: MmuNotifier;
}

function recorder(onInvalidate?: (start: number, end: number) => void, onRelease?: () => void): Seen {
  const calls: string[] = [];
  return {
    calls,
    n: {
      invalidateRange: (_mm, start, end) => {
        calls.push(`inv ${start.toString(16)}-${end.toString(16)}`);
        onInvalidate?.(start, end);
      },
      release: () => {
        calls.push("release");
        onRelease?.();
      },
    },
  };
}

const bytes = (...b: number[]) => new Uint8Array(b);

describe("mappings and CPU access", () => {
  it("creates a VMA on mmap and no page until the first touch", () => {
    const { mm, pages } = rig();
    const before = pages.stats.livePages;
    expect(mm.mmap(VA, 3 * PAGE_SIZE, Prot.READ | Prot.WRITE)).toBe(VA);
    expect(mm.vmas()).toEqual([{ start: VA, end: VA + 3 * PAGE_SIZE, prot: Prot.READ | Prot.WRITE }]);
    expect(mm.residentPages).toBe(0);
    expect(mm.lookup(VA)).toBeNull();
    expect(pages.stats.livePages).toBe(before);
  });

  it("demand-faults a zeroed page on the first access, with the tables down to it", () => {
    const { mm, pages } = rig();
    mm.mmap(VA, 2 * PAGE_SIZE, Prot.READ | Prot.WRITE);
    expect(mm.read(VA + 10, 4)).toEqual(bytes(0, 0, 0, 0));
    // One user page plus PDPT, PD and PT below the pgd.
    expect(pages.stats.livePages).toBe(1 + 1 + 3);
    expect(mm.residentPages).toBe(1);
    mm.write(VA + 0xffe, bytes(1, 2, 3, 4)); // straddles into the second page
    expect(mm.residentPages).toBe(2);
    expect(mm.read(VA + 0xffe, 4)).toEqual(bytes(1, 2, 3, 4));
  });

  it("writes through the same tables the hardware walks", () => {
    const { mm, mem } = rig();
    mm.mmap(VA, PAGE_SIZE, Prot.READ | Prot.WRITE);
    mm.write(VA + 8, bytes(0xaa, 0xbb));
    const walk = walkFirstLevel(mem, { root: mm.pgd, levels: 4, addrBits: 46, sre: false, wpe: false, nxe: true, ere: false, eafe: false, pages1g: true }, VA + 8, { write: false }, newWalkResult());
    expect(walk.ok).toBe(true);
    expect(mem.read8(walk.pa)).toBe(0xaa);
    expect(walk.write).toBe(true);
    expect(walk.exec).toBe(false);
  });

  it("refuses accesses outside any VMA with EFAULT and forbidden ones with EACCES", () => {
    const { mm } = rig();
    mm.mmap(VA, PAGE_SIZE, Prot.READ);
    mm.mmap(VA + 2 * PAGE_SIZE, PAGE_SIZE, Prot.NONE);
    expect(errnoOf(() => mm.read(VA + PAGE_SIZE, 1))).toBe(Errno.EFAULT);
    expect(errnoOf(() => mm.write(VA, bytes(1)))).toBe(Errno.EACCES);
    expect(errnoOf(() => mm.read(VA + 2 * PAGE_SIZE, 1))).toBe(Errno.EACCES);
    expect(mm.handleMmFault(VA, { exec: true })).toBe(Errno.EACCES);
    expect(mm.handleMmFault(VA + PAGE_SIZE, {})).toBe(Errno.EFAULT);
    expect(mm.handleMmFault(VA, {})).toBe(0);
    expect(mm.handleMmFault(VA, {})).toBe(0); // spurious: already present
  });

  it("follows x86's access_error: a write-only or execute-only VMA is readable", () => {
    const { mm } = rig();
    mm.mmap(VA, PAGE_SIZE, Prot.WRITE);
    mm.mmap(VA + PAGE_SIZE, PAGE_SIZE, Prot.EXEC);
    expect(mm.handleMmFault(VA, {})).toBe(0);
    expect(mm.handleMmFault(VA + PAGE_SIZE, {})).toBe(0);
    expect(mm.handleMmFault(VA + PAGE_SIZE, { write: true })).toBe(Errno.EACCES);
    expect(mm.lookup(VA + PAGE_SIZE)?.prot.exec).toBe(true);
  });

  it("populates eagerly on request", () => {
    const { mm } = rig();
    mm.mmap(VA, 4 * PAGE_SIZE, Prot.READ, { populate: true });
    expect(mm.residentPages).toBe(4);
    expect(mm.lookup(VA + 3 * PAGE_SIZE)?.prot.write).toBe(false);
  });

  it("validates mmap arguments with the kernel's errnos", () => {
    const { mm } = rig();
    mm.mmap(VA, 2 * PAGE_SIZE, Prot.READ);
    expect(errnoOf(() => mm.mmap(VA + PAGE_SIZE, PAGE_SIZE, Prot.READ))).toBe(Errno.EEXIST);
    expect(errnoOf(() => mm.mmap(VA + 1, PAGE_SIZE, Prot.READ))).toBe(Errno.EINVAL);
    expect(errnoOf(() => mm.mmap(VA, 0, Prot.READ))).toBe(Errno.EINVAL);
    expect(errnoOf(() => mm.mmap(VA + 4 * PAGE_SIZE, PAGE_SIZE, 8))).toBe(Errno.EINVAL);
    expect(errnoOf(() => mm.mmap(0, PAGE_SIZE, Prot.READ))).toBe(Errno.EPERM);
    expect(errnoOf(() => mm.mmap(mm.taskSize - PAGE_SIZE, 2 * PAGE_SIZE, Prot.READ))).toBe(Errno.ENOMEM);
    expect(mm.mmap(null, 100, Prot.READ)).toBe(mm.mmapBase);
    expect(mm.mmap(null, PAGE_SIZE, Prot.READ)).toBe(mm.mmapBase + PAGE_SIZE);
  });

  it("maps the upper part of a 5-level address space", () => {
    const { mm } = rig(5);
    const high = 2 ** 52;
    mm.mmap(high, PAGE_SIZE, Prot.READ | Prot.WRITE);
    mm.write(high, bytes(7));
    expect(mm.read(high, 1)).toEqual(bytes(7));
    expect(mm.taskSize).toBe(2 ** 56 - PAGE_SIZE);
  });
});

describe("munmap, mprotect and reclaim tell the notifiers", () => {
  it("munmap clears the PTEs, notifies the range while the pages are still allocated, then frees them", () => {
    const { mm, pages } = rig();
    mm.mmap(VA, 4 * PAGE_SIZE, Prot.READ | Prot.WRITE, { populate: true });
    const pa = mm.lookup(VA + PAGE_SIZE)?.pa ?? -1;
    const atFlush = { owned: false, pteGone: false };
    const seen = recorder(() => {
      atFlush.owned = pages.owns(pa);
      atFlush.pteGone = mm.lookup(VA + PAGE_SIZE) === null;
    });
    mm.registerNotifier(seen.n);
    const live = pages.stats.livePages;
    mm.munmap(VA + PAGE_SIZE, 2 * PAGE_SIZE);
    expect(seen.calls).toEqual([`inv ${(VA + PAGE_SIZE).toString(16)}-${(VA + 3 * PAGE_SIZE).toString(16)}`]);
    expect(atFlush).toEqual({ owned: true, pteGone: true });
    expect(pages.owns(pa)).toBe(false);
    expect(pages.stats.livePages).toBe(live - 2);
    expect(mm.vmas().map((v) => [v.start - VA, v.end - VA])).toEqual([
      [0, PAGE_SIZE],
      [3 * PAGE_SIZE, 4 * PAGE_SIZE],
    ]);
    expect(errnoOf(() => mm.read(VA + PAGE_SIZE, 1))).toBe(Errno.EFAULT);
  });

  it("munmap of pages never touched does not notify", () => {
    const { mm } = rig();
    mm.mmap(VA, 4 * PAGE_SIZE, Prot.READ);
    const seen = recorder();
    mm.registerNotifier(seen.n);
    mm.munmap(VA, 4 * PAGE_SIZE);
    expect(seen.calls).toEqual([]);
    expect(mm.vmas()).toEqual([]);
  });

  it("mprotect downgrading write notifies and the PTE loses write; the data stays", () => {
    const { mm } = rig();
    mm.mmap(VA, 2 * PAGE_SIZE, Prot.READ | Prot.WRITE);
    mm.write(VA, bytes(9, 8));
    const seen = recorder();
    mm.registerNotifier(seen.n);
    mm.mprotect(VA, 2 * PAGE_SIZE, Prot.READ);
    expect(seen.calls).toEqual([`inv ${VA.toString(16)}-${(VA + 2 * PAGE_SIZE).toString(16)}`]);
    expect(mm.lookup(VA)?.prot.write).toBe(false);
    expect(errnoOf(() => mm.write(VA, bytes(1)))).toBe(Errno.EACCES);
    expect(mm.read(VA, 2)).toEqual(bytes(9, 8));
    mm.mprotect(VA, PAGE_SIZE, Prot.READ | Prot.WRITE); // an upgrade needs no flush
    expect(seen.calls.length).toBe(1);
    mm.write(VA, bytes(5));
    expect(mm.read(VA, 2)).toEqual(bytes(5, 8));
    expect(mm.vmas().length).toBe(2);
  });

  it("mprotect PROT_NONE takes pages out of the tables and keeps their contents", () => {
    const { mm, pages } = rig();
    mm.mmap(VA, PAGE_SIZE, Prot.READ | Prot.WRITE);
    mm.write(VA + 100, bytes(42));
    const seen = recorder();
    mm.registerNotifier(seen.n);
    const live = pages.stats.livePages;
    mm.mprotect(VA, PAGE_SIZE, Prot.NONE);
    expect(seen.calls.length).toBe(1);
    expect(mm.lookup(VA)).toBeNull();
    expect(pages.stats.livePages).toBe(live - 1);
    expect(errnoOf(() => mm.read(VA, 1))).toBe(Errno.EACCES);
    mm.mprotect(VA, PAGE_SIZE, Prot.READ);
    expect(mm.read(VA + 100, 1)).toEqual(bytes(42));
  });

  it("mprotect over a hole is ENOMEM and changes nothing", () => {
    const { mm } = rig();
    mm.mmap(VA, PAGE_SIZE, Prot.READ);
    mm.mmap(VA + 2 * PAGE_SIZE, PAGE_SIZE, Prot.READ);
    expect(errnoOf(() => mm.mprotect(VA, 3 * PAGE_SIZE, Prot.NONE))).toBe(Errno.ENOMEM);
    expect(mm.vmas().every((v) => v.prot === Prot.READ)).toBe(true);
  });

  it("reclaim notifies, frees the page, and a later access brings the contents back", () => {
    const { mm, pages } = rig();
    mm.mmap(VA, 2 * PAGE_SIZE, Prot.READ | Prot.WRITE);
    mm.write(VA + PAGE_SIZE + 5, bytes(1, 2, 3));
    const seen = recorder();
    mm.registerNotifier(seen.n);
    const live = pages.stats.livePages;
    expect(mm.reclaim(VA, 2 * PAGE_SIZE)).toBe(1);
    expect(seen.calls).toEqual([`inv ${VA.toString(16)}-${(VA + 2 * PAGE_SIZE).toString(16)}`]);
    expect(pages.stats.livePages).toBe(live - 1);
    expect(mm.swappedPages).toBe(1);
    expect(mm.read(VA + PAGE_SIZE + 5, 3)).toEqual(bytes(1, 2, 3));
    expect(mm.swappedPages).toBe(0);
  });

  it("calls invalidateRange in atomic context, where a notifier must not sleep", () => {
    const { mm, kernel } = rig();
    mm.mmap(VA, PAGE_SIZE, Prot.READ, { populate: true });
    const seen = recorder(() => kernel.scheduler.atomic.mightSleep("a sleeping flush"));
    mm.registerNotifier(seen.n);
    expect(() => mm.munmap(VA, PAGE_SIZE)).toThrow(KernelBug);
  });

  it("handleMmFault may sleep, so calling it in atomic context is a kernel bug", () => {
    const { mm, kernel } = rig();
    mm.mmap(VA, PAGE_SIZE, Prot.READ);
    expect(() => kernel.scheduler.atomic.run("irq", () => mm.handleMmFault(VA, {}))).toThrow(KernelBug);
  });

  it("refuses a notifier twice, and after exit", () => {
    const { mm } = rig();
    const seen = recorder();
    mm.registerNotifier(seen.n);
    expect(errnoOf(() => mm.registerNotifier(seen.n))).toBe(Errno.EEXIST);
    mm.exit();
    expect(errnoOf(() => mm.registerNotifier(recorder().n))).toBe(Errno.EINVAL);
    expect(mm.unregisterNotifier(seen.n)).toBe(false); // unhooked by release
  });
});

describe("life cycle", () => {
  it("exit releases the notifiers while the tables still translate, then tears everything down", () => {
    const { mm, mem, pages } = rig();
    mm.mmap(VA, 3 * PAGE_SIZE, Prot.READ | Prot.WRITE, { populate: true });
    mm.write(VA, bytes(1));
    const atRelease = { translated: false };
    const order: string[] = [];
    const first = recorder(undefined, () => {
      order.push("first");
      atRelease.translated = mm.lookup(VA) !== null;
    });
    const second = recorder(undefined, () => order.push("second"));
    mm.registerNotifier(first.n);
    mm.registerNotifier(second.n);
    mm.mmgrab(); // someone (an SVA bond) keeps the struct
    mm.exit();
    expect(order).toEqual(["second", "first"]); // newest first, as mmu_notifier_release
    expect(atRelease.translated).toBe(true);
    expect(mm.state).toBe("exited");
    expect(mm.notifierCount).toBe(0);
    const walk = walkFirstLevel(mem, { root: mm.pgd, levels: 4, addrBits: 46, sre: false, wpe: false, nxe: true, ere: false, eafe: false, pages1g: true }, VA, { write: false }, newWalkResult());
    expect(walk.ok).toBe(false);
    expect(walk.kind).toBe("not-present");
    expect(walk.level).toBe(4);
    expect(pages.live().map((p) => p.tag)).toEqual(["mm.pgtable"]); // only the pgd, until the last mmdrop
    expect(mm.mmgetNotZero()).toBe(false);
    expect(errnoOf(() => mm.mmap(VA, PAGE_SIZE, Prot.READ))).toBe(Errno.EINVAL);
    expect(mm.handleMmFault(VA, {})).toBe(Errno.EFAULT);
    mm.mmdrop();
    expect(mm.state).toBe("freed");
    expect(pages.stats.livePages).toBe(0);
  });

  it("frees every page it allocated at the final drop, and gives its PASID back then", () => {
    const { mm, pages } = rig();
    mm.mmap(VA, 8 * PAGE_SIZE, Prot.READ | Prot.WRITE);
    mm.mmap(VA + 0x4000_0000, PAGE_SIZE, Prot.READ, { populate: true });
    mm.write(VA + 3 * PAGE_SIZE, bytes(1));
    mm.reclaim(VA, 8 * PAGE_SIZE);
    mm.mprotect(VA + 0x4000_0000, PAGE_SIZE, Prot.NONE);
    const freed: string[] = [];
    mm.setPasid(7 as Parameters<Mm["setPasid"]>[0], () => freed.push("pasid"));
    mm.mmgrab();
    mm.exit();
    expect(freed).toEqual([]);
    expect(mm.pasid).toBe(7);
    mm.mmdrop();
    expect(freed).toEqual(["pasid"]);
    expect(mm.pasid).toBeNull();
    expect(pages.stats.livePages).toBe(0);
    expect(pages.stats.allocs).toBe(pages.stats.frees);
  });

  it("defers exit_mmap while another user holds the mm", () => {
    const { mm } = rig();
    const seen = recorder();
    mm.registerNotifier(seen.n);
    expect(mm.mmgetNotZero()).toBe(true);
    mm.exit();
    expect(seen.calls).toEqual([]);
    expect(mm.state).toBe("live");
    mm.mmput();
    expect(seen.calls).toEqual(["release"]);
    expect(mm.state).toBe("freed");
  });

  it("treats refcount misuse as kernel bugs", () => {
    const { mm } = rig();
    mm.exit();
    expect(() => mm.exit()).toThrow(KernelBug);
    expect(() => mm.mmput()).toThrow(KernelBug);
    expect(() => mm.mmget()).toThrow(KernelBug);
    expect(() => mm.mmdrop()).toThrow(KernelBug);
  });
});

describe("fault injection", () => {
  it("leaves every page accounted for whichever allocation fails", () => {
    for (let n = 1; ; n++) {
      const { mm, pages, kernel } = rig();
      kernel.faults.failNth(n);
      const errors: number[] = [];
      const step = (fn: () => unknown) => {
        const e = errnoOf(fn);
        if (e !== 0) errors.push(e);
      };
      step(() => mm.mmap(VA, 4 * PAGE_SIZE, Prot.READ | Prot.WRITE));
      step(() => mm.write(VA, bytes(1, 2)));
      step(() => mm.mmap(VA + 0x20_0000, PAGE_SIZE, Prot.READ | Prot.WRITE));
      step(() => mm.write(VA + 0x20_0000, bytes(3)));
      step(() => mm.mprotect(VA + PAGE_SIZE, PAGE_SIZE, Prot.READ));
      step(() => mm.munmap(VA + 2 * PAGE_SIZE, PAGE_SIZE));
      step(() => mm.reclaim(VA, 4 * PAGE_SIZE));
      step(() => mm.read(VA, 2));
      const injected = kernel.faults.injected.length;
      kernel.faults.disarm();
      // The injected failure is ENOMEM; a step after a failed mmap may find no VMA.
      expect(errors[0] ?? Errno.ENOMEM).toBe(Errno.ENOMEM);
      expect(errors.every((e) => e === Errno.ENOMEM || e === Errno.EFAULT)).toBe(true);
      expect(errors.length > 0).toBe(injected > 0);
      mm.exit();
      expect(pages.stats.livePages).toBe(0);
      if (injected === 0) break;
      expect(n).toBeLessThan(100);
    }
  });
});
