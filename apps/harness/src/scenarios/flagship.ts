import { type Mm, Prot } from "@vsva/iommu-core";
import { DSA_COMPLETION_SIZE, DescFlag, DsaOpcode, DsaStatus, encodeDescriptor } from "@vsva/dsa";
import { type Idxd, type IdxdUserFile, UserThread, openUserWq } from "@vsva/idxd";
import { type StepContext, hostScenario } from "../world/host-scenario.js";
import { vmKillPoint } from "./vm-kill.js";
import { type AccelProcess, type AccelVm, BUF, accelProcess, bootAccelVm, closeProcess, FN_DMA, dedicatedMove, fillPattern, functionDma, hostPasidOf, killVm, kvmTable, moveBytes, plugAccelWqs, sharedFill } from "./accel-vm.js";
import { PATTERN, hexBytes, mmResolver } from "./sva-common.js";
import { vfioOn } from "./vfio-common.js";

/** The accelerator's WQs: each VM's dedicated and shared WQ lent to the VDCM, then the host's own user WQs. */
const WQS = [
  { mode: "dedicated", type: "mdev" },
  { mode: "shared", type: "mdev" },
  { mode: "dedicated", type: "mdev" },
  { mode: "shared", type: "mdev" },
  { mode: "dedicated", type: "user" },
  { mode: "shared", type: "user" },
] as const;
const VM_WQS = { 1: { dedicatedWq: 0, sharedWq: 1 }, 2: { dedicatedWq: 2, sharedWq: 3 } } as const;
const HOST_DWQ = 4;
const HOST_SWQ = 5;
/** A native host process on the accelerator's user WQs (idxd's char devices). */
interface HostUser {
  readonly name: string;
  readonly mm: Mm;
  readonly va: number;
  readonly files: readonly IdxdUserFile[];
}

function hostUser(ctx: StepContext, idxd: Idxd, name: string, va: number, wqs: readonly number[]): HostUser {
  const mm = ctx.host.newMm(name);
  mm.mmap(va, BUF.size, Prot.READ | Prot.WRITE, { populate: true });
  const thread = new UserThread(mm);
  const files = wqs.map((w) => {
    const f = openUserWq(idxd, w, thread);
    ctx.defer(`${name} closes ${f.wq.name} (if still open)`, () => f.close());
    return f;
  });
  const pasid = files[0]?.pasid;
  if (pasid !== undefined) ctx.bindSpace(pasid, mmResolver(mm));
  return { name, mm, va, files };
}

/** Each of the host user's files does one descriptor: MEMMOVE by MOVDIR64B on a dedicated WQ, MEMFILL by ENQCMD on a shared one; checked by CPU reads. */
function hostWork(ctx: StepContext, u: HostUser, round: number): void {
  for (const [i, f] of u.files.entries()) {
    const rec = u.va + BUF.records + i * 0x40;
    u.mm.write(rec, new Uint8Array(DSA_COMPLETION_SIZE));
    if (f.wq.mode === "dedicated") {
      const data = moveBytes(u.name, round);
      u.mm.write(u.va + BUF.src, data);
      f.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: rec, src: u.va + BUF.src, dst: u.va + BUF.dst, size: data.length }));
      ctx.host.settle();
      ctx.expect(f.readCompletion(rec).status === DsaStatus.SUCCESS && hexBytes(u.mm.read(u.va + BUF.dst, data.length)) === hexBytes(data), `host ${u.name}: its MEMMOVE on ${f.wq.name} lands in its buffer`);
    } else {
      const pattern = fillPattern(u.name, round);
      const r = f.submit(encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: rec, pattern, dst: u.va + BUF.fill, size: 64 }));
      ctx.host.settle();
      const want = new Uint8Array(8);
      new DataView(want.buffer).setBigUint64(0, pattern, true);
      ctx.expect(r === "accepted" && f.readCompletion(rec).status === DsaStatus.SUCCESS && hexBytes(u.mm.read(u.va + BUF.fill + 56, 8)) === hexBytes(want), `host ${u.name}: its MEMFILL by ENQCMD on ${f.wq.name} lands in its buffer`);
    }
  }
}

/** A VM's processes: P on both its mdevs (one PASID), Q on its shared-WQ mdev, R on its assigned function. */
type Trio = readonly [AccelProcess, AccelProcess, AccelProcess];

/** One round of a VM's work: P's MEMMOVE by MOVDIR64B and MEMFILL by ENQCMD, Q's MEMFILL by ENQCMD, R's SVA DMA through the assigned function. */
function vmWork(ctx: StepContext, [p, q, r]: Trio, round: number): void {
  dedicatedMove(ctx, p, round);
  sharedFill(ctx, p, round);
  sharedFill(ctx, q, round);
  functionDma(ctx, r, round);
}

/**
 * P, which opened the guest idxd's dedicated WQ, binds the shared-WQ mdev
 * too: the guest gives its mm's one PASID again, the vIOMMU programs it in
 * that device's PASID table, and the host binds it over that mdev's own
 * container (a guest PASID may be bound on several devices behind the
 * vIOMMU, as intel_svm_bind_gpasid() allows in drivers/iommu/intel/svm.c).
 * KVM's translation of the PASID was made at its first bind and is reused.
 */
function bindBoth(ctx: StepContext, p: AccelProcess): void {
  const { guest, vm } = p.av;
  const host = hostPasidOf(p);
  const bond = guest.core.sva.bindDevice(p.av.sharedDev, p.mm);
  // Functional: after an injected failure (KVM's table page at the first bind, say) these may not hold.
  ctx.expect(bond.pasid === p.pasid, `${vm.name}'s ${p.name} binds the shared-WQ mdev with its one PASID (${bond.pasid}, had ${p.pasid})`);
  ctx.expect(host !== null && hostPasidOf(p) === host, `${vm.name}'s ${p.name}: the same host PASID behind it on both mdevs`);
  ctx.expect(kvmTable(vm).get(p.pasid) === host, `${vm.name}: KVM translates ${p.name}'s guest PASID ${p.pasid} to host PASID ${String(host)}`);
}

/**
 * The flagship (`vsva` with no arguments): the whole of vSVA on one host.
 * One DSA-like accelerator serves everyone: its host driver (idxd) keeps a
 * dedicated and a shared user WQ for native processes (H1 on both, H2 on
 * the shared one), and lends a dedicated and a shared WQ per VM to the VDCM
 * as mdevs. Each VM also has a function of its own (vfio-pci). In each
 * guest, the guest's own idxd drives its dedicated-WQ mdev through the
 * VMM's region accesses (the VDCM puts the host PASID in the hardware WQ)
 * and process P opens it; process Q submits to the shared-WQ mdev by
 * ENQCMD (KVM's PASID translation puts the host PASID in each payload);
 * process R's driver runs SVA DMA through the assigned function (nested
 * translation). P also binds the shared-WQ mdev and submits to it by
 * ENQCMD with its one PASID: each device behind the vIOMMU has a container,
 * so a domain, of its own, and the host binds the PASID over each.
 * Every byte lands in its own process, checked by CPU reads, and every
 * invariant holds after every step. `--at STEP` kills VM 1 after that step
 * (`vsva crash-sweep flagship` tries each): nothing of it leaks, and VM 2's
 * and the host users' later work still lands.
 */
export const flagship = hostScenario({
  name: "flagship",
  summary: "two guests, three processes each, beside native host users on one accelerator: dedicated WQs through the guests' own idxd on VDCM mdevs, shared WQs by ENQCMD through KVM (one process on both WQs with one PASID), SVA DMA on assigned functions; --at STEP kills VM 1 (vsva crash-sweep flagship)",
  title: "vSVA: two guests and native users share one accelerator",
  platforms: ["vtd"],
  at: "kill VM 1 (its VMM process dies) after step STEP of the run",
  body(outer) {
    const slot = (what: string, lo: number, hi: number): number => outer.choose.int(what, lo, hi, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const devAcc = slot("the accelerator's slot", 1, 10);
    const devA = slot("dsa1's slot (VM 1)", 11, 20);
    const devB = slot("dsa2's slot (VM 2)", 21, 31);
    const GVA = outer.choose.int("the guest processes' buffers", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
    const HVA = outer.choose.int("the host users' buffers", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
    // VM 1 can be killed after any step (--at); its later steps are left out through `alive()`.
    const k = vmKillPoint(outer);
    const ctx = k.ctx;
    const alive = (): boolean => k.alive();
    const vfio = vfioOn(ctx.host);
    const acc = plugAccelWqs(ctx, vfio, devAcc, WQS, "plug in the accelerator dsa0; idxd probes it: a dedicated and a shared WQ lent to each VM's mdevs, a dedicated and a shared user WQ for the host's own processes");
    const h1 = ctx.step(`host process H1 opens the dedicated and the shared user WQ (one PASID for its mm; the dedicated WQ's WQCFG gets it)`, () => hostUser(ctx, acc.idxd, "H1", HVA, [HOST_DWQ, HOST_SWQ]));
    const h2 = ctx.step(`host process H2 opens the shared user WQ`, () => hostUser(ctx, acc.idxd, "H2", HVA, [HOST_SWQ]));
    const hostRound = (when: string, round: number): void => {
      ctx.step(`host H1: MEMMOVE by MOVDIR64B and MEMFILL by ENQCMD; H2: MEMFILL by ENQCMD ${when}`, () => {
        hostWork(ctx, h1, round);
        hostWork(ctx, h2, round);
      });
    };
    const processes = (av: AccelVm): Trio | null => {
      const id = av.vm.id;
      const made: AccelProcess[] = [];
      const uses = [
        ["P", "dedicated", "opens its guest idxd's dedicated WQ: virtual command for a PASID, the guest's WQCFG write reaches the VDCM, which programs the hardware WQ with the host PASID"],
        ["Q", "shared", "binds the shared-WQ mdev: the host's bind tells KVM, whose PASID translation now maps Q's guest PASID"],
        ["R", "function", `binds ${av.vm.device.name} with SVA: the host binds the guest's table nested over guest RAM`],
      ] as const;
      for (const [name, use, what] of uses) {
        made.push(ctx.step(`VM ${id}'s process ${name} ${what}`, () => accelProcess(ctx, av, name, GVA, use)));
        if (av.vm.state !== "running") return null;
      }
      const [p, q, r] = made;
      if (p === undefined || q === undefined || r === undefined) return null;
      ctx.step(`VM ${id}'s process P binds the shared-WQ mdev too, with its one PASID: the host binds it over that mdev's container as well; KVM's translation is the one made at its first bind`, () => bindBoth(ctx, p));
      return av.vm.state === "running" ? [p, q, r] : null;
    };
    const vmRound = (av: AccelVm, pqr: Trio, when: string, round: number): void => {
      ctx.step(`VM ${av.vm.id}'s P: MEMMOVE by MOVDIR64B to its dedicated WQ and MEMFILL by ENQCMD to its shared WQ (one PASID); Q: MEMFILL by ENQCMD to its shared WQ; R: SVA DMA through ${av.vm.device.name} ${when}`, () => vmWork(ctx, pqr, round));
    };

    const b = bootAccelVm(ctx, vfio, acc, { id: 2, dev: devB, device: "dsa2", ...VM_WQS[2] });
    if (b === null) throw new Error("VM 2 is not the one killed");
    const bpq = processes(b);
    if (bpq === null) throw new Error("VM 2 is not the one killed");
    hostRound("(before VM 1 exists)", 1);
    vmRound(b, bpq, "(before VM 1 exists)", 1);

    const a = alive() ? bootAccelVm(ctx, vfio, acc, { id: 1, dev: devA, device: "dsa1", ...VM_WQS[1], onStart: (vm) => k.setVm(vm) }) : null;
    const apq = a !== null && alive() ? processes(a) : null;
    if (a !== null && apq !== null && alive()) vmRound(a, apq, "(beside VM 2 and the host users)", 2);
    hostRound("(VM 1 running beside them, or dead)", 2);
    vmRound(b, bpq, "(VM 1 running beside it, or dead)", 2);
    const lastHost = apq === null ? null : hostPasidOf(apq[2]);
    if (a !== null && apq !== null && alive()) {
      ctx.step("VM 1's P closes its WQ (drained, its PASID cleared in the guest's WQCFG and by the VDCM in the hardware WQ) and unbinds the dedicated-WQ mdev, then the shared-WQ mdev; the guest frees its PASID", () => closeProcess(ctx, apq[0]));
    }
    if (a !== null && apq !== null && alive()) ctx.step("VM 1's Q and R unbind; the guest frees their PASIDs (KVM drops Q's translation)", () => {
      closeProcess(ctx, apq[1]);
      closeProcess(ctx, apq[2]);
    });
    if (a !== null && alive()) ctx.step("VM 1 shuts down (its VMM quits)", () => killVm(ctx, a.vm));
    hostRound("(after VM 1 is gone)", 3);
    vmRound(b, bpq, "(after VM 1 is gone)", 3);
    if (a !== null && apq !== null && lastHost !== null) {
      const q = apq[2];
      ctx.step("dsa1 replays VM 1's R's last function DMA with its PASID: nothing of VM 1 translates any more", () => {
        const engine = a.slot.ep.dma;
        engine.setProgram({ pasid: lastHost, addr: q.va + FN_DMA, length: PATTERN.length, direction: "write", pattern: PATTERN });
        if (engine.trigger() === "pageRequestPending") ctx.host.settle();
        ctx.require(engine.result !== "ok", "no DMA of the dead VM completes");
      });
    }
    ctx.step("VM 2's P closes its WQ and unbinds; Q and R unbind", () => {
      for (const p of bpq) closeProcess(ctx, p);
    });
    ctx.step("host H1 and H2 close their WQs (drained, the dedicated WQ's PASID cleared) and exit", () => {
      for (const u of [h1, h2]) {
        const pasid = u.files[0]?.pasid;
        for (const f of u.files) f.close();
        if (pasid !== undefined) ctx.unbindSpace(pasid);
        u.mm.exit();
      }
      ctx.host.settle();
    });
  },
});
