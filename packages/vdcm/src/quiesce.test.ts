import { asSpid, asVmId, Errno, type HostPasid, type Ioasid, KernelError, NOTIFY_DONE, Work } from "@vsva/kernel";
import { IoasidPriority } from "@vsva/ioasid";
import { errnoOf } from "@vsva/kernel/testing";
import { DescFlag, DsaCmdErr, DsaCommand, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { describe, expect, it } from "vitest";
import type { HostWq } from "./host-wq.js";
import { allocPasid, freePasid, type HostDriverContext, openMdev, registerHostDriver, type VdcmRigOptions, vdcmRig, vdcmViolations, vmmUser } from "./testing/index.js";
import { CMD_ERR_HW } from "./vbar0.js";

const G = 101;
const SRC = 0x10000;
const DST = 0x20000;
const CR = 0x30000;

function setUp(wq: number, opts: VdcmRigOptions = {}) {
  const r = vdcmRig(opts);
  const user = vmmUser("vm1");
  const mdev = r.vdcm.createMdev("mdev0", r.wq(wq), { vm: asVmId(1), mm: user.mm });
  const vm = openMdev(r.vfio, user, mdev);
  const hpasid = allocPasid(vm.container) as Ioasid;
  const set = r.ioasid.findSetByToken(user.mm);
  if (set === null) throw new Error("no set");
  r.ioasid.attachSpid(set, hpasid, asSpid(G));
  // The host PASID's address space: three pages, source, destination and completion records.
  for (const [va, pa] of [[SRC, 0x100000], [DST, 0x200000], [CR, 0x300000]] as const) r.fake.map(hpasid, va, { pa });
  r.mem.writeBytes(0x100000, new TextEncoder().encode("0123456789abcdef".repeat(4)));
  return { ...r, user, mdev, vm, hpasid, set };
}

const move = (i: number, pasid = G) =>
  encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, pasid, completionAddr: CR + 32 * i, src: SRC + 16 * i, dst: DST + 16 * i, size: 16 });

function status(r: ReturnType<typeof setUp>, i: number): number {
  const rec = new Uint8Array(32);
  r.mem.readBytes(0x300000 + 32 * i, rec);
  return decodeCompletion(rec).status;
}

describe("quiesce before clear: FREE with descriptors in flight (a stepwise device)", () => {
  it("the queued clearing drains the WQ, so every descriptor submitted before it completes with the host PASID, and only then clears and puts", () => {
    const r = setUp(0, { dsa: { mode: "stepwise" } });
    expect(r.vm.guest.programWq(G)).toBe(DsaCmdErr.SUCCESS);
    for (let i = 0; i < 3; i++) r.vm.guest.submit(move(i));
    expect([0, 1, 2].map((i) => status(r, i))).toEqual([DsaStatus.NONE, DsaStatus.NONE, DsaStatus.NONE]);
    freePasid(r.vm.container, r.hpasid);
    // Nothing runs in the FREE handler: the descriptors still wait, the WQ still has the PASID.
    expect(status(r, 0)).toBe(DsaStatus.NONE);
    expect(r.wq(0).pasid).toBe(r.hpasid);
    // A store after FREE was notified finds the guest's WQ disabled and is dropped, as the device drops it.
    const before = r.dsa.stats.submitted;
    r.vm.guest.submit(move(3));
    expect(r.dsa.stats.submitted).toBe(before);
    r.kernel.scheduler.drain();
    expect([0, 1, 2].map((i) => status(r, i))).toEqual([DsaStatus.SUCCESS, DsaStatus.SUCCESS, DsaStatus.SUCCESS]);
    const out = new Uint8Array(48);
    r.mem.readBytes(0x200000, out);
    expect(new TextDecoder().decode(out)).toBe("0123456789abcdef".repeat(3));
    expect(status(r, 3)).toBe(DsaStatus.NONE);
    expect(r.wq(0).pasid).toBeNull();
    expect(r.ioasid.state(r.hpasid)).toBe("IDLE");
  });

  it("the guest's own DISABLE_WQ drains too before the WQ is cleared", () => {
    const r = setUp(0, { dsa: { mode: "stepwise" } });
    r.vm.guest.programWq(G);
    r.vm.guest.submit(move(0));
    expect(r.vm.guest.disableWq()).toBe(DsaCmdErr.SUCCESS);
    expect(status(r, 0)).toBe(DsaStatus.SUCCESS);
    expect(r.wq(0).pasid).toBeNull();
  });
});

describe("a shared WQ: ENQCMD through the trapped portal", () => {
  it("translates the payload's guest PASID by SPID in the VM's set: the descriptor runs with the host PASID, no reference is taken", () => {
    const r = setUp(2);
    expect(r.vm.guest.programWq(G)).toBe(DsaCmdErr.SUCCESS);
    expect(r.ioasid.refcount(r.hpasid)).toBe(1);
    expect(r.vm.guest.submit(move(0))).toBe(64);
    expect(status(r, 0)).toBe(DsaStatus.SUCCESS);
    expect(r.mdev.programmed).toBeNull();
  });

  it("drops a descriptor whose guest PASID does not resolve (EINVAL) and submits nothing", () => {
    const r = setUp(2);
    r.vm.guest.programWq(G);
    const before = r.dsa.stats.submitted;
    expect(errnoOf(() => r.vm.guest.submit(move(0, 202)))).toBe(Errno.EINVAL);
    expect(r.dsa.stats.submitted).toBe(before);
  });

  it("answers retry (0 bytes taken) while the guest's WQ is disabled, and refuses ENABLE_WQ without PASID_EN", () => {
    const r = setUp(2);
    expect(r.vm.guest.submit(move(0))).toBe(0);
    r.vm.guest.enablePasid();
    r.vm.guest.writePasid(0, false, false);
    r.vm.guest.command(DsaCommand.ENABLE_DEVICE);
    expect(r.vm.guest.command(DsaCommand.ENABLE_WQ, 0)).toBe(DsaCmdErr.PASID_EN);
  });
});

describe("a shared WQ: FREE of a host PASID the guest still has descriptors of (a stepwise device)", () => {
  /**
   * The IOMMU driver's reference on a bound PASID, and its teardown work at
   * IOMMU priority that puts it: the rig's IOMMU is a fake, so the test holds
   * that reference and queues that put as the VT-d driver's FREE handler does.
   */
  function withIommuRef(r: ReturnType<typeof setUp>): string[] {
    const order: string[] = [];
    r.ioasid.get(r.set, r.hpasid);
    const put = new Work("teardown_pasid_wk", () => {
      order.push(`iommu put, ${r.mdev.drainsPending.length} drains pending`);
      r.ioasid.put(r.set, r.hpasid);
    });
    const wq = r.kernel.scheduler.createWorkqueue("iommu");
    r.ioasid.registerNotifier(null, { priority: IoasidPriority.IOMMU, call: (ev) => (ev === "FREE" && wq.queueWork(put), NOTIFY_DONE) });
    return order;
  }

  it("the FREE handler only queues a DRAIN_PASID; the work runs it ahead of the IOMMU's put, so every descriptor enqueued before FREE completes while the PASID still translates", () => {
    const r = setUp(2, { dsa: { mode: "stepwise" } });
    const order = withIommuRef(r);
    expect(r.vm.guest.programWq(G)).toBe(DsaCmdErr.SUCCESS);
    for (let i = 0; i < 3; i++) expect(r.vm.guest.submit(move(i))).toBe(64);
    freePasid(r.vm.container, r.hpasid);
    expect(r.mdev.drainsPending).toEqual([r.hpasid]);
    expect(status(r, 0)).toBe(DsaStatus.NONE);
    expect(r.ioasid.state(r.hpasid)).toBe("FREE_PENDING");
    r.kernel.scheduler.drain();
    expect([0, 1, 2].map((i) => status(r, i))).toEqual([DsaStatus.SUCCESS, DsaStatus.SUCCESS, DsaStatus.SUCCESS]);
    expect(order).toEqual(["iommu put, 0 drains pending"]);
    expect(r.ioasid.state(r.hpasid)).toBe("IDLE");
    // The shared WQ stays enabled for the guest's other PASIDs.
    expect(r.mdev.bar0.wqEnabled).toBe(true);
    expect(r.mdev.drainsPending).toEqual([]);
  });

  it("a device that refuses the drain is logged and traced, and nothing else changes", () => {
    const made: StubbornWq[] = [];
    const r = setUp(2, { dsa: { mode: "stepwise" }, hostDriver: (ctx) => registerHostDriver(ctx).map((w) => { const s = new StubbornWq(w); made.push(s); return s; }) });
    withIommuRef(r);
    r.vm.guest.programWq(G);
    freePasid(r.vm.container, r.hpasid);
    r.kernel.scheduler.drain();
    expect(r.kernel.log.lines.some((l) => l.actor === "VDCM" && l.message.includes(`draining host PASID ${r.hpasid} failed`))).toBe(true);
    expect(r.mdev.drainsPending).toEqual([]);
    expect(r.ioasid.state(r.hpasid)).toBe("IDLE");
  });

  it("the VMM's last close drains every PASID of the VM at once, before the container's release unbinds and frees them; a FREE after that queues nothing", () => {
    const r = setUp(2, { dsa: { mode: "stepwise" } });
    r.vm.guest.programWq(G);
    for (let i = 0; i < 2; i++) r.vm.guest.submit(move(i));
    r.vm.device.close();
    expect([0, 1].map((i) => status(r, i))).toEqual([DsaStatus.SUCCESS, DsaStatus.SUCCESS]);
    expect(r.ioasid.state(r.hpasid)).toBe("ACTIVE");
    freePasid(r.vm.container, r.hpasid);
    expect(r.mdev.drainsPending).toEqual([]);
  });
});

/** A host WQ whose clearing the hardware refuses while `refuse` is set (ENXIO, as idxd reports a refused WQ command). */
class StubbornWq implements HostWq {
  refuse = true;
  constructor(readonly inner: HostWq) {}
  get id(): number {
    return this.inner.id;
  }
  get mode(): "dedicated" | "shared" {
    return this.inner.mode;
  }
  get size(): number {
    return this.inner.size;
  }
  get pasid(): HostPasid | null {
    return this.inner.pasid;
  }
  setPasid(pasid: HostPasid, priv?: boolean): void {
    this.inner.setPasid(pasid, priv);
  }
  clearPasid(): void {
    if (this.refuse) throw new KernelError(Errno.ENXIO, "DISABLE_WQ refused");
    this.inner.clearPasid();
  }
  drain(): void {
    this.inner.drain();
  }
  drainPasid(pasid: HostPasid): void {
    if (this.refuse) throw new KernelError(Errno.ENXIO, "DRAIN_PASID refused");
    this.inner.drainPasid(pasid);
  }
  movdir64b(desc: Uint8Array): void {
    this.inner.movdir64b(desc);
  }
  enqcmd(desc: Uint8Array): "accepted" | "retry" {
    return this.inner.enqcmd(desc);
  }
}

describe("a WQ the hardware will not clear", () => {
  const made: StubbornWq[] = [];
  const stubborn = (ctx: HostDriverContext) => registerHostDriver(ctx).map((w) => {
    const s = new StubbornWq(w);
    made.push(s);
    return s;
  });

  it("keeps the reference, so the PASID is never reclaimed under the WQ; the guest sees HW_ERR; a later release clears and puts", () => {
    const r = setUp(0, { hostDriver: stubborn });
    const wq = made.find((m) => m === r.wq(0));
    if (wq === undefined) throw new Error("not a stubborn WQ");
    r.vm.guest.programWq(G);
    expect(r.vm.guest.disableWq()).toBe(CMD_ERR_HW);
    expect(wq.pasid).toBe(r.hpasid);
    expect(r.ioasid.refcount(r.hpasid)).toBe(2);
    freePasid(r.vm.container, r.hpasid);
    r.kernel.scheduler.drain();
    expect(r.ioasid.state(r.hpasid)).toBe("FREE_PENDING");
    expect(vdcmViolations(r.vdcm, r.ioasid, r.wqs)).toEqual([]);
    wq.refuse = false;
    r.vm.device.close();
    expect(wq.pasid).toBeNull();
    expect(r.ioasid.state(r.hpasid)).toBe("IDLE");
  });

  it("a removal that still cannot clear lets the mdev go but never the reference", () => {
    const r = setUp(0, { hostDriver: stubborn });
    r.vm.guest.programWq(G);
    r.user.exit();
    r.vdcm.removeMdev(r.mdev);
    expect(r.ioasid.refcount(r.hpasid)).toBe(1);
    expect(r.ioasid.state(r.hpasid)).toBe("FREE_PENDING");
    expect(r.kernel.log.lines.some((l) => l.actor === "VDCM" && l.message.includes("reference stays held"))).toBe(true);
  });
});
