import { asIoasid } from "@vsva/kernel";
import { hostScenario } from "../world/host-scenario.js";
import { PATTERN, hexBytes } from "./sva-common.js";
import { type AccelProcess, type AccelVm, BUF, accelProcess, closeProcess, dedicatedMove, hostPasidOf, kvmTable, moveBytes, plugAccelWqs, sharedFill, startAccelVm } from "./accel-vm.js";
import { vfioOn } from "./vfio-common.js";

/** The guest PASID both VMs are handed (the SPID example of the IOASID design). */
export const SHARED_GPASID = 101;

/**
 * Two VMs with guest PASID namespaces of their own (SPIDs: the IOASID
 * design's "IOASID Set Private ID", Documentation/driver-api/ioasid.rst as
 * proposed with the 2020 vSVA series, whose example is two VMs both holding
 * guest PASID 101 on host PASIDs 201 and 202). Each VMM starts its VM's
 * guest PASIDs at 101 (the host partitions the guest's range; the guest's
 * virtual command cannot ask for one), so each guest's first process gets
 * 101 from its own virtual command, and the host attaches 101 as the SPID
 * of a host PASID in that VM's IOASID set. Each process works through mdevs
 * of one accelerator: a dedicated WQ (the VDCM writes the host PASID behind
 * the guest's 101 into the hardware WQ) and a shared WQ (ENQCMD: KVM's
 * PASID translation swaps 101 for the VM's host PASID). The bytes land in
 * each VM's own process, never the other's; the assigned function, which
 * carries the guest's number to the host IOMMU untranslated, reaches
 * neither.
 */
export const sharedGpasid = hostScenario({
  name: "shared-gpasid",
  summary: "two VMs with SPID guest PASIDs both hand their process guest PASID 101, on different host PASIDs; dedicated-WQ MEMMOVE and ENQCMD MEMFILL through mdevs land in each VM's own process only",
  title: "Two VMs, one guest PASID: 101 in both, on different host PASIDs",
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const slot = (what: string, lo: number, hi: number): number => ctx.choose.int(what, lo, hi, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const devAcc = slot("the accelerator's slot", 1, 10);
    const devA = slot("dsa1's slot (VM 1)", 11, 20);
    const devB = slot("dsa2's slot (VM 2)", 21, 31);
    const VA = ctx.choose.int("both processes' buffer (the same GVA in each guest)", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
    const vfio = vfioOn(h);
    const acc = plugAccelWqs(
      ctx,
      vfio,
      devAcc,
      [
        { mode: "dedicated", type: "mdev" },
        { mode: "shared", type: "mdev" },
        { mode: "dedicated", type: "mdev" },
        { mode: "shared", type: "mdev" },
      ],
      "plug in the accelerator dsa0; idxd probes it: a dedicated and a shared WQ for each VM's mdevs",
    );
    const vms: AccelVm[] = [
      startAccelVm(ctx, vfio, acc, { id: 1, dev: devA, device: "dsa1", dedicatedWq: 0, sharedWq: 1, guestPasids: "spid", firstGuestPasid: SHARED_GPASID }),
      startAccelVm(ctx, vfio, acc, { id: 2, dev: devB, device: "dsa2", dedicatedWq: 2, sharedWq: 3, guestPasids: "spid", firstGuestPasid: SHARED_GPASID }),
    ];
    const ps: AccelProcess[] = vms.map((av, i) =>
      ctx.step(`VM ${i + 1}'s process P${i + 1} maps its buffer at the same GVA, opens the guest idxd's dedicated WQ (virtual command: a guest PASID), binds the shared-WQ mdev and ${av.vm.device.name}`, () => {
        const p = accelProcess(ctx, av, `P${i + 1}`, VA, { dedicated: true, function: true });
        ctx.expect(p.pasid === SHARED_GPASID, `VM ${i + 1}'s first guest PASID is ${SHARED_GPASID} (got ${p.pasid})`);
        ctx.expect(av.gidxd.wq(0).pasid === SHARED_GPASID, `VM ${i + 1}'s guest reads back ${SHARED_GPASID} from its virtual WQCFG`);
        return p;
      }),
    );
    ctx.step(`the host: guest PASID ${SHARED_GPASID} is a different host PASID in each VM, each attached as SPID ${SHARED_GPASID} in its own VM's IOASID set; the hardware WQs and KVM's tables hold each VM's own`, () => {
      const hosts = ps.map(hostPasidOf);
      ctx.expect(hosts.every((x) => x !== null && x !== SHARED_GPASID) && new Set(hosts).size === 2, `two host PASIDs, neither ${SHARED_GPASID} (got ${hosts.join(", ")})`);
      const infos = hosts.map((x) => (x === null ? undefined : h.ioasid.info(asIoasid(x))));
      ctx.expect(infos.every((i) => i?.spid === SHARED_GPASID), `each host PASID's SPID is ${SHARED_GPASID}`);
      ctx.expect(infos[0]?.set !== undefined && infos[0].set !== infos[1]?.set, "the two host PASIDs are in different IOASID sets");
      ctx.expect(acc.idxd.wq(0).pasid === hosts[0] && acc.idxd.wq(2).pasid === hosts[1], "each VM's hardware dedicated WQ holds its own host PASID (the VDCM's translation of the guest's 101)");
      for (const [i, av] of vms.entries()) {
        const t = kvmTable(av.vm);
        ctx.expect(t.get(SHARED_GPASID) === hosts[i], `VM ${i + 1}'s KVM table sends ${SHARED_GPASID} to ${String(hosts[i])}`);
      }
    });
    const [p1, p2] = ps;
    if (p1 === undefined || p2 === undefined) return;
    const untouched = (p: AccelProcess, what: string): void => {
      ctx.expect(p.mm.read(p.va + BUF.dst, 64).every((b) => b === 0), `${p.av.vm.name}'s ${p.name}: its destination is untouched by ${what}`);
    };
    ctx.step(`VM 1's P1: MEMMOVE by MOVDIR64B through its dedicated-WQ mdev (guest PASID ${SHARED_GPASID}); VM 2's P2, at the same GVA and guest PASID, sees nothing`, () => {
      dedicatedMove(ctx, p1, 1);
      untouched(p2, "VM 1's move");
    });
    ctx.step(`VM 2's P2: MEMMOVE through its own dedicated-WQ mdev; VM 1's P1 still reads its own bytes`, () => {
      dedicatedMove(ctx, p2, 1);
      ctx.expect(hexBytes(p1.mm.read(p1.va + BUF.dst, 64)) === hexBytes(moveBytes(p1.name, 1)), "VM 1's P1 still reads its own moved bytes");
    });
    ctx.step(`both: MEMFILL by ENQCMD with IA32_PASID = ${SHARED_GPASID}; KVM's translation sends each to its own VM's host PASID and each process reads its own pattern`, () => {
      sharedFill(ctx, p1, 1);
      sharedFill(ctx, p2, 1);
    });
    ctx.step(`VM 1's driver programs its assigned function dsa1 with guest PASID ${SHARED_GPASID}: the function's DMA carries the guest's number to the host IOMMU untranslated, where no PASID ${SHARED_GPASID} is bound: it reaches neither VM`, () => {
      const r = vms[0]?.guest.dma({ pasid: SHARED_GPASID, addr: VA + BUF.fill + 0x100, length: PATTERN.length, direction: "write", pattern: PATTERN });
      ctx.require(r !== "ok", `an assigned function's DMA with a guest PASID of a SPID VM translates nothing (got ${String(r)})`);
      for (const p of ps) ctx.require(p.mm.read(p.va + BUF.fill + 0x100, PATTERN.length).every((b) => b === 0), `${p.av.vm.name}'s ${p.name} sees no byte of it`);
    });
    ctx.step(`VM 1's P1 closes its WQ and unbinds: the guest frees ${SHARED_GPASID}; VM 1's translation of it is gone, VM 2's stays`, () => {
      closeProcess(ctx, p1);
      ctx.expect(vms[0] !== undefined && !kvmTable(vms[0].vm).has(SHARED_GPASID), `VM 1's KVM table no longer has ${SHARED_GPASID}`);
      ctx.expect(vms[1] !== undefined && kvmTable(vms[1].vm).get(SHARED_GPASID) === hostPasidOf(p2), `VM 2's KVM table still sends ${SHARED_GPASID} to its host PASID`);
    });
    ctx.step(`VM 2's P2: MEMFILL by ENQCMD with ${SHARED_GPASID} again: still its own`, () => {
      sharedFill(ctx, p2, 2);
      dedicatedMove(ctx, p2, 2);
    });
    ctx.step("VM 2's P2 closes its WQ and unbinds", () => {
      closeProcess(ctx, p2);
    });
  },
});
