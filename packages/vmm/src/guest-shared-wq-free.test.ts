import { describe, expect, it } from "vitest";
import { TraceRecorder, asVmId } from "@vsva/kernel";
import { Prot } from "@vsva/iommu-core";
import { DescFlag, DsaOpcode, encodeDescriptor } from "@vsva/dsa";
import { UserThread, plugIdxd } from "@vsva/idxd";
import { Vdcm } from "@vsva/vdcm";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { KvmEnqcmdPortal } from "./kvm-portal.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const RAM = 1 << 20;
const VA = 0x7000_0000_0000;

/**
 * A VM killed while its guest's descriptors still sit in a shared WQ. VFIO
 * releases the mdev's device file before it dissolves the container (which
 * unbinds and frees the VM's PASIDs): the VDCM drains every PASID of the VM
 * there, so the descriptors complete while their PASID still translates to
 * the dead VM's memory, and before the ID is reclaimed and could be handed
 * to someone else. (Found by this test: with a drain queued only on FREE,
 * the ID was reclaimed first.)
 */
describe("a VM killed with ENQCMD descriptors queued on an mdev's shared WQ (a stepwise device)", () => {
  it("the VDCM drains the host PASID at the mdev's release, before the container's unbind and free reclaim it; every queued descriptor completes", () => {
    const h = vmTestHost();
    const idxd = plugIdxd(h.board, { dev: 6, name: "dsa9", hw: { mode: "stepwise" }, config: { wqs: [{ mode: "shared", size: 8, type: "mdev" }] } });
    const vdcm = new Vdcm({ kernel: h.board.kernel, ioasid: h.board.ioasid, core: h.board.core, vfio: h.vfio, parent: idxd.iommuDev });
    const mm = { vmm: "qemu-vm1" };
    const mdev = vdcm.createMdev("mdev1", idxd.wq(0), { vm: asVmId(1), mm });
    const group = mdev.vfioDevice?.group?.id ?? -1;
    const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device, guestPasids: "spid", mm, mdevs: [{ group, name: "mdev1", guestBdf: { bus: 0, dev: 5, fn: 0 } }] });
    const g = new Guest(vm);
    const dev = g.mdevs[0];
    if (dev === undefined) throw new Error("the VM has no mdev");
    const p = g.newProcess("P");
    const buf = p.mmap(VA, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const bond = g.core.sva.bindDevice(dev, p);
    const hpasid = vm.viommu.hostPasid(bond.pasid);
    if (hpasid === null) throw new Error("not bound on the host");
    const portal = new KvmEnqcmdPortal(vm, idxd.wq(0));
    const thread = new UserThread(p);
    for (let i = 0; i < 3; i++) {
      const desc = encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + PAGE + 32 * i, pattern: 0x11n * BigInt(i + 1), dst: buf + 64 * i, size: 64 });
      expect(thread.enqcmd(portal, desc)).toBe("accepted");
    }
    const completedBefore = idxd.hw.stats.completed;
    const rec = new TraceRecorder(h.board.kernel.trace, { system: true });
    vm.kill();
    h.board.settle();
    expect(idxd.hw.stats.completed - completedBefore).toBe(3);
    const order = rec.events
      .filter((e) => (e.kind === "vdcm.drain-pasid" && e.ids.hpasid === hpasid) || (e.kind === "ioasid.reclaim" && e.ids.ioasid === hpasid))
      .map((e) => e.kind);
    expect(order).toEqual(["vdcm.drain-pasid", "ioasid.reclaim"]);
    expect(mdev.drainsPending).toEqual([]);
    vdcm.removeMdev(mdev);
    expect(h.board.ioasid.allocated).toBe(0);
  });
});
