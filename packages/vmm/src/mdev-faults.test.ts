import { describe, expect, it } from "vitest";
import { asVmId } from "@vsva/kernel";
import { Prot } from "@vsva/iommu-core";
import { DSA_COMPLETION_SIZE, DescFlag, DsaCmdErr, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { plugIdxd } from "@vsva/idxd";
import { Vdcm } from "@vsva/vdcm";
import { MdevGuest } from "@vsva/vdcm/testing";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const VA = 0x7000_0000_0000;
const MDEV_BDF = { bus: 0, dev: 5, fn: 0 };
/** Rounds of the VMM's fault notification the guest's DMA may take (one page group each). */
const ROUNDS = 8;

/**
 * The host of guest-mdev.test.ts, its dedicated WQ allowing block-on-fault
 * (WQCFG.BOF, as accel-config's `block_on_fault` sets it), so a descriptor
 * with the BOF flag waits on a PRI page request instead of completing with a
 * page fault.
 */
function boot(guestPasids: "identity" | "spid") {
  const h = vmTestHost();
  const idxd = plugIdxd(h.board, { dev: 6, name: "dsa9", config: { wqs: [{ mode: "dedicated", size: 8, type: "mdev", bof: true }] } });
  const vdcm = new Vdcm({ kernel: h.board.kernel, ioasid: h.board.ioasid, core: h.board.core, vfio: h.vfio, parent: idxd.iommuDev });
  const mm = { vmm: "qemu-vm1" };
  const mdev = vdcm.createMdev("mdev0", idxd.wq(0), { vm: asVmId(1), mm });
  const group = mdev.vfioDevice?.group?.id;
  if (group === undefined) throw new Error("mdev0 has no IOMMU group");
  const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: 1 << 20, device: h.device, guestPasids, mm, mdevs: [{ group, name: "mdev0", guestBdf: MDEV_BDF }] });
  const g = new Guest(vm);
  const dev = g.mdevs[0];
  const file = vm.mdevFiles[0];
  if (dev === undefined || file === undefined) throw new Error("the VM has no mdev");
  const p = g.newProcess("P");
  // Three pages, none faulted in: the descriptor, its source and destination and its completion record all fault.
  const buf = p.mmap(VA, 3 * PAGE, Prot.READ | Prot.WRITE);
  const bond = g.core.sva.bindDevice(dev, p);
  const drv = new MdevGuest(file);
  expect(drv.programWq(bond.pasid)).toBe(DsaCmdErr.SUCCESS);
  return { h, idxd, vdcm, mdev, vm, g, p, buf, bond, drv };
}

describe("recoverable faults of a guest PASID on an mdev's dedicated WQ", () => {
  it.each(["identity", "spid"] as const)("(%s guest PASIDs) a block-on-fault MEMMOVE to pages the guest never touched: page requests → the mdev's VFIO fault ring → the guest's PRQ (with the mdev's requester ID) → the guest pages them in → its responses → the mdev's response ring → the WQ's descriptor completes in guest memory", (mode) => {
    const { h, idxd, vdcm, mdev, vm, g, p, buf, bond, drv } = boot(mode);
    expect(p.lookup(buf)).toBeNull();
    expect(p.lookup(buf + 2 * PAGE)).toBeNull();
    const desc = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR | DescFlag.BOF, completionAddr: buf + 2 * PAGE, src: buf, dst: buf + PAGE, size: 128 });
    expect(drv.submit(desc)).toBe(64);
    h.board.settle();
    // The device is blocked on its first page request; nothing reached the guest yet (the VMM has not polled).
    expect(idxd.hw.stats.pageRequests).toBeGreaterThanOrEqual(1);
    expect(vm.viommu.stats.pageRequests).toBe(0);
    let rounds = 0;
    for (; rounds < ROUNDS; rounds++) {
      // The fault eventfd fires: the VMM takes the records; the guest's PRQ thread and its response run on the clock.
      if (vm.viommu.pollFaults() === 0) break;
      h.board.settle();
    }
    expect(rounds).toBeGreaterThanOrEqual(1);
    expect(rounds).toBeLessThan(ROUNDS);
    expect(vm.viommu.stats.pageRequests).toBe(idxd.hw.stats.pageRequests);
    expect(vm.viommu.stats.responses).toBe(vm.viommu.stats.pageRequests);
    // The guest's own fault handling made the pages present (its table, its RAM), and the device wrote through them.
    const c = decodeCompletion(p.read(buf + 2 * PAGE, DSA_COMPLETION_SIZE));
    expect(c.status).toBe(DsaStatus.SUCCESS);
    expect(p.lookup(buf + PAGE)).not.toBeNull();
    expect([...p.read(buf + PAGE, 128)]).toEqual(new Array<number>(128).fill(0));
    expect(idxd.hw.blocked).toBe(false);

    expect(drv.disableWq()).toBe(DsaCmdErr.SUCCESS);
    g.core.sva.unbindDevice(bond);
    h.board.settle();
    vm.kill();
    h.board.settle();
    vdcm.removeMdev(mdev);
    expect(h.board.ioasid.allocated).toBe(0);
  });

  it("the request reaches the guest tagged with the mdev's requester ID, not the assigned function's, and nothing goes to the host's own fault queue", () => {
    const { h, vm, buf, drv, idxd } = boot("identity");
    const seen: number[] = [];
    const unsubscribe = vm.kernel.trace.subscribeSystem((e) => {
      if (e.context === vm.name && e.kind === "vtd.page-request") seen.push(Number((e.payload as { sid?: number }).sid));
    });
    const hostIopf: string[] = [];
    const unsub2 = h.board.kernel.trace.subscribeSystem((e) => {
      if (e.context === "host" && e.kind === "iopf.report") hostIopf.push(e.kind);
    });
    drv.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR | DescFlag.BOF, completionAddr: buf + 2 * PAGE, src: buf, dst: buf + PAGE, size: 64 }));
    h.board.settle();
    expect(vm.viommu.pollFaults()).toBeGreaterThanOrEqual(1);
    unsubscribe();
    unsub2();
    expect(seen.length).toBeGreaterThanOrEqual(1);
    expect(new Set(seen)).toEqual(new Set([vm.mdevSids[0]]));
    expect(hostIopf).toEqual([]);
    expect(idxd.hw.stats.pageRequests).toBe(1);
    expect(idxd.hw.blocked).toBe(true);
    // The VM dies with the request given to its guest and unanswered: VFIO's release answers the device (invalid), the
    // descriptor ends with its page fault status, and nothing of the VM is left.
    vm.kill();
    h.board.settle();
    expect(idxd.hw.blocked).toBe(false);
    expect(h.board.ioasid.allocated).toBe(0);
  });
});
