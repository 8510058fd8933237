import { describe, expect, it } from "vitest";
import { Errno, asVmId } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { Prot } from "@vsva/iommu-core";
import { DSA_COMPLETION_SIZE, DescFlag, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { UserThread, plugIdxd } from "@vsva/idxd";
import { Vdcm } from "@vsva/vdcm";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { KvmEnqcmdPortal } from "./kvm-portal.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const RAM = 1 << 20;
const VA = 0x7000_0000_0000;

describe("an mdev's shared WQ in a guest, fed by ENQCMD through KVM's PASID translation", () => {
  it.each(["identity", "spid"] as const)("(%s guest PASIDs) the guest thread's IA32_PASID holds the guest PASID; KVM's translation puts the host PASID in the payload; MEMFILL lands in the guest process's buffer", (guestPasids) => {
    const h = vmTestHost();
    const idxd = plugIdxd(h.board, { dev: 6, name: "dsa9", config: { wqs: [{ mode: "shared", size: 8, type: "mdev" }] } });
    const vdcm = new Vdcm({ kernel: h.board.kernel, ioasid: h.board.ioasid, core: h.board.core, vfio: h.vfio, parent: idxd.iommuDev });
    const mm = { vmm: "qemu-vm1" };
    const mdev = vdcm.createMdev("mdev1", idxd.wq(0), { vm: asVmId(1), mm });
    const group = mdev.vfioDevice?.group?.id ?? -1;
    // A host user holds a PASID already, so the host's numbers are not the guest's own (1 up) by chance.
    const other = h.board.ioasid.allocSet({ hostUser: 1 }, 1, "none");
    const taken = h.board.ioasid.alloc(other, 1, 1000);
    const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device, guestPasids, mm, mdevs: [{ group, name: "mdev1", guestBdf: { bus: 0, dev: 5, fn: 0 } }] });
    const g = new Guest(vm);
    const dev = g.mdevs[0];
    if (dev === undefined) throw new Error("the VM has no mdev");
    const p = g.newProcess("P");
    const buf = p.mmap(VA, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const bond = g.core.sva.bindDevice(dev, p);
    const host = vm.viommu.hostPasid(bond.pasid);
    expect(host).not.toBeNull();
    if (guestPasids === "spid") expect(host).not.toBe(bond.pasid);
    // The portal page QEMU maps into the guest: the guest's stores reach the device's portal, the CPU translating the PASID.
    const portal = new KvmEnqcmdPortal(vm, idxd.wq(0));
    const thread = new UserThread(p);
    const desc = encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + PAGE, pattern: 0x0807_0605_0403_0201n, dst: buf + 0x100, size: 32 });
    expect(thread.enqcmd(portal, desc)).toBe("accepted");
    // IA32_PASID holds the guest's number (the #GP fix-up loaded it from the guest process's PASID).
    expect(thread.ia32Pasid & 0xf_ffff).toBe(bond.pasid);
    h.board.settle();
    expect(decodeCompletion(p.read(buf + PAGE, DSA_COMPLETION_SIZE)).status).toBe(DsaStatus.SUCCESS);
    expect([...p.read(buf + 0x100, 32)]).toEqual(Array.from({ length: 32 }, (_, i) => (i % 8) + 1));
    // Unbound: KVM's translation is gone, so the guest's next ENQCMD faults instead of reaching the device.
    g.core.sva.unbindDevice(bond);
    h.board.settle();
    expect(errnoOf(() => thread.enqcmd(portal, desc))).toBe(Errno.EFAULT);
    vm.kill();
    h.board.settle();
    vdcm.removeMdev(mdev);
    h.board.ioasid.free(other, taken);
    expect(h.board.ioasid.allocated).toBe(0);
  });
});
