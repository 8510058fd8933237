import { asIoasid, asVmId } from "@vsva/kernel";
import { Prot } from "@vsva/iommu-core";
import { DSA_COMPLETION_SIZE, DescFlag, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { Idxd, type IdxdUserFile, UserThread, openUserWq } from "@vsva/idxd";
import { MdevGuest } from "@vsva/vdcm/testing";
import { Guest, KvmEnqcmdPortal, MdevRegions, Vm } from "@vsva/vmm";
import type { Mm } from "@vsva/iommu-core";
import type { HostScenario } from "../world/host-scenario.js";
import type { StepContext } from "../world/host-scenario.js";
import { refColumn, tableScenario } from "./ioasid-lifecycle.js";
import type { LifecycleTable } from "./lifecycle-table.js";
import { type Accelerator, createMdev, plugAccelerator } from "./vdcm-common.js";
import { PAGE, bindToVfio, groupOf, vfioOn } from "./vfio-common.js";

/** Guest RAM: the guest kernel's pool (its upper half) holds a 128 KiB PASID directory for each of the VM's two functions, besides the processes' and the idxd's pages. */
const GUEST_RAM = 768 * 1024;

/** The text of the crash row (`vsva crash-sweep` finds it to know the kill point was reached). */
const CRASH_ROW = "crash after step";

/**
 * A step runner that can kill the VM after its `at`-th step (`--at STEP`,
 * kill -9 of the VMM), after which the body's later steps are skipped: the
 * deferred teardown and the invariants then judge what the dead VM left.
 */
interface Killable {
  readonly ctx: StepContext;
  /** Until the VM has been killed: run the step. */
  step<T>(label: string, fn: () => T): T | null;
  alive(): boolean;
  setVm(vm: Vm): void;
}

function killable(outer: StepContext): Killable {
  let steps = 0;
  let crashed = false;
  const held: { vm: Vm | null } = { vm: null };
  const ctx: StepContext = {
    ...outer,
    step<T>(label: string, fn: () => T): T {
      const made = outer.step(label, fn);
      steps++;
      if (steps === outer.at) {
        const vm = held.vm;
        if (vm?.state === "running") {
          outer.step(`${CRASH_ROW} ${steps}: VM 1's VMM process is killed (kill -9): VFIO release, KVM teardown, guest RAM back to the host`, () => vm.kill());
          crashed = true;
        } else {
          outer.step(`${CRASH_ROW} ${steps}: VM 1 is not running (not started yet): nothing to kill`, () => undefined);
        }
      }
      return made;
    },
  };
  return {
    ctx,
    step: (label, fn) => (crashed ? null : ctx.step(label, fn)),
    alive: () => !crashed,
    setVm: (vm) => {
      held.vm = vm;
    },
  };
}

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
function guestUpToDma(k: Killable, t: LifecycleTable): GuestCast | null {
  const ctx = k.ctx;
  const h = ctx.host;
  const vfio = vfioOn(h);
  const accel = plugAccelerator(ctx, vfio);
  const accelDev = ctx.choose.int("the VM's assigned function's slot (after dsa0's)", 1, 30);
  const spid = ctx.choose.int("guest PASIDs (0 the host's numbers, 1 SPIDs of the VM's own)", 0, 1, { show: (v) => (v === 1 ? "spid" : "identity") }) === 1;
  const va = ctx.choose.int("the guest process's buffer", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
  const vmId = asVmId(1);
  const mm = { vmm: "qemu-vm1" };
  const mdevGroup = createMdev(ctx, accel, "mdev0", 0, vmId, mm).vfioDevice?.group?.id;
  if (mdevGroup === undefined) throw new Error("mdev0 has no IOMMU group");
  const fnDev = ((accel.idxd.iommuDev.sid >> 3) & 0x1f) + accelDev;
  const slot = ctx.step("plug in fn0 for VM 1; vfio-pci takes it", () => {
    const s = h.addDevice("fn0", ((fnDev - 1) % 31) + 1);
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
  t.row("GUEST", "-------- GUEST STARTS DMA --------");
  return { accel, vm, guest, gidxd, p: proc.p, thread: proc.thread, va, file: file.f, gpasid: file.gpasid, hpasid: file.hpasid };
}

/**
 * The guest's DMA (step 12): a MEMMOVE through the dedicated WQ (MOVDIR64B
 * to mdev0's portal, forwarded by the VMM; the hardware WQ tags it with the
 * host PASID), then a MEMFILL by ENQCMD from P's thread to the shared WQ
 * (the CPU translating the guest PASID through KVM's table). P polls both
 * completion records and checks the bytes by CPU reads.
 */
function guestDma(k: Killable, c: GuestCast): void {
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

export const guestLifecycle: HostScenario = tableScenario({
  name: "guest-lifecycle",
  summary: "ioasid.rst normal guest life cycle made by a real guest (vCMD, PASID-cache flushes, its own idxd on an mdev, ENQCMD through KVM): refs 1,2,3,4,3,2,1,0, reclaimed",
  title: "Guest IOASID life cycle from a guest kernel (ioasid.rst table, normal order)",
  at: "kill VM 1 (its VMM process dies) after step STEP of the run",
  table: { vfio: "vmm" },
  body(outer, t) {
    const k = killable(outer);
    const ctx = k.ctx;
    const c = guestUpToDma(k, t);
    if (c === null) return;
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
  },
});
