import { describe, expect, it } from "vitest";
import { asIoasid, asVmId } from "@vsva/kernel";
import { Prot } from "@vsva/iommu-core";
import { DSA_COMPLETION_SIZE, DescFlag, DsaCmdErr, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { Idxd, UserThread, openUserWq, plugIdxd } from "@vsva/idxd";
import { Vdcm } from "@vsva/vdcm";
import { MdevGuest } from "@vsva/vdcm/testing";
import { Guest } from "./guest.js";
import { MdevRegions } from "./mdev-regions.js";
import { PAGE } from "./guest-ram.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const RAM = 1 << 20;
const VA = 0x7000_0000_0000;
const MDEV_BDF = { bus: 0, dev: 5, fn: 0 };

/**
 * The host: an assigned function for the VM (vfio-pci), and the accelerator
 * driven by its host driver with a dedicated WQ of type mdev, lent to the
 * VDCM; the administrator creates the VM's mdev on it, naming the VM by its
 * VMM's mm, before the VMM starts.
 */
function hostWithMdev(guestPasids: "identity" | "spid") {
  const h = vmTestHost();
  const idxd = plugIdxd(h.board, { dev: 6, name: "dsa9", config: { wqs: [{ mode: "dedicated", size: 8, type: "mdev" }] } });
  const vdcm = new Vdcm({ kernel: h.board.kernel, ioasid: h.board.ioasid, core: h.board.core, vfio: h.vfio, parent: idxd.iommuDev });
  const mm = { vmm: "qemu-vm1" };
  const mdev = vdcm.createMdev("mdev0", idxd.wq(0), { vm: asVmId(1), mm });
  const group = mdev.vfioDevice?.group?.id;
  if (group === undefined) throw new Error("mdev0 has no IOMMU group");
  const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device, guestPasids, mm, mdevs: [{ group, name: "mdev0", guestBdf: MDEV_BDF }] });
  return { h, idxd, vdcm, mdev, vm };
}

describe("an mdev's dedicated WQ in a guest", () => {
  it.each(["identity", "spid"] as const)("(%s guest PASIDs) the guest binds its process to the mdev, programs its guest PASID into the virtual WQCFG, the hardware WQ holds the host PASID, and a MEMMOVE by MOVDIR64B lands in the guest process's buffer", (mode) => {
    const { h, idxd, vdcm, mdev, vm } = hostWithMdev(mode);
    // A host user holds a PASID already, so the host's numbers are not the guest's own (1 up) by chance.
    const other = h.board.ioasid.allocSet({ hostUser: 1 }, 1, "none");
    const taken = h.board.ioasid.alloc(other, 1, 1000);
    const g = new Guest(vm);
    const dev = g.mdevs[0];
    const file = vm.mdevFiles[0];
    if (dev === undefined || file === undefined) throw new Error("the VM has no mdev");
    const p = g.newProcess("P");
    const buf = p.mmap(VA, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const src = Uint8Array.from({ length: 200 }, (_, i) => (i * 13 + 7) & 0xff);
    p.write(buf, src);
    const bond = g.core.sva.bindDevice(dev, p);
    const host = vm.viommu.hostPasid(bond.pasid);
    expect(host).not.toBeNull();
    if (mode === "spid") expect(host).not.toBe(bond.pasid);
    // Bound on the mdev's container only (device 1: the VM's first mdev), not on the assigned function's.
    expect(vm.viommu.boundOn(bond.pasid)).toEqual([1]);
    // The guest's idxd driver (through the VMM's accesses to the mdev's regions) programs its WQ with the guest PASID.
    const drv = new MdevGuest(file);
    expect(drv.programWq(bond.pasid)).toBe(DsaCmdErr.SUCCESS);
    expect(drv.readbackPasid()).toBe(bond.pasid);
    expect(idxd.wq(0).pasid).toBe(host);
    expect(h.board.ioasid.info(asIoasid(host ?? 0))?.spid).toBe(bond.pasid);

    const desc = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + PAGE, src: buf, dst: buf + 0x400, size: src.length });
    expect(drv.submit(desc)).toBe(64);
    h.board.settle();
    // The guest polls its completion record and reads the result by CPU, in its own address space.
    expect(decodeCompletion(p.read(buf + PAGE, DSA_COMPLETION_SIZE)).status).toBe(DsaStatus.SUCCESS);
    expect([...p.read(buf + 0x400, src.length)]).toEqual([...src]);

    expect(drv.disableWq()).toBe(DsaCmdErr.SUCCESS);
    expect(idxd.wq(0).pasid).toBeNull();
    g.core.sva.unbindDevice(bond);
    h.board.settle();
    vm.kill();
    h.board.settle();
    vdcm.removeMdev(mdev);
    h.board.ioasid.free(other, taken);
    expect(h.board.ioasid.allocated).toBe(0);
  });

  it.each(["identity", "spid"] as const)("(%s guest PASIDs) the guest's own idxd driver probes the mdev through the VMM's region accesses, a user WQ file binds the process and programs its PASID, and MEMMOVE by MOVDIR64B completes in guest memory", (mode) => {
    const { h, idxd, vdcm, mdev, vm } = hostWithMdev(mode);
    const g = new Guest(vm);
    const dev = g.mdevs[0];
    const file = vm.mdevFiles[0];
    if (dev === undefined || file === undefined) throw new Error("the VM has no mdev");
    // The guest's PCI core before the driver's probe: memory space and bus mastering on, the PASID capability enabled
    // (pci_enable_device, pci_set_master, pci_enable_pasid), through the mdev's config region.
    new MdevGuest(file).enablePasid();
    const gidxd = Idxd.probe({ kernel: vm.kernel, core: g.core, iommuDev: dev, hw: new MdevRegions(file), config: { wqs: [{ mode: "dedicated", size: 4, type: "user" }] }, name: "dsa0" });
    const p = g.newProcess("P");
    const buf = p.mmap(VA, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const src = Uint8Array.from({ length: 300 }, (_, i) => (i * 29 + 3) & 0xff);
    p.write(buf, src);
    const wqFile = openUserWq(gidxd, 0, new UserThread(p));
    const gpasid = gidxd.wq(0).pasid;
    expect(gpasid).not.toBeNull();
    const host = vm.viommu.hostPasid(gpasid ?? 0);
    // The guest reads back its own PASID; the hardware WQ holds the host's.
    expect(idxd.wq(0).pasid).toBe(host);
    expect(h.board.ioasid.info(asIoasid(host ?? 0))?.spid).toBe(gpasid);
    expect(wqFile.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + PAGE, src: buf, dst: buf + 0x400, size: src.length }))).toBe("posted");
    h.board.settle();
    expect(wqFile.readCompletion(buf + PAGE).status).toBe(DsaStatus.SUCCESS);
    expect([...p.read(buf + 0x400, src.length)]).toEqual([...src]);
    // Close: drain, clear the WQ's PASID (the VDCM clears the hardware WQ), unbind.
    wqFile.close();
    h.board.settle();
    // The WQ re-enabled without a guest PASID: the VDCM gives it the mdev's aux-domain PASID, never the process's host PASID again.
    expect(host).not.toBeNull();
    expect(idxd.wq(0).pasid).not.toBe(host);
    gidxd.remove();
    vm.kill();
    h.board.settle();
    vdcm.removeMdev(mdev);
    expect(h.board.ioasid.allocated).toBe(0);
  });
});
