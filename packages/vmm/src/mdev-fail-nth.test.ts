import { describe, expect, it } from "vitest";
import { declareFaultPoints, asVmId } from "@vsva/kernel";
import { FaultCoverage, tolerate } from "@vsva/kernel/testing";
import { IOASID_FAULT_POINTS } from "@vsva/ioasid";
import { IOMMU_CORE_FAULT_POINTS, Prot } from "@vsva/iommu-core";
import { VTD_FAULT_POINTS } from "@vsva/intel-svm";
import { VFIO_FAULT_POINTS } from "@vsva/vfio-type1";
import { TABLE_PAGE_FAULT_POINT } from "@vsva/kvm-pasid";
import { DSA_COMPLETION_SIZE, DescFlag, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { IDXD_FAULT_POINTS, Idxd, UserThread, openUserWq, plugIdxd } from "@vsva/idxd";
import { VDCM_FAULT_POINTS, Vdcm, type VdcmMdev } from "@vsva/vdcm";
import { MdevGuest } from "@vsva/vdcm/testing";
import { VMM_FAULT_POINTS } from "./fault-points.js";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { KvmEnqcmdPortal } from "./kvm-portal.js";
import { MdevRegions } from "./mdev-regions.js";
import { vmTestHost } from "./test-host.js";
import type { GuestPasidMode } from "./viommu.js";
import { Vm } from "./vm.js";

const RAM = 1 << 20;
const VA = 0x7000_0000_0000;
/** kvm-pasid names its one point without a registry of its own. */
const KVM_POINTS = declareFaultPoints("@vsva/kvm-pasid", [TABLE_PAGE_FAULT_POINT]);
const KNOWN = [IOASID_FAULT_POINTS, IOMMU_CORE_FAULT_POINTS, VTD_FAULT_POINTS, VFIO_FAULT_POINTS, KVM_POINTS, VDCM_FAULT_POINTS, IDXD_FAULT_POINTS];
/** Each run boots a guest and probes its idxd: well under a second alone, far more on a loaded machine. */
const SWEEP_TIMEOUT = 60_000;

type Arm = number | { readonly point: string; readonly nth: number } | null;

/**
 * A VM's life with mdevs, in the style of iommufd_fail_nth: the VDCM creates
 * two mdevs for the VM (on the accelerator's dedicated and shared WQs), the
 * VMM starts the VM with them, the guest boots, its idxd probes the
 * dedicated mdev through the VMM's region accesses and a user WQ file binds
 * a process and has the VDCM program its PASID into the hardware WQ
 * (MOVDIR64B of a MEMMOVE), the same process binds the shared mdev and
 * submits by ENQCMD through KVM's PASID translation, and the VM is killed
 * and the mdevs removed. `side` says whose n-th fallible step fails: the
 * host's (VDCM, VMM, VFIO, KVM, host IOMMU) or the guest kernel's. Whatever
 * failed, afterwards the host is as before: every host page back, no
 * PASID, no pin, no stale cache, both hardware WQs hold no PASID of the
 * VM's, and the WQ takes an mdev again.
 */
function run(side: "host" | "guest", n: Arm, mode: GuestPasidMode = "identity") {
  const h = vmTestHost();
  const idxd = plugIdxd(h.board, { dev: 6, name: "dsa9", config: { wqs: [{ mode: "dedicated", size: 8, type: "mdev" }, { mode: "shared", size: 8, type: "mdev" }] } });
  const vdcm = new Vdcm({ kernel: h.board.kernel, ioasid: h.board.ioasid, core: h.board.core, vfio: h.vfio, parent: idxd.iommuDev });
  const wqPasids = [idxd.wq(0).pasid, idxd.wq(1).pasid];
  const pages = h.board.pages.stats.livePages;
  const allocated = h.board.ioasid.allocated;
  let faults = h.board.kernel.faults;
  faults.resetCounters(); // the host's boot, idxd's probe and the VDCM's are not part of the VM's life
  const arm = (f: typeof faults): void => {
    if (typeof n === "number") f.failNth(n);
    else if (n !== null) f.failPoint(n.point, { nth: n.nth });
  };
  if (side === "host") arm(faults);
  const mm = { vmm: "qemu-vm1" };
  const mdevs: VdcmMdev[] = [];
  let dma: string | null = null;
  let enq: string | null = null;
  const regions: MdevRegions[] = [];
  const v = tolerate(() => {
    mdevs.push(vdcm.createMdev("mdev0", idxd.wq(0), { vm: asVmId(1), mm }));
    mdevs.push(vdcm.createMdev("mdev1", idxd.wq(1), { vm: asVmId(1), mm }));
    const vmdevs = mdevs.map((m, i) => ({ group: m.vfioDevice?.group?.id ?? -1, name: m.name, guestBdf: { bus: 0, dev: 5 + i, fn: 0 } }));
    return new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device, guestPasids: mode, mm, mdevs: vmdevs });
  });
  if (v !== null) {
    if (side === "guest") {
      faults = v.kernel.faults;
      arm(faults);
    }
    const g = tolerate(() => new Guest(v));
    if (g !== null) {
      tolerate(() => {
        const [ded, shared] = g.mdevs;
        const [file0] = v.mdevFiles;
        if (ded === undefined || shared === undefined || file0 === undefined) throw new Error("the VM has no mdevs");
        // The guest's PCI core enables the function (memory space, bus mastering, PASID), then idxd probes it.
        new MdevGuest(file0).enablePasid();
        const hw = new MdevRegions(file0, h.board.kernel.faults);
        regions.push(hw);
        const gidxd = Idxd.probe({ kernel: v.kernel, core: g.core, iommuDev: ded, hw, config: { wqs: [{ mode: "dedicated", size: 4, type: "user" }] }, name: "dsa0" });
        const p = g.newProcess("P");
        const buf = p.mmap(VA, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
        p.write(buf, Uint8Array.of(1, 2, 3, 4));
        const thread = new UserThread(p);
        const wq = openUserWq(gidxd, 0, thread);
        if (wq.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + PAGE, src: buf, dst: buf + 0x200, size: 4 })) === "posted") {
          h.board.settle();
          dma = wq.readCompletion(buf + PAGE).status === DsaStatus.SUCCESS && p.read(buf + 0x200, 4).join() === "1,2,3,4" ? "ok" : "failed";
        }
        // The shared mdev: the same process binds it, and its thread's ENQCMD goes through the portal QEMU maps, KVM translating the PASID.
        g.core.sva.bindDevice(shared, p);
        const portal = new KvmEnqcmdPortal(v, idxd.wq(1));
        const desc = encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + PAGE + 0x100, pattern: 0x0101_0101_0101_0101n, dst: buf + 0x400, size: 8 });
        if (thread.enqcmd(portal, desc) === "accepted") {
          h.board.settle();
          enq = decodeCompletion(p.read(buf + PAGE + 0x100, DSA_COMPLETION_SIZE)).status === DsaStatus.SUCCESS ? "ok" : "failed";
        }
      });
    }
  }
  const snapshot = { counts: new Map(faults.counts), injected: [...faults.injected] };
  faults.disarm();
  v?.kill();
  h.board.settle();
  for (const m of mdevs) vdcm.removeMdev(m);
  h.board.settle();
  // Nothing of the VM is left on the host.
  expect(h.board.pages.stats.livePages).toBe(pages);
  expect(h.board.ioasid.allocated).toBe(allocated);
  expect(h.board.platform.cacheViolations()).toEqual([]);
  if (v !== null) expect([v.ram.view.pinStats.pinnedPages, v.vmm.openFiles, v.vmm.lockedBytes, v.kvm.pages]).toEqual([0, 0, 0, 0]);
  expect([idxd.wq(0).pasid, idxd.wq(1).pasid]).toEqual(wqPasids);
  // The dedicated WQ takes an mdev again.
  vdcm.removeMdev(vdcm.createMdev("again", idxd.wq(0), { vm: asVmId(2), mm: { vmm: "qemu-vm2" } }));
  return { ...snapshot, faults, dma, enq, regionFailures: regions.reduce((s, r) => s + r.failedAccesses, 0) };
}

describe("fail-nth over a VM's life with mdevs (mdev creation, VM start, guest boot, guest idxd probe over the mdev's regions, WQ programming through the VDCM, ENQCMD through KVM, kill)", () => {
  it.each(["identity", "spid"] as const)("(%s guest PASIDs) any host step failing (every point the run meets, at its first, second, middle and last hit) leaves nothing behind; every VMM, VDCM and idxd point the path has fails in some run", (mode) => {
    const clean = run("host", null, mode);
    expect([clean.dma, clean.enq]).toEqual(["ok", "ok"]);
    expect(clean.regionFailures).toBe(0);
    const cov = new FaultCoverage(VMM_FAULT_POINTS, KNOWN);
    const hits = [...clean.counts].filter(([, c]) => c > 0);
    expect(hits.map(([p]) => p)).toEqual(expect.arrayContaining(["vdcm.mdev_alloc", "vmm.guest_ram", "vmm.mdev_region", TABLE_PAGE_FAULT_POINT]));
    for (const [point, count] of hits) {
      for (const nth of new Set([1, 2, Math.ceil(count / 2), count].filter((x) => x <= count))) {
        const r = run("host", { point, nth }, mode);
        expect(r.injected).toEqual([point]);
        // A refused region access is the guest's all-ones read or dropped write, never an exception in the guest.
        if (point === "vmm.mdev_region") expect(r.regionFailures).toBe(1);
        cov.record(r.faults);
      }
    }
    expect(cov.runs).toBeGreaterThan(2 * hits.length);
    expect(cov.missing()).toEqual([]);
    expect(cov.undeclared()).toEqual([]);
  }, SWEEP_TIMEOUT);

  it("the guest kernel's n-th fallible step failing (its IOMMU stack, its idxd's probe and WQ file) never reaches the host: afterwards it is as before; every idxd point fails in some run", () => {
    expect(run("guest", null).dma).toBe("ok");
    const cov = new FaultCoverage(IDXD_FAULT_POINTS, [...KNOWN, VMM_FAULT_POINTS]);
    let n = 1;
    for (; n < 600; n++) {
      const r = run("guest", n);
      cov.record(r.faults);
      if (r.injected.length === 0) break;
    }
    expect(n).toBeGreaterThan(5);
    expect(n).toBeLessThan(600);
    expect(cov.missing()).toEqual([]);
    expect(cov.undeclared()).toEqual([]);
  }, SWEEP_TIMEOUT);
});
