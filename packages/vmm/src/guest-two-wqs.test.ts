import { describe, expect, it } from "vitest";
import { Errno, TraceRecorder, asIoasid, asVmId } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { Prot } from "@vsva/iommu-core";
import { DSA_COMPLETION_SIZE, DescFlag, DsaCmdErr, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { UserThread, plugIdxd } from "@vsva/idxd";
import { Vdcm } from "@vsva/vdcm";
import { MdevGuest } from "@vsva/vdcm/testing";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { KvmEnqcmdPortal } from "./kvm-portal.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const RAM = 1 << 20;
const VA = 0x7000_0000_0000;

/**
 * One accelerator lent to the VDCM with a dedicated and a shared WQ, one
 * mdev on each, both given to one VM: each mdev is a device of its own
 * behind the vIOMMU, in a nesting container of its own.
 */
function hostWithTwoMdevs(guestPasids: "identity" | "spid") {
  const h = vmTestHost();
  const idxd = plugIdxd(h.board, {
    dev: 6,
    name: "dsa9",
    config: { wqs: [{ mode: "dedicated", size: 8, type: "mdev" }, { mode: "shared", size: 8, type: "mdev" }] },
  });
  const vdcm = new Vdcm({ kernel: h.board.kernel, ioasid: h.board.ioasid, core: h.board.core, vfio: h.vfio, parent: idxd.iommuDev });
  const mm = { vmm: "qemu-vm1" };
  const dwq = vdcm.createMdev("mdev0", idxd.wq(0), { vm: asVmId(1), mm });
  const swq = vdcm.createMdev("mdev1", idxd.wq(1), { vm: asVmId(1), mm });
  const groupOf = (m: typeof dwq): number => {
    const g = m.vfioDevice?.group?.id;
    if (g === undefined) throw new Error(`${m.name} has no IOMMU group`);
    return g;
  };
  const vm = new Vm({
    host: h.board,
    vfio: h.vfio,
    id: 1,
    ramBytes: RAM,
    device: h.device,
    guestPasids,
    mm,
    mdevs: [
      { group: groupOf(dwq), name: "mdev0", guestBdf: { bus: 0, dev: 5, fn: 0 } },
      { group: groupOf(swq), name: "mdev1", guestBdf: { bus: 0, dev: 7, fn: 0 } },
    ],
  });
  return { h, idxd, vdcm, dwq, swq, vm };
}

describe("one guest process, one PASID, on the dedicated-WQ mdev and the shared-WQ mdev", () => {
  it.each(["identity", "spid"] as const)("(%s guest PASIDs) both binds give the process's one PASID; MEMMOVE through the dedicated WQ and ENQCMD to the shared WQ both land; unbinding one leaves the other working, then the other", (mode) => {
    const { h, idxd, vdcm, dwq, swq, vm } = hostWithTwoMdevs(mode);
    const rec = new TraceRecorder(h.board.kernel.trace);
    const g = new Guest(vm);
    const [dDev, sDev] = g.mdevs;
    const file = vm.mdevFiles[0];
    if (dDev === undefined || sDev === undefined || file === undefined) throw new Error("the VM lacks its mdevs");
    const p = g.newProcess("P");
    const buf = p.mmap(VA, 4 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const src = Uint8Array.from({ length: 256 }, (_, i) => (i * 7 + 1) & 0xff);
    p.write(buf, src);

    const dBond = g.core.sva.bindDevice(dDev, p);
    const sBond = g.core.sva.bindDevice(sDev, p);
    expect(sBond.pasid).toBe(dBond.pasid);
    const gpasid = dBond.pasid;
    const host = vm.viommu.hostPasid(gpasid);
    expect(host).not.toBeNull();
    if (mode === "spid") expect(host).not.toBe(gpasid);
    // Bound through both mdevs' containers (vIOMMU devices 1 and 2; 0 is the assigned function).
    expect([...vm.viommu.boundOn(gpasid)].sort()).toEqual([1, 2]);

    const drv = new MdevGuest(file);
    expect(drv.programWq(gpasid)).toBe(DsaCmdErr.SUCCESS);
    expect(idxd.wq(0).pasid).toBe(host);
    const portal = new KvmEnqcmdPortal(vm, idxd.wq(1));
    const thread = new UserThread(p);

    const memmove = (dst: number, comp: number) =>
      encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + comp, src: buf, dst: buf + dst, size: src.length });
    const memfill = (dst: number, comp: number) =>
      encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + comp, pattern: 0x1122_3344_5566_7788n, dst: buf + dst, size: 64 });
    const filled = Array.from({ length: 64 }, (_, i) => [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11][i % 8]);

    expect(drv.submit(memmove(0x400, 2 * PAGE))).toBe(64);
    expect(thread.enqcmd(portal, memfill(0x800, 2 * PAGE + 0x40))).toBe("accepted");
    h.board.settle();
    expect(decodeCompletion(p.read(buf + 2 * PAGE, DSA_COMPLETION_SIZE)).status).toBe(DsaStatus.SUCCESS);
    expect(decodeCompletion(p.read(buf + 2 * PAGE + 0x40, DSA_COMPLETION_SIZE)).status).toBe(DsaStatus.SUCCESS);
    expect([...p.read(buf + 0x400, src.length)]).toEqual([...src]);
    expect([...p.read(buf + 0x800, 64)]).toEqual(filled);

    // The guest unbinds the shared-WQ mdev: the dedicated WQ keeps working with the same PASID, ENQCMD no longer reaches the device.
    g.core.sva.unbindDevice(sBond);
    h.board.settle();
    expect(vm.viommu.boundOn(gpasid)).toEqual([1]);
    expect(vm.viommu.hostPasid(gpasid)).toBe(host);
    expect(drv.submit(memmove(0xc00, 2 * PAGE + 0x80))).toBe(64);
    h.board.settle();
    expect(decodeCompletion(p.read(buf + 2 * PAGE + 0x80, DSA_COMPLETION_SIZE)).status).toBe(DsaStatus.SUCCESS);
    expect([...p.read(buf + 0xc00, src.length)]).toEqual([...src]);
    // KVM's translation is per PASID, not per device (BIND at the first bind, UNBIND at the last): the
    // guest's ENQCMD still carries the host PASID, and both WQs are on one function whose PASID entry the
    // dedicated WQ's binding keeps, so it still lands. Isolation is per function's PASID table, as on the host.
    expect(thread.enqcmd(portal, memfill(0xa00, 2 * PAGE + 0xc0))).toBe("accepted");
    h.board.settle();
    expect(decodeCompletion(p.read(buf + 2 * PAGE + 0xc0, DSA_COMPLETION_SIZE)).status).toBe(DsaStatus.SUCCESS);

    // Then the dedicated one: the WQ is disabled first, as the guest driver does.
    expect(drv.disableWq()).toBe(DsaCmdErr.SUCCESS);
    g.core.sva.unbindDevice(dBond);
    h.board.settle();
    expect(vm.viommu.boundOn(gpasid)).toEqual([]);
    // The last unbind took KVM's translation away: ENQCMD faults in the CPU now.
    expect(errnoOf(() => thread.enqcmd(portal, memfill(0x800, 2 * PAGE + 0x40)))).toBe(Errno.EFAULT);
    // Nothing the guest did through either container was refused by the host.
    expect(rec.ofKind("iommu.uapi-refused").map((e) => [e.ids, e.payload])).toEqual([]);
    vm.kill();
    h.board.settle();
    vdcm.removeMdev(swq);
    vdcm.removeMdev(dwq);
    expect(h.board.ioasid.allocated).toBe(0);
  });

  it("in the other order: the dedicated-WQ mdev unbound first, the shared WQ still takes ENQCMD with the PASID", () => {
    const { h, idxd, vdcm, dwq, swq, vm } = hostWithTwoMdevs("spid");
    const g = new Guest(vm);
    const [dDev, sDev] = g.mdevs;
    if (dDev === undefined || sDev === undefined) throw new Error("the VM lacks its mdevs");
    const p = g.newProcess("P");
    const buf = p.mmap(VA, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const dBond = g.core.sva.bindDevice(dDev, p);
    const sBond = g.core.sva.bindDevice(sDev, p);
    g.core.sva.unbindDevice(dBond);
    h.board.settle();
    expect(vm.viommu.boundOn(sBond.pasid)).toEqual([2]);
    const thread = new UserThread(p);
    const desc = encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + PAGE, pattern: 0x0101_0101_0101_0101n, dst: buf + 0x100, size: 32 });
    expect(thread.enqcmd(new KvmEnqcmdPortal(vm, idxd.wq(1)), desc)).toBe("accepted");
    h.board.settle();
    expect(decodeCompletion(p.read(buf + PAGE, DSA_COMPLETION_SIZE)).status).toBe(DsaStatus.SUCCESS);
    expect([...p.read(buf + 0x100, 32)]).toEqual(Array.from({ length: 32 }, () => 1));
    g.core.sva.unbindDevice(sBond);
    h.board.settle();
    vm.kill();
    h.board.settle();
    vdcm.removeMdev(swq);
    vdcm.removeMdev(dwq);
    expect(h.board.ioasid.allocated).toBe(0);
  });

  it("the assigned function and the dedicated-WQ mdev (two functions, two host domains) with one PASID: both DMAs land; unbinding the function leaves the mdev working", () => {
    // Identity guest PASIDs: an assigned function issues the PASID the guest programs, so it must be the host's.
    const { h, idxd, vdcm, dwq, swq, vm } = hostWithTwoMdevs("identity");
    const g = new Guest(vm);
    const dDev = g.mdevs[0];
    const file = vm.mdevFiles[0];
    if (dDev === undefined || file === undefined) throw new Error("the VM lacks its mdev");
    const p = g.newProcess("P");
    const buf = p.mmap(VA, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const src = Uint8Array.from({ length: 64 }, (_, i) => (i * 5 + 9) & 0xff);
    p.write(buf, src);
    const fBond = g.core.sva.bindDevice(g.device, p);
    const gpasid = fBond.pasid;
    const host = vm.viommu.hostPasid(gpasid);
    // The host driver's IOASID reference is taken at the PASID's first bind only.
    const refs = h.board.ioasid.refcount(asIoasid(host ?? 0));
    expect(g.dma({ pasid: gpasid, addr: buf + 0x200, length: 4, direction: "write", pattern: Uint8Array.of(5, 5, 5, 5) })).toBe("ok");
    const dBond = g.core.sva.bindDevice(dDev, p);
    expect(dBond.pasid).toBe(gpasid);
    expect([...vm.viommu.boundOn(gpasid)].sort()).toEqual([0, 1]);
    expect(h.board.ioasid.refcount(asIoasid(host ?? 0))).toBe(refs);

    expect(g.dma({ pasid: gpasid, addr: buf + 0x200, length: 4, direction: "write", pattern: Uint8Array.of(9, 8, 7, 6) })).toBe("ok");
    const drv = new MdevGuest(file);
    expect(drv.programWq(gpasid)).toBe(DsaCmdErr.SUCCESS);
    const memmove = (dst: number) => encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + PAGE, src: buf, dst: buf + dst, size: src.length });
    expect(drv.submit(memmove(0x400))).toBe(64);
    h.board.settle();
    expect([...p.read(buf + 0x200, 4)]).toEqual([9, 8, 7, 6]);
    expect([...p.read(buf + 0x400, src.length)]).toEqual([...src]);

    // The function's binding goes; the mdev's, over its own container, stays, and so does the driver's reference.
    const held = h.board.ioasid.refcount(asIoasid(host ?? 0));
    g.core.sva.unbindDevice(fBond);
    h.board.settle();
    expect(vm.viommu.boundOn(gpasid)).toEqual([1]);
    expect(g.dma({ pasid: gpasid, addr: buf + 0x200, length: 4, direction: "write", pattern: Uint8Array.of(1, 1, 1, 1) })).not.toBe("ok");
    p.write(buf + PAGE, new Uint8Array(DSA_COMPLETION_SIZE));
    expect(drv.submit(memmove(0x800))).toBe(64);
    h.board.settle();
    expect(decodeCompletion(p.read(buf + PAGE, DSA_COMPLETION_SIZE)).status).toBe(DsaStatus.SUCCESS);
    expect([...p.read(buf + 0x800, src.length)]).toEqual([...src]);
    expect(h.board.ioasid.refcount(asIoasid(host ?? 0))).toBe(held);

    expect(drv.disableWq()).toBe(DsaCmdErr.SUCCESS);
    g.core.sva.unbindDevice(dBond);
    h.board.settle();
    vm.kill();
    h.board.settle();
    vdcm.removeMdev(swq);
    vdcm.removeMdev(dwq);
    expect(idxd.wq(0).pasid).toBeNull();
    expect(h.board.ioasid.allocated).toBe(0);
  });
});
