import { type VmId, asVmId } from "@vsva/kernel";
import { type IommuDevice, type Mm, Prot } from "@vsva/iommu-core";
import { DSA_COMPLETION_SIZE, DescFlag, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { Idxd, type IdxdUserFile, UserThread, openUserWq } from "@vsva/idxd";
import { MdevGuest } from "@vsva/vdcm/testing";
import { Vdcm, type VdcmMdev } from "@vsva/vdcm";
import { Guest, KvmEnqcmdPortal, MdevRegions, Vm, type GuestPasidMode } from "@vsva/vmm";
import type { Vfio } from "@vsva/vfio-type1";
import type { EndpointOptions } from "@vsva/machine";
import type { DeviceSlot } from "../world/host.js";
import type { StepContext } from "../world/host-scenario.js";
import type { Accelerator } from "./vdcm-common.js";
import { PATTERN, hexBytes } from "./sva-common.js";
import { PAGE, bindToVfio, groupOf } from "./vfio-common.js";

export type { Accelerator };

/** Where the guest's PCI core puts the VM's mdevs: its dedicated-WQ mdev at 00:05.0, its shared-WQ mdev at 00:06.0. */
const DEDICATED_BDF = { bus: 0, dev: 5, fn: 0 };
const SHARED_BDF = { bus: 0, dev: 6, fn: 0 };
/**
 * Guest RAM of an accelerator VM: small, since MAP_DMA maps it page by page
 * into each of the VM's three containers and the fail-nth sweep fails each
 * page's map in turn. The guest kernel's pool is all of it above the first
 * 64 KiB: it holds a PASID directory per device behind the vIOMMU (32 pages
 * each at 20 PASID bits: three devices) and the processes' tables and
 * buffers.
 */
export const ACCEL_GUEST_RAM = 576 * 1024;
const GUEST_KERNEL = 0x1_0000;
/** Entries of the guest idxd's one WQ (the mdev's): what its driver configures in the virtual WQCFG. */
const GUEST_WQ_SIZE = 4;

export interface AccelVmOptions {
  readonly id: number;
  /** The function assigned to the VM (vfio-pci): at 00:`dev`.0 on the host, or anywhere. */
  readonly dev: number | EndpointOptions;
  readonly device: string;
  /** The host accelerator's WQs lent to this VM's mdevs: a dedicated one and a shared one, both of type "mdev". */
  readonly dedicatedWq: number;
  readonly sharedWq: number;
  readonly guestPasids?: GuestPasidMode;
  /** SPIDs: where the VMM starts the VM's guest PASIDs. */
  readonly firstGuestPasid?: number;
  /** Guest RAM (default {@link ACCEL_GUEST_RAM}); the guest kernel's pool is all of it above the first 64 KiB. */
  readonly ramBytes?: number;
  /** Told the VM as soon as the VMM has started it (a crash wrapper's victim). */
  readonly onStart?: (vm: Vm) => void;
}

/** A VM with an assigned function and two mdevs of the host's accelerator, its guest booted and its idxd probed on the dedicated one. */
export interface AccelVm {
  readonly slot: DeviceSlot;
  readonly vm: Vm;
  readonly guest: Guest;
  /** The guest's own idxd driver on its dedicated-WQ mdev (one dedicated user WQ, through the VMM's region accesses). */
  readonly gidxd: Idxd<MdevRegions>;
  /** The guest's view of its shared-WQ mdev (an SVA-capable function behind the vIOMMU). */
  readonly sharedDev: IommuDevice;
  /** The shared WQ's portal as QEMU maps it into the guest: a store's PASID is translated by KVM. */
  readonly portal: KvmEnqcmdPortal;
  readonly mdevs: readonly VdcmMdev[];
}

/**
 * One VM of the accelerator scenarios, as an administrator and QEMU set it
 * up: a function given to vfio-pci for it; the VDCM's mdevs on a dedicated
 * and a shared WQ of the host's accelerator, created for the VM (by its
 * VMM's mm) before it starts; the VMM starting it with all three (its death
 * deferred, the VM held to the per-VM invariants and its KVM table to its
 * binds); the guest booting its IOMMU stack and, on the dedicated-WQ mdev,
 * its own idxd driver (the PCI core enables PASID through the mdev's config
 * region first: pci_enable_pasid()).
 */
export function startAccelVm(ctx: StepContext, vfio: Vfio, a: Accelerator, o: AccelVmOptions): AccelVm {
  const av = bootAccelVm(ctx, vfio, a, o);
  if (av === null) throw new Error(`VM ${o.id} died while it booted`);
  return av;
}

/**
 * {@link startAccelVm} for a VM that may be killed between its steps (the
 * crash wrapper's victim): null when the VM is gone before its guest's
 * idxd is up.
 */
export function bootAccelVm(ctx: StepContext, vfio: Vfio, a: Accelerator, o: AccelVmOptions): AccelVm | null {
  const h = ctx.host;
  const id: VmId = asVmId(o.id);
  const mm = { vmm: `qemu-vm${o.id}` };
  const slot = ctx.step(`plug in ${o.device}; vfio-pci takes it for VM ${o.id}`, () => {
    const s = h.addDevice(o.device, o.dev);
    bindToVfio(ctx, vfio, s);
    return s;
  });
  const mdevs = [
    { name: `vm${o.id}-dwq`, wq: o.dedicatedWq, bdf: DEDICATED_BDF },
    { name: `vm${o.id}-swq`, wq: o.sharedWq, bdf: SHARED_BDF },
  ].map((m) => {
    const made = ctx.step(`the VDCM creates ${m.name} on ${a.idxd.wq(m.wq).name} for VM ${o.id} (its notifier registers by the VM's mm token)`, () => a.vdcm.createMdev(m.name, a.idxd.wq(m.wq), { vm: id, mm }));
    ctx.defer(`the VDCM removes ${m.name}`, () => a.vdcm.removeMdev(made));
    return { ...m, made };
  });
  ctx.watchVdcm(a.vdcm);
  const vm = ctx.step(`VMM starts VM ${o.id} with ${o.device} and its two mdevs: guest RAM mapped in each device's container, KVM, ${o.guestPasids === "spid" ? `SPID guest PASIDs from ${o.firstGuestPasid ?? 1}` : "identity guest PASIDs"}`, () => {
    const v = new Vm({
      host: h,
      vfio,
      id: o.id,
      ramBytes: o.ramBytes ?? ACCEL_GUEST_RAM,
      device: { group: groupOf(slot.dev), name: o.device, endpoint: slot.ep },
      mm,
      mdevs: mdevs.map((m) => ({ group: mdevGroup(m.made), name: m.name, guestBdf: m.bdf })),
      ...(o.guestPasids === undefined ? {} : { guestPasids: o.guestPasids }),
      ...(o.firstGuestPasid === undefined ? {} : { firstGuestPasid: o.firstGuestPasid }),
    });
    ctx.defer(`VM ${o.id}'s VMM exits (if still running): VFIO release, KVM teardown, guest RAM back to the host`, () => killVm(ctx, v));
    ctx.watchVm(v);
    ctx.watchKvm(v.kvm, v.mm);
    o.onStart?.(v);
    return v;
  });
  // The crash wrapper may kill the VM after any step: read its state afresh each time.
  const dead = (): boolean => vm.state !== "running";
  if (dead()) return null;
  const guest = ctx.step(`VM ${o.id}'s guest boots its IOMMU stack over the virtual VT-d`, () => new Guest(vm, { pool: { base: GUEST_KERNEL, size: vm.ramBytes - GUEST_KERNEL } }));
  if (dead()) return null;
  const gidxd = ctx.step(`VM ${o.id}'s guest probes its idxd on ${mdevs[0]?.name ?? "its mdev"}: PASID enabled in the mdev's config, a dedicated user WQ configured through the VMM's region accesses`, () => {
    const file = vm.mdevFiles[0];
    const dev = guest.mdevs[0];
    if (file === undefined || dev === undefined) throw new Error(`VM ${o.id} has no dedicated-WQ mdev`);
    new MdevGuest(file).enablePasid();
    const d = Idxd.probe({ kernel: vm.kernel, core: guest.core, iommuDev: dev, hw: new MdevRegions(file), config: { wqs: [{ mode: "dedicated", size: GUEST_WQ_SIZE, type: "user" }] }, name: "dsa0" });
    // The guest driver's remove runs before the VM dies, as the guest shuts down; a VM already dead has nothing to remove.
    ctx.defer(`VM ${o.id}'s guest removes its idxd (if the VM still runs)`, () => {
      if (vm.state === "running") d.remove();
    });
    return d;
  });
  if (dead()) return null;
  const sharedDev = guest.mdevs[1];
  if (sharedDev === undefined) throw new Error(`VM ${o.id} has no shared-WQ mdev`);
  return { slot, vm, guest, gidxd, sharedDev, portal: new KvmEnqcmdPortal(vm, a.idxd.wq(o.sharedWq)), mdevs: mdevs.map((m) => m.made) };
}

/** The VM's VMM process dies (kill -9 or quit): its KVM table is no longer checked (there is none), then it goes. Idempotent. */
export function killVm(ctx: StepContext, vm: Vm): void {
  if (vm.state !== "running") return;
  ctx.unwatchKvm(vm.kvm);
  vm.kill();
}

function mdevGroup(m: VdcmMdev): number {
  const g = m.vfioDevice?.group?.id;
  if (g === undefined) throw new Error(`${m.name} has no IOMMU group`);
  return g;
}

/**
 * The DSA-like accelerator at 00:`dev`.0 below the host's IOMMU, probed by
 * its host driver with `wqs` (user WQs for the host's own processes, mdev
 * WQs lent to the VDCM), and the VDCM on it. idxd is removed at teardown,
 * after every mdev (deferred first, so it runs last).
 */
export function plugAccelWqs(ctx: StepContext, vfio: Vfio, dev: number, wqs: readonly { readonly mode: "dedicated" | "shared"; readonly type: "user" | "mdev" }[], label: string, name = "dsa0"): Accelerator {
  const h = ctx.host;
  const size = Math.max(1, Math.floor(64 / wqs.length));
  const idxd = ctx.step(label, () => h.addAccelerator(name, dev, { wqs: wqs.map((w) => ({ ...w, size })) }, { numWqs: Math.max(4, wqs.length) }));
  ctx.defer("idxd is removed: WQs and device disabled, device reset", () => idxd.remove());
  const vdcm = ctx.step(`the VDCM takes ${name} (aux domains enabled on it)`, () => new Vdcm({ kernel: h.kernel, ioasid: h.ioasid, core: h.core, vfio, parent: idxd.iommuDev }));
  return { idxd, vdcm };
}

/** A guest process of an {@link AccelVm}: its buffer at `va`, the thread that submits, what it opened. */
export interface AccelProcess {
  readonly name: string;
  readonly av: AccelVm;
  readonly mm: Mm;
  readonly thread: UserThread;
  readonly va: number;
  /** Its file of the guest idxd's dedicated WQ, when it opened it. */
  readonly dwq: IdxdUserFile | null;
  /** Its guest PASID (one per mm, whichever device it bound). */
  readonly pasid: number;
}

/** Buffer layout of a guest process: source, destination, fill target, completion records. */
export const BUF = { src: 0x0000, dst: 0x0800, fill: 0x1000, records: 0x1800, size: 2 * PAGE } as const;

/** Which of its VM's devices a guest process binds first (it may bind more with the same PASID: each device behind the vIOMMU is in a container of its own, and the host binds the PASID over each). */
export type AccelUse = "dedicated" | "shared" | "function";

/**
 * A guest process that maps and populates its buffer and binds one of the
 * VM's devices with SVA: the guest idxd's dedicated WQ (its char device
 * binds the mdev and puts the PASID in the virtual WQCFG), the shared-WQ
 * mdev (for ENQCMD), or the assigned function. Its address space is
 * declared to the invariant checker under its HOST PASID (what the DMA
 * carries at the host IOMMU), through the guest's table and the VM's RAM.
 * Not a step.
 */
export function accelProcess(ctx: StepContext, av: AccelVm, name: string, va: number, use: AccelUse): AccelProcess {
  const { guest, vm } = av;
  const mm = guest.newProcess(name);
  mm.mmap(va, BUF.size, Prot.READ | Prot.WRITE, { populate: true });
  const thread = new UserThread(mm);
  const dwq = use === "dedicated" ? openUserWq(av.gidxd, 0, thread) : null;
  const pasid = dwq?.pasid ?? guest.core.sva.bindDevice(use === "shared" ? av.sharedDev : guest.device, mm).pasid;
  const host = vm.viommu.hostPasid(pasid);
  if (host === null) throw new Error(`${vm.name}: guest PASID ${pasid} of ${name} has no host PASID`);
  ctx.bindSpace(host, (addr) => {
    const m = mm.lookup(addr);
    return m === null ? null : vm.hpa(m.pa + (addr - m.va));
  });
  return { name, av, mm, thread, va, dwq, pasid };
}

/** The host PASID behind a guest process's PASID (null once its VM is gone or the PASID freed). */
export function hostPasidOf(p: AccelProcess): number | null {
  return p.av.vm.state === "running" ? p.av.vm.viommu.hostPasid(p.pasid) : null;
}

/** What KVM's PASID translation table for the VM holds, as the CPU reads it: guest PASID → host PASID. */
export function kvmTable(vm: Vm): Map<number, number> {
  return new Map<number, number>(vm.kvm.readTable());
}

/** The bytes a process's MEMMOVE moves: a function of the process's name and the round, so two processes never move the same. */
export function moveBytes(who: string, round: number, len = 64): Uint8Array {
  let seed = round * 131;
  for (const c of who) seed = (seed * 31 + c.charCodeAt(0)) & 0xffff;
  return Uint8Array.from({ length: len }, (_, i) => (seed + i * 7 + (seed >> 8)) & 0xff);
}

/**
 * A MEMMOVE by MOVDIR64B through the guest idxd's dedicated WQ (the mdev's;
 * the VDCM put the host PASID in the hardware WQ): the process writes its
 * source, submits, the host's accelerator runs, the process polls its
 * completion record and reads the destination by CPU. Not a step; true when
 * the bytes arrived.
 */
export function dedicatedMove(ctx: StepContext, p: AccelProcess, round: number): boolean {
  const f = p.dwq;
  if (f === null) throw new Error(`${p.name} has no dedicated WQ open`);
  const data = moveBytes(p.name, round);
  p.mm.write(p.va + BUF.src, data);
  p.mm.write(p.va + BUF.records, new Uint8Array(DSA_COMPLETION_SIZE));
  const r = f.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: p.va + BUF.records, src: p.va + BUF.src, dst: p.va + BUF.dst, size: data.length }));
  ctx.host.settle();
  const rec = f.readCompletion(p.va + BUF.records);
  const moved = hexBytes(p.mm.read(p.va + BUF.dst, data.length)) === hexBytes(data);
  ctx.expect(r === "posted" && rec.status === DsaStatus.SUCCESS, `${p.av.vm.name}'s ${p.name}: the MEMMOVE through its dedicated WQ completes (status 0x${rec.status.toString(16)})`);
  ctx.expect(moved, `${p.av.vm.name}'s ${p.name} reads the moved bytes by CPU`);
  return moved;
}

/** The 8-byte pattern of a process's MEMFILL in round `round`. */
export function fillPattern(who: string, round: number): bigint {
  const b = moveBytes(who, round + 1000, 8);
  return new DataView(b.buffer).getBigUint64(0, true);
}

/**
 * A MEMFILL by ENQCMD to the VM's shared-WQ mdev: the thread's IA32_PASID
 * holds the guest PASID, KVM's translation puts the host PASID in the
 * payload. Not a step; true when the pattern arrived.
 */
export function sharedFill(ctx: StepContext, p: AccelProcess, round: number): boolean {
  const pattern = fillPattern(p.name, round);
  const at = p.va + BUF.fill;
  p.mm.write(p.va + BUF.records + 0x40, new Uint8Array(DSA_COMPLETION_SIZE));
  const r = p.thread.enqcmd(p.av.portal, encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: p.va + BUF.records + 0x40, pattern, dst: at, size: 64 }));
  ctx.host.settle();
  const rec = decodeCompletion(p.mm.read(p.va + BUF.records + 0x40, DSA_COMPLETION_SIZE));
  const want = new Uint8Array(8);
  new DataView(want.buffer).setBigUint64(0, pattern, true);
  const filled = hexBytes(p.mm.read(at + 56, 8)) === hexBytes(want);
  ctx.expect(r === "accepted" && rec.status === DsaStatus.SUCCESS, `${p.av.vm.name}'s ${p.name}: the MEMFILL by ENQCMD through KVM's translation is accepted and completes (${r}, status 0x${rec.status.toString(16)})`);
  ctx.expect(filled, `${p.av.vm.name}'s ${p.name} reads the filled pattern by CPU`);
  return filled;
}

/**
 * The process is done: it closes its dedicated WQ's file (the guest idxd
 * drains the WQ and clears its PASID; the VDCM clears the hardware WQ) and
 * unbinds every device it bound; the guest frees its PASID, the VMM's
 * virtual command frees the host's. Its space is undeclared. Not a step.
 */
export function closeProcess(ctx: StepContext, p: AccelProcess): void {
  const host = hostPasidOf(p);
  p.dwq?.close();
  const { guest } = p.av;
  for (const d of [p.av.sharedDev, guest.device]) {
    const b = guest.core.sva.bondOf(d, p.mm);
    if (b !== null) guest.core.sva.unbindDevice(b);
  }
  ctx.host.settle();
  if (host !== null) ctx.unbindSpace(host);
}

/** Where the assigned function's SVA DMA writes in a process's buffer (beyond what the accelerator's descriptors touch). */
export const FN_DMA = BUF.fill + 0x200;

/** A guest process's SVA DMA through its VM's assigned function (its driver programs the function's engine through the BAR); checked by a CPU read. Not a step. */
export function functionDma(ctx: StepContext, p: AccelProcess, round: number): void {
  const bytes = PATTERN.map((b) => b ^ round ^ p.name.charCodeAt(0));
  const r = p.av.guest.dma({ pasid: p.pasid, addr: p.va + FN_DMA, length: bytes.length, direction: "write", pattern: bytes });
  ctx.expect(r === "ok", `${p.av.vm.name}'s ${p.name}: its assigned function's SVA DMA completes (${r})`);
  ctx.expect(hexBytes(p.mm.read(p.va + FN_DMA, bytes.length)) === hexBytes(bytes), `${p.av.vm.name}'s ${p.name} reads the function's bytes by CPU`);
}
