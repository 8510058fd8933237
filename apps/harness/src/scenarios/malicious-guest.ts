import { Errno, asHostPasid, asIoasid, asVmId, errnoName, isKernelError } from "@vsva/kernel";
import { Prot } from "@vsva/iommu-core";
import { DsaCmdErr } from "@vsva/dsa";
import {
  CONTEXT_ENTRY_BYTES, ContextEntry, InvType, type Layout, PASID_DIR_ENTRY_BYTES, PASID_ENTRY_BYTES, PasidCacheDesc, PasidDirEntry, PasidEntry, PcGran, ROOT_ENTRY_BYTES,
  RegOffset, RootEntry, RtaddrReg, WaitDesc, pasidDirIndex, pasidTableIndex, readReg,
} from "@vsva/iommu-hw";
import { submitVtdDescriptors } from "@vsva/iommu-hw/testing";
import { Vdcm } from "@vsva/vdcm";
import { MdevGuest } from "@vsva/vdcm/testing";
import { hostScenario } from "../world/host-scenario.js";
import { type GuestVm, guestProcess, startGuestVm } from "./guest-common.js";
import { bootVmWithMdev } from "./guest-mdev-common.js";
import { PATTERN, hexBytes } from "./sva-common.js";
import { createMdev } from "./vdcm-common.js";
import { PAGE, vfioOn } from "./vfio-common.js";
import { replayDeadDma, vmKillPoint } from "./vm-kill.js";

/**
 * The errno of a NESTING_OP bind of a PASID outside the VM's IOASID set:
 * the lookup of the PASID in the caller's set fails as
 * drivers/iommu/ioasid.c: ioasid_find() does for an ID of another set.
 */
const BIND_ERRNO = "EACCES";

/** The errno a call failed with, or "ok". */
function outcome(fn: () => void): string {
  try {
    fn();
    return "ok";
  } catch (e) {
    if (!isKernelError(e)) throw e;
    return errnoName(e.errno);
  }
}

/** Where VM 1's mdev sits in its guest's PCI hierarchy. */
const MDEV_BDF = { bus: 0, dev: 5, fn: 0 };

/**
 * Where the guest's PASID-table entry of `pasid` for requester `sid` sits in
 * its own memory, found the way the hardware walks (RTADDR → root → context
 * → PASID directory → PASID table, VT-d §9.1, §9.4, §9.5, §9.6); null where
 * the walk stops. A hostile kernel knows its tables; this finds them from
 * the registers and memory alone.
 */
function pasidEntryAt(g: GuestVm, sid: number, pasid: number): number | null {
  const mem = g.vm.ram.view;
  const read = (layout: Layout<string>, pa: number): Uint32Array | null => {
    const v = layout.alloc();
    return layout.read(mem, pa, v) ? v : null;
  };
  const root = read(RootEntry, RtaddrReg.getAddr(readReg(g.vm.viommu.unit, RegOffset.RTADDR, RtaddrReg), "RTA") + ROOT_ENTRY_BYTES * (sid >> 8));
  const devfn = sid & 0xff;
  const upper = devfn >= 0x80;
  if (root === null || RootEntry.get(root, upper ? "UP" : "LP") !== 1) return null;
  const ctxe = read(ContextEntry, RootEntry.getAddr(root, upper ? "UCTP" : "LCTP") + CONTEXT_ENTRY_BYTES * (devfn & 0x7f));
  if (ctxe === null || ContextEntry.get(ctxe, "P") !== 1) return null;
  const dir = read(PasidDirEntry, ContextEntry.getAddr(ctxe, "PASIDDIRPTR") + PASID_DIR_ENTRY_BYTES * pasidDirIndex(pasid));
  if (dir === null || PasidDirEntry.get(dir, "P") !== 1) return null;
  return PasidDirEntry.getAddr(dir, "SMPTBLPTR") + PASID_ENTRY_BYTES * pasidTableIndex(pasid);
}

/** A descriptor's 128 bits as the two qwords the queue holds. */
function qwords(d: Uint32Array): bigint[] {
  return [BigInt(d[0] ?? 0) | (BigInt(d[1] ?? 0) << 32n), BigInt(d[2] ?? 0) | (BigInt(d[3] ?? 0) << 32n)];
}

/**
 * A hostile guest kernel (VM 1) beside a victim VM (VM 2) whose process has
 * dsa1 bound and keeps doing DMA. VM 1's kernel is the same code, used as an
 * attacker would, in five attacks, each refused where Linux refuses it, the
 * host, VM 2 and every invariant untouched:
 * - it stamps its process with VM 2's PASID and binds (its driver writes the
 *   PASID entry and flushes the PASID cache, so the VMM asks the host to bind
 *   a PASID VM 1 never allocated): the host refuses the NESTING_OP;
 * - it programs VM 2's PASID into the WQ config of its own mdev (a dedicated
 *   WQ of the host's accelerator, through the mdev's regions): the VDCM looks
 *   the number up by SPID in VM 1's IOASID set only, finds nothing, and the
 *   guest reads the device's error in CMDSTS; no reference is taken and the
 *   hardware WQ holds nothing of VM 2's;
 * - it floods its invalidation queue;
 * - it answers a page request it was never sent;
 * - it unbinds twice: its IOMMU core would treat a second `unbindDevice` as
 *   its own bug, so it does what a hostile kernel can, writes the (already
 *   cleared) PASID entry again and issues a second PASID-cache invalidation
 *   and wait by raw descriptors. The VMM tracks what it bound (as QEMU's
 *   `vtd_pasid_cache_sync()` in hw/i386/intel_iommu.c of the 2020 vSVA RFC
 *   compares the guest's entries with its cached PASID address spaces) and
 *   sends the host nothing; the guest's wait completes (VT-d §6.5.2.8).
 */
export const maliciousGuest = hostScenario({
  name: "malicious-guest",
  summary: "a hostile guest binds a PASID it does not own, programs another VM's PASID into its mdev, floods invalidations, answers a fault it never got, unbinds twice: each refused (upstream errno, the device's CMDSTS) or ignored, the host and the other VM untouched",
  title: "A hostile guest beside a victim VM",
  platforms: ["vtd"],
  at: "kill the hostile VM 1 (its VMM process dies) after step STEP of the run; the victim VM 2's DMA is checked to the end",
  body(outer) {
    // The hostile VM is the one killed: an attacker's VMM may die mid-attack, and its victim must not notice.
    const k = vmKillPoint(outer);
    const ctx = k.ctx;
    const devA = ctx.choose.int("dsa0's slot (VM 1, hostile)", 1, 7, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const devAcc = ctx.choose.int("the accelerator dsa2's slot (host idxd, VDCM)", 8, 15, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const devB = ctx.choose.int("dsa1's slot (VM 2, victim)", 16, 31, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const VA = ctx.choose.int("the processes' buffers", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
    const vfio = vfioOn(ctx.host);
    const victim = startGuestVm(ctx, vfio, { id: 2, dev: devB, device: "dsa1" });
    const v = ctx.step("victim process V in VM 2 binds dsa1 with SVA", () => guestProcess(ctx, victim, "V", VA, 1));
    let round = 0;
    const victimDma = (): void => {
      round++;
      const bytes = PATTERN.map((b) => b ^ round);
      ctx.expect(victim.guest.dma({ pasid: v.bond.pasid, addr: VA + 0x10, length: bytes.length, direction: "write", pattern: bytes }) === "ok", "VM 2's DMA completes");
      ctx.expect(hexBytes(v.mm.read(VA + 0x10, bytes.length)) === hexBytes(bytes), "VM 2 reads its own bytes");
    };
    const victimUnbind = (): void => {
      ctx.step("VM 2's V unbinds dsa1", () => {
        victim.guest.core.sva.unbindDevice(v.bond);
        ctx.unbindSpace(v.bond.pasid);
      });
    };
    ctx.step("VM 2's V: dsa1 writes to V's page", victimDma);
    const idxd = ctx.step("plug in dsa2; idxd probes it with a dedicated WQ for mdevs", () => ctx.host.addAccelerator("dsa2", devAcc, { wqs: [{ mode: "dedicated", size: 8, type: "mdev" }] }));
    ctx.defer("idxd is removed: WQs and device disabled, device reset", () => idxd.remove());
    const vdcm = ctx.step("the VDCM takes dsa2 (aux domains enabled on it)", () => new Vdcm({ kernel: ctx.host.kernel, ioasid: ctx.host.ioasid, core: ctx.host.core, vfio, parent: idxd.iommuDev }));
    const evilMm = { vmm: "qemu-vm1" };
    const mdev = createMdev(ctx, { idxd, vdcm }, "mdev0", 0, asVmId(1), evilMm);
    const mdevGroup = mdev.vfioDevice?.group?.id;
    ctx.require(mdevGroup !== undefined, "mdev0 has an IOMMU group");
    const booted = bootVmWithMdev(ctx, vfio, { id: 1, dev: devA, device: "dsa0", mm: evilMm, mdev: { group: mdevGroup ?? -1, name: "mdev0", guestBdf: MDEV_BDF }, onStart: (vm) => k.setVm(vm) });
    if (booted === null) {
      ctx.step("VM 2's V: dsa1 writes to V's page (VM 1 died while it booted)", victimDma);
      victimUnbind();
      return;
    }
    const evil = booted;
    const a = k.step("VM 1's own process A binds dsa0 with SVA (its own PASID, allocated by virtual command)", () => guestProcess(ctx, evil, "A", VA, 1));
    const viommu = evil.vm.viommu;
    const refused = viommu.stats.refused;

    // What the VMM logs when the host refuses a call on the guest's behalf, with the errno.
    const refusals: string[] = [];
    const unsubscribe = ctx.host.kernel.trace.subscribeSystem((e) => {
      if (e.context === evil.vm.name && e.kind === "kernel.log" && e.payload.message.includes("the host refused")) refusals.push(e.payload.message);
    });
    ctx.defer("stop watching VM 1's refusals", unsubscribe);
    k.step("VM 1 binds VM 2's PASID: its kernel stamps process M with it, its driver writes the PASID entry and flushes; the host refuses the VMM's NESTING_OP bind", () => {
      const m = evil.guest.newProcess("M");
      m.mmap(VA, PAGE, Prot.READ | Prot.WRITE, { populate: true });
      m.setPasid(asHostPasid(v.bond.pasid), () => undefined);
      refusals.length = 0;
      // The guest's own bind may look done to it (its flush completes, failed): the host is what refuses.
      outcome(() => evil.guest.core.sva.bindDevice(evil.guest.device, m));
      ctx.expect(viommu.stats.refused > refused, "the host refused the VMM's NESTING_OP bind");
      ctx.expect(refusals.some((r) => r.includes(`(-${BIND_ERRNO})`)), `the host refused it with -${BIND_ERRNO} (got: ${refusals.join("; ") || "nothing"})`);
      ctx.require(!viommu.bound.has(v.bond.pasid), "nothing is bound on the host for VM 1 with VM 2's PASID");
      ctx.expect(victim.vm.viommu.bound.has(v.bond.pasid), "VM 2's bind is untouched");
      m.exit();
    });
    ctx.step("VM 2's V: dsa1 writes to V's page", victimDma);

    // VM 2 runs identity guest PASIDs (its assigned function DMAs with the number itself), so its guest and host PASIDs are one
    // number; both tries are made, the second by the number the host holds.
    const victimHost = victim.vm.viommu.hostPasid(v.bond.pasid) ?? v.bond.pasid;
    for (const [which, pasid] of [["guest", v.bond.pasid], ["host", victimHost]] as const) {
      k.step(`VM 1 programs VM 2's ${which} PASID (${pasid}) into its mdev's WQ config and enables the WQ: the VDCM finds no such SPID in VM 1's set, the guest reads CMDSTS PASID_EN`, () => {
        const file = evil.vm.mdevFiles[0];
        ctx.require(file !== undefined, "VM 1 has its mdev's device file");
        if (file === undefined) return;
        const refs = ctx.host.ioasid.refcount(asIoasid(victimHost));
        // Why the VDCM refused, from its trace of the command.
        const reasons: string[] = [];
        const stop = ctx.host.kernel.trace.subscribeSystem((e) => {
          if (e.kind === "vdcm.command" && e.payload.err !== 0) reasons.push(e.payload.reason);
        });
        // The guest's idxd driver's sequence (PASID capability on, WQCFG, ENABLE_DEVICE, ENABLE_WQ), through the mdev's regions.
        const drv = new MdevGuest(file);
        const err = drv.programWq(pasid);
        stop();
        ctx.expect(err === DsaCmdErr.PASID_EN, `ENABLE_WQ fails with CMDSTS 0x${DsaCmdErr.PASID_EN.toString(16)} (got 0x${err.toString(16)})`);
        ctx.expect(reasons.some((r) => r.includes("does not resolve in VM 1's set")), `the VDCM's SPID lookup in VM 1's set found nothing (refusals: ${reasons.join("; ") || "none"})`);
        ctx.expect(!drv.wqEnabled(), "VM 1's virtual WQ stays disabled");
        ctx.require(ctx.host.ioasid.refcount(asIoasid(victimHost)) === refs, `no reference was taken on VM 2's PASID (${refs} before, ${ctx.host.ioasid.refcount(asIoasid(victimHost))} after)`);
        ctx.require(idxd.wq(0).pasid !== victimHost, "the hardware WQ holds nothing of VM 2's");
        ctx.expect(victim.vm.viommu.bound.has(v.bond.pasid), "VM 2's bind is untouched");
      });
      ctx.step("VM 2's V: dsa1 writes to V's page", victimDma);
    }

    if (a !== null) k.step("VM 1 floods its invalidation queue: 64 unmaps and maps of A's page, each a PASID-based IOTLB flush the VMM forwards", () => {
      const before = viommu.stats.exits;
      for (let i = 0; i < 64; i++) {
        a.mm.munmap(VA, PAGE);
        a.mm.mmap(VA, PAGE, Prot.READ | Prot.WRITE, { populate: true });
      }
      ctx.expect(viommu.stats.exits > before, "the flushes reached the VMM");
    });
    ctx.step("VM 2's V: dsa1 writes to V's page", victimDma);

    if (a !== null) k.step("VM 1 answers a page request it was never sent: refused (EINVAL, iommu_page_response() finds no pending group)", () => {
      const r = outcome(() => evil.guest.core.pageResponse(evil.guest.device, { pasid: asHostPasid(a.bond.pasid), grpid: 77, code: "success" }));
      ctx.expect(r === errnoName(Errno.EINVAL), `iommu_page_response() of nothing pending: EINVAL (got ${r})`);
    });
    if (a !== null) k.step("VM 1 unbinds A", () => {
      evil.guest.core.sva.unbindDevice(a.bond);
      ctx.unbindSpace(a.bond.pasid);
    });
    if (a !== null) k.step("VM 1 unbinds A again: writes A's PASID entry cleared once more, a PASID-cache invalidation and a wait by raw descriptors; the VMM, which bound nothing for it now, sends the host nothing, and the wait completes", () => {
      const sid = evil.vm.guestSid;
      const at = pasidEntryAt(evil, sid, a.bond.pasid);
      ctx.require(at !== null, `VM 1's PASID entry of ${a.bond.pasid} is reachable in its memory`);
      if (at !== null) PasidEntry.write(evil.vm.ram.view, at, PasidEntry.alloc());
      const status = evil.guest.pages.allocPage("hostile wait status");
      const mem = evil.vm.ram.view;
      mem.write32(status, 0);
      const pc = PasidCacheDesc.alloc();
      PasidCacheDesc.set(pc, "TYPE", InvType.PASID_CACHE);
      PasidCacheDesc.set(pc, "G", PcGran.PASID);
      PasidCacheDesc.set(pc, "PASID", a.bond.pasid);
      const w = WaitDesc.alloc();
      WaitDesc.set(w, "TYPE", InvType.WAIT);
      WaitDesc.set(w, "SW", 1);
      WaitDesc.set(w, "STDATA", 0x600d);
      WaitDesc.setAddr(w, "STADDR", status);
      const before = { ...viommu.stats };
      const hostAllocated = ctx.host.ioasid.allocated;
      submitVtdDescriptors(viommu.unit, mem, [qwords(pc), qwords(w)]);
      // The vCPU spins on the status; the VMM services the held submission meanwhile.
      viommu.service();
      ctx.expect(mem.read32(status) === 0x600d, `the guest's wait completed (status 0x${mem.read32(status).toString(16)})`);
      ctx.require(viommu.stats.unbinds === before.unbinds && viommu.stats.binds === before.binds, "the VMM sent the host no NESTING_OP");
      ctx.expect(viommu.stats.refused === before.refused, "nothing was refused: nothing was asked");
      ctx.require(ctx.host.ioasid.allocated === hostAllocated, "the host's PASIDs are as before");
      ctx.expect(victim.vm.viommu.bound.has(v.bond.pasid), "VM 2's bind is untouched");
      evil.guest.pages.freePages(status);
    });
    ctx.step("VM 2's V: dsa1 writes to V's page", victimDma);
    if (!k.alive() && a !== null) replayDeadDma(ctx, evil.slot.ep.dma, a.bond.pasid, VA + 0x10);
    victimUnbind();
  },
});
