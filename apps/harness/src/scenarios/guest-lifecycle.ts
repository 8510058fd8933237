import { asIoasid, asVmId } from "@vsva/kernel";
import { type Mm, Prot } from "@vsva/iommu-core";
import { DSA_COMPLETION_SIZE, DescFlag, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { Idxd, type IdxdUserFile, UserThread, openUserWq } from "@vsva/idxd";
import { MdevGuest } from "@vsva/vdcm/testing";
import { RegOffset, VcmdCommand, VcmdReg, VcmdStatus, VcrspReg, readReg, writeReg } from "@vsva/iommu-hw";
import { Guest, KvmEnqcmdPortal, MdevRegions, Vm } from "@vsva/vmm";
import type { HostScenario } from "../world/host-scenario.js";
import { refColumn, tableScenario } from "./ioasid-lifecycle.js";
import type { LifecycleTable, LifecycleTableOptions } from "./lifecycle-table.js";
import { type VmKillPoint, vmKillPoint } from "./vm-kill.js";
import { type Accelerator, createMdev, plugAccelerator } from "./vdcm-common.js";
import { PAGE, bindToVfio, groupOf, vfioOn } from "./vfio-common.js";

/*
 * The two guest life-cycle tables of the IOASID documentation proposed with
 * the vSVA work (Documentation/driver-api/ioasid.rst in "IOASID extensions
 * for guest SVA", iommu mailing list, 2020), made by a real guest instead of
 * `ioasid-lifecycle`'s stand-in: a guest kernel over the VM's virtual VT-d,
 * its own idxd driving an mdev the VDCM made on a dedicated WQ of the host's
 * accelerator, and a guest process that binds with SVA, moves data through
 * the dedicated WQ and by ENQCMD through KVM's PASID translation. Nothing is
 * called on a host object on the guest's behalf: the VMM's traps and
 * ioctls carry everything, and every refcount in the tables is the host
 * IOASID core's at that row.
 */

/** Guest RAM: the guest kernel's pool (its upper half) holds a 128 KiB PASID directory for each of the VM's two functions, besides the processes' and the idxd's pages. */
const GUEST_RAM = 768 * 1024;

/** What the guest has up to its DMA: the VM, its kernel and idxd, the process and its open WQ file. */
interface GuestCast {
  readonly accel: Accelerator;
  readonly vm: Vm;
  readonly guest: Guest;
  readonly gidxd: Idxd<MdevRegions>;
  readonly p: Mm;
  readonly thread: UserThread;
  readonly va: number;
  readonly file: IdxdUserFile;
  /** The guest's PASID and the host PASID behind it. */
  readonly gpasid: number;
  readonly hpasid: number;
}

/**
 * Steps 1–11 of both ioasid.rst tables, made by a real guest: the VDCM makes
 * VM 1's mdev on the accelerator's dedicated WQ (its notifier registers by
 * the VM's mm, step 1), the VMM starts the VM with it (KVM registers by the
 * same mm, step 1; VFIO makes the VM's set), the guest boots its IOMMU stack
 * over the virtual VT-d and probes the mdev with its own idxd, through the
 * VMM's region accesses; a guest process opens the guest's WQ file: the
 * guest's SVA bind allocates by virtual command (PASID_REQUEST, step 2),
 * writes its PASID entry and flushes the PASID cache (NESTING_OP bind, steps
 * 3–7), and the guest's idxd writes the PASID into the mdev's WQ config,
 * which the VDCM traps (steps 8–11). Null when the VM was killed on the way.
 */
function guestUpToDma(k: VmKillPoint): GuestCast | null {
  const ctx = k.ctx;
  const h = ctx.host;
  const vfio = vfioOn(h);
  const accel = plugAccelerator(ctx, vfio);
  // fn0 goes into any slot but dsa0's: 1 to 30 slots after it, wrapping round 1..31.
  const dsaDev = (accel.idxd.iommuDev.sid >> 3) & 0x1f;
  const slotOf = (after: number): number => ((dsaDev - 1 + after) % 31) + 1;
  const fnAfter = ctx.choose.int("fn0's slot", 1, 30, { show: (a) => `00:${slotOf(a).toString(16).padStart(2, "0")}.0` });
  const spid = ctx.choose.int("guest PASIDs", 0, 1, { show: (v) => (v === 1 ? "SPIDs of the VM's own" : "the host's numbers") }) === 1;
  const va = ctx.choose.int("the guest process's buffer", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
  const vmId = asVmId(1);
  const mm = { vmm: "qemu-vm1" };
  const mdevGroup = createMdev(ctx, accel, "mdev0", 0, vmId, mm).vfioDevice?.group?.id;
  if (mdevGroup === undefined) throw new Error("mdev0 has no IOMMU group");
  const slot = ctx.step("plug in fn0 for VM 1; vfio-pci takes it", () => {
    const s = h.addDevice("fn0", slotOf(fnAfter));
    bindToVfio(ctx, vfio, s);
    return s;
  });
  const vm = ctx.step(`VMM starts VM 1 with fn0 and mdev0 (${spid ? "SPID" : "identity"} guest PASIDs): KVM registers by the VMM's mm, VFIO makes the VM's IOASID set, guest RAM mapped`, () => {
    const v = new Vm({
      host: h,
      vfio,
      id: 1,
      ramBytes: GUEST_RAM,
      device: { group: groupOf(slot.dev), name: "fn0", endpoint: slot.ep },
      guestPasids: spid ? "spid" : "identity",
      mm,
      mdevs: [{ group: mdevGroup, name: "mdev0", guestBdf: { bus: 0, dev: 5, fn: 0 } }],
    });
    ctx.defer("VM 1's VMM exits (if still running): VFIO release, KVM teardown, guest RAM back to the host", () => v.kill());
    ctx.watchVm(v);
    k.setVm(v);
    return v;
  });
  const guest = k.step("VM 1's guest boots its IOMMU stack over the virtual VT-d (caching mode, virtual command allocator)", () => new Guest(vm));
  if (guest === null) return null;
  const gidxd = k.step("the guest's PCI core enables mdev0's PASID capability; the guest's own idxd probes it through the VMM's region accesses (a dedicated user WQ)", () => {
    const file = vm.mdevFiles[0];
    const dev = guest.mdevs[0];
    if (file === undefined || dev === undefined) throw new Error("VM 1 has no mdev");
    new MdevGuest(file).enablePasid();
    const d = Idxd.probe({ kernel: vm.kernel, core: guest.core, iommuDev: dev, hw: new MdevRegions(file), config: { wqs: [{ mode: "dedicated", size: 4, type: "user" }] }, name: "dsa0" });
    ctx.defer("the guest's idxd is removed (if the VM still runs)", () => {
      if (vm.state === "running") d.remove();
    });
    return d;
  });
  if (gidxd === null) return null;
  const proc = k.step("guest process P maps two pages", () => {
    const p = guest.newProcess("P");
    p.mmap(va, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    return { p, thread: new UserThread(p) };
  });
  if (proc === null) return null;
  const file = k.step("P opens the guest's WQ file: SVA bind (vCMD alloc → PASID_REQUEST; PASID entry + PASID-cache flush → NESTING_OP bind), then the guest's idxd writes its PASID into mdev0's WQCFG (trapped: the VDCM programs the host PASID)", () => {
    const f = openUserWq(gidxd, 0, proc.thread);
    const gpasid = f.pasid as number;
    const hpasid = vm.viommu.hostPasid(gpasid);
    ctx.require(hpasid !== null, `guest PASID ${gpasid} has a host PASID`);
    if (hpasid !== null) {
      ctx.bindSpace(hpasid, (addr) => {
        const m = proc.p.lookup(addr);
        return m === null ? null : vm.hpa(m.pa + (addr - m.va));
      });
      ctx.expect(accel.idxd.wq(0).pasid === hpasid, `the hardware WQ holds host PASID ${hpasid} (got ${accel.idxd.wq(0).pasid ?? "none"})`);
    }
    return { f, gpasid, hpasid: hpasid ?? -1 };
  });
  if (file === null) return null;
  return { accel, vm, guest, gidxd, p: proc.p, thread: proc.thread, va, file: file.f, gpasid: file.gpasid, hpasid: file.hpasid };
}

/**
 * The guest's DMA (step 12): a MEMMOVE through the dedicated WQ (MOVDIR64B
 * to mdev0's portal, forwarded by the VMM; the hardware WQ tags it with the
 * host PASID), then a MEMFILL by ENQCMD from P's thread to the shared WQ
 * (the CPU translating the guest PASID through KVM's table). P polls both
 * completion records and checks the bytes by CPU reads.
 */
function guestDma(k: VmKillPoint, c: GuestCast): void {
  const ctx = k.ctx;
  const h = ctx.host;
  const len = ctx.choose.int("MEMMOVE length", 1, 0x400);
  const src = Uint8Array.from({ length: len }, (_, i) => (i * 7 + len) & 0xff);
  k.step(`P: MEMMOVE of ${len} bytes through the dedicated WQ (MOVDIR64B to mdev0's portal); P polls its completion record`, () => {
    c.p.write(c.va, src);
    c.file.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: c.va + PAGE, src: c.va, dst: c.va + 0x800, size: len }));
    h.settle();
    const st = decodeCompletion(c.p.read(c.va + PAGE, DSA_COMPLETION_SIZE)).status;
    ctx.expect(st === DsaStatus.SUCCESS, `the move completes (status 0x${st.toString(16)})`);
    ctx.expect(c.p.read(c.va + 0x800, len).every((b, i) => b === src[i]), "P reads its source bytes at the destination");
  });
  k.step("P's thread: MEMFILL by ENQCMD to the shared WQ; the CPU puts the host PASID from KVM's table in the payload; P polls its completion record", () => {
    const portal = new KvmEnqcmdPortal(c.vm, c.accel.idxd.wq(1));
    const rec = c.va + PAGE + 0x40;
    const r = c.thread.enqcmd(portal, encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: rec, pattern: 0x0807_0605_0403_0201n, dst: c.va + 0xc00, size: 32 }));
    h.settle();
    const st = decodeCompletion(c.p.read(rec, DSA_COMPLETION_SIZE)).status;
    ctx.expect(r === "accepted" && st === DsaStatus.SUCCESS, `the fill completes (ENQCMD ${r}, status 0x${st.toString(16)})`);
    ctx.expect(c.p.read(c.va + 0xc00, 32).every((b, i) => b === (i % 8) + 1), "P reads the pattern by CPU");
  });
}

const REFS_NORMAL = "1,2,3,4,3,2,1,0,reclaimed";

/**
 * A table scenario made by a guest: VFIO's rows from the VMM's ioctls, VM 1
 * killable after any step (`--at`), and a run whose VM was killed shows the
 * host's rows instead of a table cut short.
 */
function guestTableScenario(spec: { readonly name: string; readonly summary: string; readonly title: string; readonly table?: Omit<LifecycleTableOptions, "vfio">; run(k: VmKillPoint, t: LifecycleTable): void }): HostScenario {
  return tableScenario({
    name: spec.name,
    summary: spec.summary,
    title: spec.title,
    at: "kill VM 1 (its VMM process dies) after step STEP of the run",
    table: { ...spec.table, vfio: "vmm" },
    body(outer, t) {
      const k = vmKillPoint(outer);
      try {
        spec.run(k, t);
      } finally {
        if (!k.alive()) t.abandon();
      }
    },
  });
}

export const guestLifecycle = guestTableScenario({
  name: "guest-lifecycle",
  summary: "ioasid.rst normal guest life cycle made by a real guest (vCMD, PASID-cache flushes, its own idxd on an mdev, ENQCMD through KVM): refs 1,2,3,4,3,2,1,0, reclaimed",
  title: "Guest IOASID life cycle from a guest kernel (ioasid.rst table, normal order)",
  run: normalLifecycle,
});

/** The normal table: steps 1–11 ({@link guestUpToDma}), the DMA, stop, unbind, free at mm drop, reclaim, and the new life cycle's alloc. */
function normalLifecycle(k: VmKillPoint, t: LifecycleTable): void {
  const ctx = k.ctx;
  const c = guestUpToDma(k);
  if (c === null) return;
  t.row("GUEST", "-------- GUEST STARTS DMA --------");
  guestDma(k, c);
  k.step("P closes its WQ file: the guest's idxd drains, disables and clears its WQ (trapped: the VDCM clears the hardware WQ and drops its reference), then unbinds (PASID entry cleared, PASID-cache flush → NESTING_OP unbind)", () => {
    t.row("GUEST", "-------- GUEST STOPS DMA --------");
    c.file.close();
    ctx.host.settle();
    ctx.unbindSpace(c.hpasid);
    ctx.expect(c.accel.idxd.wq(0).pasid !== c.hpasid, "the hardware WQ no longer holds the host PASID");
    ctx.expect(c.vm.kvm.readTable().size === 0, "KVM's table is empty");
  });
  k.step("P exits: its mm is freed and gives its PASID back (mm_pasid_drop: vCMD free → PASID_REQUEST free); the host reclaims the PASID", () => {
    c.p.exit();
    ctx.host.settle();
    ctx.expect(ctx.host.ioasid.state(asIoasid(c.hpasid)) === "IDLE", `host PASID ${c.hpasid} reclaimed`);
  });
  k.step("process Q opens the WQ file: a new life cycle begins with PASID_REQUEST alloc; Q closes it and exits", () => {
    const q = c.guest.newProcess("Q");
    const f = openUserWq(c.gidxd, 0, new UserThread(q));
    f.close();
    q.exit();
    ctx.host.settle();
  });
  if (!k.alive()) return;
  const rows = t.rows;
  const cut = rows.findIndex((r) => r.action.includes("New Life Cycle"));
  const life = refColumn(cut < 0 ? rows : rows.slice(0, cut));
  ctx.expect(life === REFS_NORMAL, `refcount column ${life} is the ioasid.rst table's ${REFS_NORMAL}`);
  ctx.expect(cut >= 0 && refColumn(rows.slice(cut)) === "1", `a new life cycle begins at refcount 1 (${cut < 0 ? "none" : refColumn(rows.slice(cut))})`);
}

const REFS_FREE_BEFORE_UNBIND = "3,2,1,0,reclaimed";

/**
 * The guest's virtual command written straight into the virtual VT-d's
 * registers, as a buggy guest driver would (VCMD, VT-d §10.4.43; the answer
 * in VCRSP, §10.4.44): FREE_PASID of a PASID its kernel still has bound
 * and programmed. The guest kernel's own API frees a PASID only at mm drop,
 * after every bond has gone.
 */
function rawVcmdFree(vm: Vm, gpasid: number): number {
  const unit = vm.viommu.unit;
  writeReg(unit, RegOffset.VCMD, VcmdReg.encode({ CMD: VcmdCommand.FREE_PASID, OPERAND: gpasid }));
  return VcrspReg.get(readReg(unit, RegOffset.VCRSP, VcrspReg), "SC");
}

export const guestFreeBeforeUnbind = guestTableScenario({
  name: "guest-free-before-unbind",
  summary: "ioasid.rst exception table made by a real guest: its raw vCMD frees a bound, programmed PASID; FREE seen CPU (KVM), DEVICE (VDCM), IOMMU; refs 3,2,1,0, reclaimed; the guest's late unbind fails cleanly (-ENOENT) and nothing is left",
  title: "Guest frees its PASID before unbinding it (ioasid.rst exception table, from a guest kernel)",
  table: { freeBeforeUnbind: true },
  run: freeBeforeUnbind,
});

/** The exception table: steps 1–11 as the normal one ({@link guestUpToDma}), then from 13 the DMA, the raw free, the work items, the late unbind. */
function freeBeforeUnbind(k: VmKillPoint, t: LifecycleTable): void {
  const ctx = k.ctx;
  const h = ctx.host;
  const c = guestUpToDma(k);
  if (c === null) return;
  // Steps 1–12 are the normal table's; the exception table starts at 13.
  t.log.restart(13);
  t.row("GUEST", "-------- GUEST STARTS DMA --------");
  guestDma(k, c);
  // Guest RAM stays pinned by VFIO's MAP_DMA while the VM runs; nothing the guest did may leave another pin.
  const pinned = c.vm.ram.view.pinStats.pinnedPages;
  k.step("the guest misbehaves: a raw vCMD FREE_PASID of its bound, programmed PASID on the virtual VT-d; the VMM forwards PASID_REQUEST free and the host accepts it (IOASID free always succeeds)", () => {
    t.row("GUEST", "-------- *GUEST MISBEHAVES!!!* --------");
    const sc = rawVcmdFree(c.vm, c.gpasid);
    ctx.expect(sc === VcmdStatus.SUCCESS, `the virtual command succeeds (VCRSP.SC ${sc})`);
    // KVM's update is FREE's one in-order completion: the translation is gone when free returns.
    ctx.require(c.vm.kvm.readTable().size === 0, "KVM's translation is gone when free returns");
  });
  k.step("the host's work items run: the VDCM quiesces and clears the hardware WQ, then the IOMMU driver tears the PASID entry down; the PASID is reclaimed", () => {
    h.settle();
    // Until the IOMMU driver's teardown work has run, the PASID entry still translates: only then is it unbound.
    ctx.unbindSpace(c.hpasid);
    ctx.expect(c.accel.idxd.wq(0).pasid !== c.hpasid, "the hardware WQ no longer holds the host PASID");
    ctx.expect(h.ioasid.state(asIoasid(c.hpasid)) === "IDLE", `host PASID ${c.hpasid} reclaimed (state ${h.ioasid.state(asIoasid(c.hpasid))})`);
  });
  k.step("P closes its WQ file late: the guest's idxd clears its WQ, then unbinds: its PASID-cache flush of the cleared entry becomes NESTING_OP unbind, which the host refuses (-ENOENT: ioasid_find() finds no PASID)", () => {
    const refused = c.vm.viommu.stats.refused;
    c.file.close();
    h.settle();
    ctx.expect(c.vm.viommu.stats.refused === refused + 1, `the host refused the late unbind once (refusals ${c.vm.viommu.stats.refused - refused})`);
  });
  k.step("P exits: at mm drop the guest frees its PASID by vCMD again; the VMM no longer holds it (VCRSP: invalid), and the guest's kernel lets it go", () => {
    c.p.exit();
    h.settle();
  });
  if (!k.alive()) return;
  ctx.expect(c.vm.kvm.readTable().size === 0, "no KVM translation is left");
  ctx.expect(h.ioasid.findSetByToken(c.vm.mm)?.count === 0, `the VM's IOASID set holds no PASID (${h.ioasid.findSetByToken(c.vm.mm)?.count ?? "no set"})`);
  ctx.expect(c.vm.ram.view.pinStats.pinnedPages === pinned, `no guest page pinned beyond guest RAM's MAP_DMA (${c.vm.ram.view.pinStats.pinnedPages}, was ${pinned})`);
  ctx.expect(c.vm.viommu.bound.size === 0, "the VMM holds no binding for the guest");
  ctx.expect(c.guest.ioasid.allocated === 0, `the guest's kernel holds no PASID (${c.guest.ioasid.allocated})`);
  ctx.expect(c.accel.idxd.wq(0).pasid !== c.hpasid, "the hardware WQ holds no host PASID of the guest's");
  const rows = t.rows;
  const col = refColumn(rows);
  ctx.expect(col === REFS_FREE_BEFORE_UNBIND, `refcount column ${col} is the ioasid.rst exception table's ${REFS_FREE_BEFORE_UNBIND}`);
  const order = rows.filter((r) => r.action.includes("nb_handler(FREE)")).map((r) => r.actor).join(",");
  ctx.expect(order === "KVM,VDCM,IOMMU", `FREE seen in order ${order}, not CPU (KVM), DEVICE (VDCM), IOMMU`);
  ctx.expect(rows.at(-1)?.action.endsWith("fails: -ENOENT") === true, `the late unbind fails in the IOMMU with -ENOENT (last row: ${rows.at(-1)?.action ?? "none"})`);
}
