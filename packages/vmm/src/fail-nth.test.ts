import { describe, expect, it } from "vitest";
import { declareFaultPoints } from "@vsva/kernel";
import { FaultCoverage, tolerate } from "@vsva/kernel/testing";
import { IOASID_FAULT_POINTS } from "@vsva/ioasid";
import { IOMMU_CORE_FAULT_POINTS, Prot } from "@vsva/iommu-core";
import { VTD_FAULT_POINTS } from "@vsva/intel-svm";
import { VFIO_FAULT_POINTS } from "@vsva/vfio-type1";
import { Ia32Pasid, TABLE_PAGE_FAULT_POINT } from "@vsva/kvm-pasid";
import { VMM_FAULT_POINTS } from "./fault-points.js";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { vmTestHost } from "./test-host.js";
import type { GuestPasidMode } from "./viommu.js";
import { Vm } from "./vm.js";

const RAM = 2 << 20;
const VA = 0x7000_0000_0000;
/** kvm-pasid names its one point without a registry of its own. */
const KVM_POINTS = declareFaultPoints("@vsva/kvm-pasid", [TABLE_PAGE_FAULT_POINT]);
const KNOWN = [IOASID_FAULT_POINTS, IOMMU_CORE_FAULT_POINTS, VTD_FAULT_POINTS, VFIO_FAULT_POINTS, KVM_POINTS];
/** The VMM's points only a VM with mdevs meets. */
const MDEV_ONLY = ["vmm.mdev_region"];

/**
 * A VM's life in the style of iommufd_fail_nth: build the VM, boot the
 * guest, bind a guest process and DMA, kill the VM. `side` says whose
 * n-th fallible step fails: the host's (VMM, VFIO, KVM, host IOMMU) or the
 * guest kernel's. Whatever failed, after the kill the host is as before:
 * every host page back, no PASID, no pin, no stale cache, and the device
 * can be assigned again.
 */
type Arm = number | { readonly point: string; readonly nth: number } | null;

/** The IA32_PASID value of a guest thread holding `pasid` (bit 31 VALID). */
function ia32Pasid(pasid: number): bigint {
  const v = Ia32Pasid.encode({ PASID: pasid, VALID: 1 });
  return BigInt(v[0] ?? 0) | (BigInt(v[1] ?? 0) << 32n);
}

/**
 * `mode` "spid": the VM numbers its guest PASIDs itself, so the assigned
 * function cannot DMA with them; the run's last step is then the guest's
 * ENQCMD through KVM, which must carry the host PASID behind the guest's.
 */
function run(side: "host" | "guest", n: Arm, mode: GuestPasidMode = "identity") {
  const h = vmTestHost();
  const pages = h.board.pages.stats.livePages;
  const allocated = h.board.ioasid.allocated;
  let faults = h.board.kernel.faults;
  faults.resetCounters(); // the host's own boot is not part of the VM's life
  const arm = (f: typeof faults): void => {
    if (typeof n === "number") f.failNth(n);
    else if (n !== null) f.failPoint(n.point, { nth: n.nth });
  };
  if (side === "host") arm(faults);
  const vm = tolerate(() => new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device, guestPasids: mode }));
  let dma: string | null = null;
  if (vm !== null) {
    if (side === "guest") {
      faults = vm.kernel.faults;
      arm(faults);
    }
    const g = tolerate(() => new Guest(vm));
    if (g !== null) {
      tolerate(() => {
        const p = g.newProcess("P");
        p.mmap(VA, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
        const bond = g.core.sva.bindDevice(g.device, p);
        if (mode === "identity") dma = g.dma({ pasid: bond.pasid, addr: VA + 0x40, length: 4, direction: "write", pattern: Uint8Array.of(9, 8, 7, 6) });
        else {
          const enq = vm.kvm.enqcmd(ia32Pasid(bond.pasid));
          dma = enq.ok && enq.hostPasid === vm.viommu.hostPasid(bond.pasid) ? "ok" : "enqcmd-failed";
        }
      });
    }
  }
  const injected = [...faults.injected];
  const snapshot = { counts: new Map(faults.counts), injected };
  faults.disarm();
  vm?.kill();
  h.board.settle();
  // Nothing of the VM is left on the host.
  expect(h.board.pages.stats.livePages).toBe(pages);
  expect(h.board.ioasid.allocated).toBe(allocated);
  expect(h.board.platform.cacheViolations()).toEqual([]);
  if (vm !== null) expect([vm.ram.view.pinStats.pinnedPages, vm.vmm.openFiles, vm.vmm.lockedBytes, vm.kvm.pages]).toEqual([0, 0, 0, 0]);
  const again = new Vm({ host: h.board, vfio: h.vfio, id: 2, ramBytes: RAM, device: h.device });
  again.kill();
  return { injected: snapshot.injected, counts: snapshot.counts, faults, dma };
}

/** Sweeps and fuzz boot a guest per run: well under 2 s alone, far more on a loaded machine. */
const SWEEP_TIMEOUT = 30_000;

describe("fail-nth over a VM's life (build, guest boot, SVA bind, DMA, kill)", () => {
  it("any host step failing (every point the run meets, at its first, second, middle and last hit) leaves nothing behind after the kill; every VMM point fails in some run", () => {
    const clean = run("host", null);
    expect(clean.dma).toBe("ok");
    const cov = new FaultCoverage(VMM_FAULT_POINTS, KNOWN);
    // MAP_DMA pins page by page, so failing every n-th step in turn would be thousands of runs: every point at its edges instead.
    const hits = [...clean.counts].filter(([, c]) => c > 0);
    expect(hits.length).toBeGreaterThan(3);
    for (const [point, count] of hits) {
      for (const nth of new Set([1, 2, Math.ceil(count / 2), count].filter((x) => x <= count))) {
        const r = run("host", { point, nth });
        expect(r.injected).toEqual([point]);
        cov.record(r.faults);
      }
    }
    // A VM without mdevs has no region of one to forward: mdev-fail-nth.test.ts fails that point.
    expect(cov.missing()).toEqual(MDEV_ONLY);
    expect(cov.undeclared()).toEqual([]);
  }, SWEEP_TIMEOUT);

  it("with SPIDs, any host step failing leaves nothing behind after the kill, and the unfailed run's ENQCMD carries the host PASID", () => {
    const clean = run("host", null, "spid");
    expect(clean.dma).toBe("ok");
    const cov = new FaultCoverage(VMM_FAULT_POINTS, KNOWN);
    const hits = [...clean.counts].filter(([, c]) => c > 0);
    // The bind attaches the guest's number as the host PASID's SPID: that step is among those failed.
    expect(hits.map(([p]) => p)).toContain("ioasid.attach_spid");
    for (const [point, count] of hits) {
      for (const nth of new Set([1, count])) {
        const r = run("host", { point, nth }, "spid");
        expect(r.injected).toEqual([point]);
        cov.record(r.faults);
      }
    }
    expect(cov.missing()).toEqual(MDEV_ONLY);
    expect(cov.undeclared()).toEqual([]);
  }, SWEEP_TIMEOUT);

  it("the guest kernel's n-th fallible step failing never reaches the host: after the kill it is as before", () => {
    expect(run("guest", null).dma).toBe("ok");
    let n = 1;
    for (; n < 400; n++) {
      if (run("guest", n).injected.length === 0) break;
    }
    expect(n).toBeGreaterThan(5);
    expect(n).toBeLessThan(400);
  }, SWEEP_TIMEOUT);
});
