import { asVmId } from "@vsva/kernel";
import { Prot } from "@vsva/iommu-core";
import { DSA_COMPLETION_SIZE, DescFlag, DsaCmdErr, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { Vdcm } from "@vsva/vdcm";
import { MdevGuest } from "@vsva/vdcm/testing";
import { hostScenario } from "../world/host-scenario.js";
import { bootVmWithMdev } from "./guest-mdev-common.js";
import { hexBytes } from "./sva-common.js";
import { createMdev } from "./vdcm-common.js";
import { PAGE, vfioOn } from "./vfio-common.js";
import { vmKillPoint } from "./vm-kill.js";

/** Where the mdev sits in the guest's PCI hierarchy. */
const MDEV_BDF = { bus: 0, dev: 5, fn: 0 };
/** Fault round trips the scenario allows the descriptor (one page group each: source, destination, completion record). */
const MAX_ROUNDS = 8;

/**
 * A guest page fault through an mdev (`guest-page-fault` with the
 * accelerator's dedicated WQ in place of the assigned function): the guest's
 * MEMMOVE, block-on-fault, reads and writes pages its process mapped but
 * never touched. The accelerator's page requests carry the host PASID; the
 * host core gives them to the handler of the mdev the PASID is bound through
 * (VFIO's, as upstream finds the handler from the domain attached at the
 * PASID, drivers/iommu/io-pgfault.c: get_domain_for_iopf()), so they land in
 * the mdev's DMA fault region, not the host's IO page fault queue; the VMM
 * puts each in the guest's page request queue with the mdev's requester ID;
 * the guest pages in and answers; the VMM writes the answer to the mdev's
 * response ring and the descriptor goes on, until it completes.
 */
export const guestMdevPageFault = hostScenario({
  name: "guest-mdev-page-fault",
  summary: "a guest's block-on-fault MEMMOVE through an mdev's dedicated WQ to untouched pages: host PRQ → the mdev's VFIO fault region → the guest's page request queue → the guest pages in and responds → the descriptor completes",
  title: "A guest page fault through an mdev",
  platforms: ["vtd"],
  at: "kill VM 1 (its VMM process dies) after step STEP of the run, even with the accelerator blocked on the guest's page request: the host answers it, and the accelerator is left waiting on nothing, its WQ holding nothing of VM 1's",
  body(outer) {
    const k = vmKillPoint(outer);
    const ctx = k.ctx;
    const h = ctx.host;
    const accSlot = ctx.choose.int("the accelerator dsa2's slot", 1, 15, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const devSlot = ctx.choose.int("dsa0's slot (VM 1's assigned function)", 16, 31, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const VA = ctx.choose.int("the guest process's buffer", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
    const len = ctx.choose.int("MEMMOVE length", 1, 0x800);
    const vfio = vfioOn(h);
    const idxd = ctx.step("plug in dsa2; idxd probes it with a dedicated WQ for mdevs that may block on faults (WQCFG.BOF)", () =>
      h.addAccelerator("dsa2", accSlot, { wqs: [{ mode: "dedicated", size: 8, type: "mdev", bof: true }] }));
    ctx.defer("idxd is removed: WQs and device disabled, device reset", () => idxd.remove());
    const vdcm = ctx.step("the VDCM takes dsa2 (aux domains enabled on it)", () => new Vdcm({ kernel: h.kernel, ioasid: h.ioasid, core: h.core, vfio, parent: idxd.iommuDev }));
    const mm = { vmm: "qemu-vm1" };
    const mdev = createMdev(ctx, { idxd, vdcm }, "mdev0", 0, asVmId(1), mm);
    const group = mdev.vfioDevice?.group?.id;
    ctx.require(group !== undefined, "mdev0 has an IOMMU group");
    const g = bootVmWithMdev(ctx, vfio, { id: 1, dev: devSlot, device: "dsa0", mm, mdev: { group: group ?? -1, name: "mdev0", guestBdf: MDEV_BDF }, onStart: (vm) => k.setVm(vm) });
    if (g === null) return;
    const viommu = g.vm.viommu;
    const file = g.vm.mdevFiles[0];
    const dev = g.guest.mdevs[0];
    if (file === undefined || dev === undefined) {
      ctx.require(false, "VM 1 has its mdev");
      return;
    }
    const drv = new MdevGuest(file);
    const p = k.step("guest process P maps 3 pages and touches none of them; binds mdev0 with SVA", () => {
      const mmP = g.guest.newProcess("P");
      mmP.mmap(VA, 3 * PAGE, Prot.READ | Prot.WRITE);
      const bond = g.guest.core.sva.bindDevice(dev, mmP);
      ctx.bindSpace(viommu.hostPasid(bond.pasid) ?? bond.pasid, (addr) => {
        const m = mmP.lookup(addr);
        return m === null ? null : g.vm.hpa(m.pa + (addr - m.va));
      });
      return { mm: mmP, bond };
    });
    if (p === null) return;
    k.step("the guest's idxd programs mdev0's WQ with P's PASID (through the VDCM, which puts the host PASID in the hardware WQ)", () => {
      const err = drv.programWq(p.bond.pasid);
      ctx.expect(err === DsaCmdErr.SUCCESS, `ENABLE_WQ succeeds (CMDSTS 0x${err.toString(16)})`);
    });
    const before = { requests: idxd.hw.stats.pageRequests, guest: viommu.stats.pageRequests };
    k.step(`P submits a block-on-fault MEMMOVE of ${len} bytes by MOVDIR64B: its source page is not present, the accelerator sends a page request and waits`, () => {
      ctx.require(p.mm.lookup(VA) === null, "the source page is not present in the guest");
      const taken = drv.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR | DescFlag.BOF, completionAddr: VA + 2 * PAGE, src: VA, dst: VA + PAGE, size: len }));
      h.settle();
      ctx.expect(taken === 64, "the portal took the descriptor");
      ctx.expect(idxd.hw.blocked && idxd.hw.stats.pageRequests > before.requests, "the accelerator waits on a page request");
      ctx.require(p.mm.lookup(VA) === null, "the host did not fault the guest's page in");
    });
    k.step("the VMM takes the record from mdev0's fault region and queues it in the guest's page request queue with mdev0's requester ID", () => {
      ctx.expect(viommu.pollFaults() >= 1, "the VMM found a record in mdev0's fault region");
      ctx.expect(viommu.stats.pageRequests === before.guest + 1, "one page request went into the guest's queue");
    });
    k.step("the guest pages in and answers each request; the VMM passes each answer to mdev0's response ring; the accelerator goes on until the descriptor completes", () => {
      let rounds = 0;
      for (; rounds < MAX_ROUNDS; rounds++) {
        h.settle();
        if (viommu.pollFaults() === 0) break;
      }
      h.settle();
      ctx.expect(rounds < MAX_ROUNDS, `the descriptor stopped faulting (${rounds} more rounds)`);
      ctx.expect(viommu.stats.responses === viommu.stats.pageRequests, "every page request was answered");
      ctx.expect(viommu.stats.pageRequests - before.guest === idxd.hw.stats.pageRequests - before.requests, "each of the accelerator's page requests reached the guest");
      ctx.expect(!idxd.hw.blocked, "the accelerator no longer waits");
    });
    k.step("P reads its completion record and the destination by CPU", () => {
      const cr = decodeCompletion(p.mm.read(VA + 2 * PAGE, DSA_COMPLETION_SIZE));
      ctx.expect(cr.status === DsaStatus.SUCCESS, `the descriptor completed (status 0x${cr.status.toString(16)})`);
      ctx.expect(hexBytes(p.mm.read(VA + PAGE, len)) === hexBytes(new Uint8Array(len)), "the destination holds the source's (zero-filled) bytes");
    });
    k.step("the guest disables mdev0's WQ (the VDCM clears the hardware WQ) and P unbinds", () => {
      ctx.expect(drv.disableWq() === DsaCmdErr.SUCCESS, "DISABLE_WQ succeeds");
      g.guest.core.sva.unbindDevice(p.bond);
      ctx.unbindSpace(viommu.hostPasid(p.bond.pasid) ?? p.bond.pasid);
      ctx.expect(viommu.bound.size === 0, "nothing bound on the host for the guest");
    });
    if (!k.alive()) {
      ctx.step("after VM 1's death: the accelerator waits on no page request and its hardware WQ holds nothing of VM 1's", () => {
        h.settle();
        ctx.require(!idxd.hw.blocked, "the accelerator is not left blocked on the dead VM's page request");
        ctx.require(vdcm.heldPasids().length === 0, `the VDCM holds no host PASID in the hardware WQ (holds ${vdcm.heldPasids().map((x) => x.hpasid).join(", ")})`);
      });
    }
  },
});
