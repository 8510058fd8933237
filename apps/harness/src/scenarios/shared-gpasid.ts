import { asIoasid } from "@vsva/kernel";
import { hostScenario } from "../world/host-scenario.js";
import { PATTERN, hexBytes } from "./sva-common.js";
import { type AccelProcess, type AccelVm, BUF, accelProcess, bootAccelVm, closeProcess, dedicatedMove, fillPattern, hostPasidOf, kvmTable, moveBytes, plugAccelWqs, sharedFill, startAccelVm } from "./accel-vm.js";
import { vfioOn } from "./vfio-common.js";
import { replayDeadDma, vmKillPoint } from "./vm-kill.js";

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
 * of a host PASID in that VM's IOASID set. P submits to its VM's
 * shared-WQ mdev by ENQCMD with IA32_PASID 101, and KVM's PASID
 * translation swaps 101 for its VM's host PASID; Q (102 in both VMs) opens
 * the guest idxd's dedicated WQ, and the VDCM writes the host PASID behind
 * 102 into the hardware WQ. The bytes land in each VM's own processes,
 * never the other's; the assigned function, which carries the guest's
 * number to the host IOMMU untranslated, reaches neither.
 */
export const sharedGpasid = hostScenario({
  name: "shared-gpasid",
  summary: "two VMs with SPID guest PASIDs both hand their first process guest PASID 101, on different host PASIDs; ENQCMD with 101 through KVM and dedicated-WQ MEMMOVEs through the VDCM land in each VM's own processes only",
  title: "Two VMs, one guest PASID: 101 in both, on different host PASIDs",
  platforms: ["vtd"],
  at: "kill VM 1 (its VMM process dies) after step STEP of the run; VM 2, with the same guest PASIDs, is checked to the end",
  body(outer) {
    const k = vmKillPoint(outer);
    const ctx = k.ctx;
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
    const v1 = bootAccelVm(ctx, vfio, acc, { id: 1, dev: devA, device: "dsa1", dedicatedWq: 0, sharedWq: 1, guestPasids: "spid", firstGuestPasid: SHARED_GPASID, onStart: (vm) => k.setVm(vm) });
    const v2 = startAccelVm(ctx, vfio, acc, { id: 2, dev: devB, device: "dsa2", dedicatedWq: 2, sharedWq: 3, guestPasids: "spid", firstGuestPasid: SHARED_GPASID });
    // VM 1's steps run (and count) until it is killed; VM 2's always.
    const onVm = <T>(id: number, label: string, fn: () => T): T | null => (id === 1 ? k.step(label, fn) : ctx.step(label, fn));
    // P first, so its guest PASID is each VM's first: 101. Q's is the next, 102, in both VMs too.
    const pStep = (av: AccelVm | null, id: number): AccelProcess | null =>
      av === null
        ? null
        : onVm(id, `VM ${id}'s process P maps its buffer at the shared GVA and binds the VM's shared-WQ mdev: its guest's virtual command hands it the VM's first guest PASID`, () => {
            const p = accelProcess(ctx, av, "P", VA, "shared");
            ctx.expect(p.pasid === SHARED_GPASID, `VM ${id}'s first guest PASID is ${SHARED_GPASID} (got ${p.pasid})`);
            return p;
          });
    const qStep = (av: AccelVm | null, id: number, hwWq: number): AccelProcess | null =>
      av === null
        ? null
        : onVm(id, `VM ${id}'s process Q opens the guest idxd's dedicated WQ: guest PASID ${SHARED_GPASID + 1} in its virtual WQCFG, the VDCM writes the host's into the hardware WQ`, () => {
            const q = accelProcess(ctx, av, "Q", VA, "dedicated");
            ctx.expect(q.pasid === SHARED_GPASID + 1 && av.gidxd.wq(0).pasid === SHARED_GPASID + 1, `VM ${id}'s guest reads back ${SHARED_GPASID + 1} from its virtual WQCFG (Q has ${q.pasid})`);
            ctx.expect(acc.idxd.wq(hwWq).pasid === hostPasidOf(q), `VM ${id}'s hardware dedicated WQ holds Q's host PASID, not the guest's ${SHARED_GPASID + 1}`);
            return q;
          });
    const p1 = pStep(v1, 1);
    const p2 = pStep(v2, 2);
    const q1 = qStep(v1, 1, 0);
    const q2 = qStep(v2, 2, 2);
    if (p2 === null || q2 === null) return;
    /** VM 1's processes, while VM 1 runs (the kill only falls between steps, so this holds for a whole step). */
    const vm1 = (): { readonly p: AccelProcess; readonly q: AccelProcess; readonly av: AccelVm } | null => (k.alive() && v1 !== null && p1 !== null && q1 !== null ? { p: p1, q: q1, av: v1 } : null);
    const untouched = (p: AccelProcess, at: number, what: string): void => {
      ctx.expect(p.mm.read(p.va + at, 64).every((b) => b === 0), `${p.av.vm.name}'s ${p.name}: its buffer at +0x${at.toString(16)} is untouched by ${what}`);
    };
    const hostOk = (id: number, av: AccelVm, p: AccelProcess): void => {
      const host = hostPasidOf(p);
      ctx.expect(host !== null && host !== SHARED_GPASID, `VM ${id}'s guest PASID ${SHARED_GPASID} is a host PASID of its own (got ${String(host)})`);
      ctx.expect(host !== null && h.ioasid.info(asIoasid(host))?.spid === SHARED_GPASID, `VM ${id}'s host PASID has SPID ${SHARED_GPASID}`);
      ctx.expect(kvmTable(av.vm).get(SHARED_GPASID) === host, `VM ${id}'s KVM table sends ${SHARED_GPASID} to ${String(host)}`);
    };
    const both = vm1();
    if (both !== null) {
      const hosts = [both.p, p2].map(hostPasidOf);
      ctx.step(`the host: guest PASID ${SHARED_GPASID} is host PASID ${hosts.map(String).join(" in VM 1 and ")} in VM 2, each attached as SPID ${SHARED_GPASID} in its own VM's IOASID set; KVM's tables and the hardware WQs hold each VM's own`, () => {
        ctx.expect(new Set(hosts).size === 2, `two host PASIDs (got ${hosts.join(", ")})`);
        hostOk(1, both.av, both.p);
        hostOk(2, v2, p2);
        const sets = hosts.map((x) => (x === null ? undefined : h.ioasid.info(asIoasid(x))?.set));
        ctx.expect(sets[0] !== undefined && sets[0] !== sets[1], "the two host PASIDs are in different IOASID sets");
      });
    } else {
      ctx.step(`the host: VM 2's guest PASID ${SHARED_GPASID} is host PASID ${String(hostPasidOf(p2))}, attached as SPID ${SHARED_GPASID} in VM 2's IOASID set (VM 1 is dead)`, () => hostOk(2, v2, p2));
    }
    const fill1 = vm1();
    if (fill1 !== null) {
      k.step(`VM 1's P: MEMFILL by ENQCMD with IA32_PASID = ${SHARED_GPASID}: KVM's translation puts VM 1's host PASID in the payload; VM 2's P, at the same GVA and guest PASID, sees nothing`, () => {
        sharedFill(ctx, fill1.p, 1);
        untouched(p2, BUF.fill, "VM 1's fill");
      });
    }
    ctx.step(`VM 2's P: MEMFILL by ENQCMD with the same IA32_PASID ${SHARED_GPASID}: VM 2's own host PASID${vm1() === null ? "" : "; VM 1's P still reads its own pattern"}`, () => {
      sharedFill(ctx, p2, 2);
      const a = vm1();
      if (a === null) return;
      const want = new Uint8Array(8);
      new DataView(want.buffer).setBigUint64(0, fillPattern(a.p.name, 1), true);
      ctx.expect(hexBytes(a.p.mm.read(a.p.va + BUF.fill + 56, 8)) === hexBytes(want), "VM 1's P still reads its own pattern");
    });
    ctx.step(`${vm1() === null ? "VM 2's Q" : "both Qs"}: MEMMOVE by MOVDIR64B through their dedicated-WQ mdevs (guest PASID ${SHARED_GPASID + 1} in both); each reads its own bytes, neither P's buffer is touched`, () => {
      const a = vm1();
      if (a !== null) {
        dedicatedMove(ctx, a.q, 1);
        untouched(q2, BUF.dst, "VM 1's move");
      }
      dedicatedMove(ctx, q2, 2);
      if (a !== null) ctx.expect(hexBytes(a.q.mm.read(a.q.va + BUF.dst, 64)) === hexBytes(moveBytes(a.q.name, 1)), "VM 1's Q still reads its own moved bytes");
      for (const p of a === null ? [p2] : [a.p, p2]) untouched(p, BUF.dst, "the moves");
    });
    const fn1 = vm1();
    if (fn1 !== null) {
      k.step(`VM 1's driver programs its assigned function dsa1 with guest PASID ${SHARED_GPASID}: the function's DMA carries the guest's number to the host IOMMU untranslated, where no PASID ${SHARED_GPASID} is bound: it reaches neither VM`, () => {
        const r = fn1.av.guest.dma({ pasid: SHARED_GPASID, addr: VA + BUF.fill + 0x100, length: PATTERN.length, direction: "write", pattern: PATTERN });
        ctx.require(r !== "ok", `an assigned function's DMA with a guest PASID of a SPID VM translates nothing (got ${r})`);
        for (const p of [fn1.p, p2]) ctx.require(p.mm.read(p.va + BUF.fill + 0x100, PATTERN.length).every((b) => b === 0), `${p.av.vm.name}'s ${p.name} sees no byte of it`);
      });
    }
    const close1 = vm1();
    if (close1 !== null) {
      k.step(`VM 1's P unbinds: the guest frees ${SHARED_GPASID}; VM 1's translation of it is gone, VM 2's stays`, () => {
        closeProcess(ctx, close1.p);
        ctx.expect(!kvmTable(close1.av.vm).has(SHARED_GPASID), `VM 1's KVM table no longer has ${SHARED_GPASID}`);
        ctx.expect(kvmTable(v2.vm).get(SHARED_GPASID) === hostPasidOf(p2), `VM 2's KVM table still sends ${SHARED_GPASID} to its host PASID`);
      });
    }
    ctx.step(`VM 2's P: MEMFILL by ENQCMD with ${SHARED_GPASID} again, and Q's MEMMOVE: still their own`, () => {
      sharedFill(ctx, p2, 3);
      dedicatedMove(ctx, q2, 3);
    });
    if (!k.alive() && v1 !== null) replayDeadDma(ctx, v1.slot.ep.dma, SHARED_GPASID, VA + BUF.fill + 0x100);
    ctx.step("every process left closes its WQ or unbinds", () => {
      const a = vm1();
      for (const p of a === null ? [p2, q2] : [a.q, p2, q2]) closeProcess(ctx, p);
    });
  },
});
