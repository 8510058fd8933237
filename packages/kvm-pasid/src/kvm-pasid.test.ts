import { asSpid, asVmId, Errno, type Ioasid, Kernel, TraceRecorder } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import type { IoasidSet } from "@vsva/ioasid";
import { describe, expect, it } from "vitest";
import { VmcsField, VmExitReason } from "./layout.js";
import { kvmTestHost, startKvm } from "./testing/host.js";

const VALID = 0x8000_0000;
/** IA32_PASID with VALID set (`VALID | p` would be a negative int32 in JavaScript). */
const msr = (pasid: number) => VALID + pasid;

/** A VM: KVM started first (registered by mm), then VFIO's set with that mm as token. */
function vm(kernel = new Kernel()) {
  const host = kvmTestHost(kernel);
  const mm = { name: "vm mm" };
  const kvm = startKvm(host, mm);
  const set = host.ioasid.allocSet(mm, 16, "mm");
  return { ...host, mm, kvm, set };
}

/** VFIO's and the IOMMU's part of a bind: a host PASID with a guest PASID attached (emits BIND). */
function bound(ioasid: ReturnType<typeof vm>["ioasid"], set: IoasidSet, gpasid: number): Ioasid {
  const id = ioasid.alloc(set, 1, ioasid.capacity);
  ioasid.attachSpid(set, id, asSpid(gpasid));
  return id;
}

describe("KvmPasid: registration", () => {
  it("waits on the mm's pending list until VFIO creates the set, then follows it", () => {
    const host = kvmTestHost();
    const mm = {};
    const kvm = startKvm(host, mm);
    expect(host.ioasid.pendingNotifiers(mm)).toBe(1);
    const set = host.ioasid.allocSet(mm, 4, "mm");
    expect(host.ioasid.pendingNotifiers(mm)).toBe(0);
    const id = bound(host.ioasid, set, 101);
    expect(kvm.translations()).toEqual(new Map([[101, id]]));
  });

  it("is refused, holding no page, when the VM's set already owns IDs (events would be lost)", () => {
    const host = kvmTestHost();
    const mm = {};
    const set = host.ioasid.allocSet(mm, 4, "mm");
    host.ioasid.alloc(set, 1, 10);
    expect(errnoOf(() => startKvm(host, mm))).toBe(Errno.EBUSY);
    expect(host.pool.inUse).toBe(0);
  });

  it("publishes the directories' host addresses in the VMCS fields 0x2038 and 0x203A", () => {
    const { kvm } = vm();
    const low = kvm.vmcsRead(VmcsField.LOW_PASID_DIR_ADDR);
    const high = kvm.vmcsRead(VmcsField.HIGH_PASID_DIR_ADDR);
    expect(low % 4096).toBe(0);
    expect(high % 4096).toBe(0);
    expect(low).not.toBe(high);
  });
});

describe("KvmPasid: BIND, UNBIND, FREE", () => {
  it("BIND installs the translation in memory and takes a reference; UNBIND removes it and puts it", () => {
    const { ioasid, set, kvm } = vm();
    const id = bound(ioasid, set, 101);
    expect(ioasid.refcount(id)).toBe(2);
    expect(kvm.readTable()).toEqual(new Map([[101, id]]));
    expect(kvm.references).toBe(1);
    ioasid.detachSpid(set, id);
    expect(ioasid.refcount(id)).toBe(1);
    expect(kvm.readTable().size).toBe(0);
    expect(kvm.references).toBe(0);
  });

  it("FREE removes the translation and drops the reference in the handler, before the owner's put", () => {
    const { ioasid, set, kvm } = vm();
    const id = bound(ioasid, set, 7);
    const seen: number[] = [];
    ioasid.registerNotifier(null, { priority: 0, call: (e, d) => (e === "FREE" && seen.push(d.refcount), 0) });
    expect(ioasid.free(set, id)).toBe(true);
    // FREE was delivered with owner + KVM counted; KVM put its own inside the walk, the owner's put reclaimed.
    expect(seen).toEqual([2]);
    expect(kvm.readTable().size).toBe(0);
    expect(kvm.references).toBe(0);
    expect(ioasid.state(id)).toBe("IDLE");
  });

  it("an UNBIND after FREE sees ENOENT from ioasid and changes nothing, even before the reclaim", () => {
    const { kernel, ioasid, set, kvm } = vm();
    const other = bound(ioasid, set, 5);
    const id = bound(ioasid, set, 6);
    // Someone else keeps the ID FREE_PENDING (as VDCM's queued clear would).
    ioasid.get(set, id);
    ioasid.free(set, id);
    expect(ioasid.state(id)).toBe("FREE_PENDING");
    const rec = new TraceRecorder(kernel.trace);
    const before = ioasid.snapshot();
    // The core never sends UNBIND after FREE; a late one (as a racing publisher could) must be harmless.
    kvm.notifier.call("UNBIND", { id, spid: asSpid(6), set, private: undefined, refcount: 1 });
    expect(rec.ofKind("kvm.pasid.ignored").map((e) => e.payload.errno)).toEqual([Errno.ENOENT]);
    expect(ioasid.snapshot()).toEqual(before);
    expect(kvm.readTable()).toEqual(new Map([[5, other]]));
  });

  it("only the first BIND and the last UNBIND of a PASID change the table", () => {
    const { kernel, ioasid, set, kvm } = vm();
    const id = bound(ioasid, set, 9);
    const rec = new TraceRecorder(kernel.trace);
    const data = { id, spid: asSpid(9), set, private: undefined, refcount: 2 };
    // A second device bound to the same PASID, from a publisher that notifies per device.
    kvm.notifier.call("BIND", data);
    expect(ioasid.refcount(id)).toBe(2);
    kvm.notifier.call("UNBIND", data);
    expect(kvm.readTable()).toEqual(new Map([[9, id]]));
    expect(rec.events.filter((e) => e.actor === "KVM")).toEqual([]);
    ioasid.detachSpid(set, id);
    expect(kvm.readTable().size).toBe(0);
    expect(ioasid.refcount(id)).toBe(1);
  });

  it("ignores a BIND that contradicts the table, or whose guest PASID ENQCMD cannot carry, taking no reference", () => {
    const { ioasid, set, kvm } = vm();
    const a = bound(ioasid, set, 3);
    const b = ioasid.alloc(set, 1, 100);
    kvm.notifier.call("BIND", { id: b, spid: asSpid(3), set, private: undefined, refcount: 1 });
    kvm.notifier.call("BIND", { id: a, spid: asSpid(4), set, private: undefined, refcount: 2 });
    ioasid.attachSpid(set, b, asSpid(0x10_0000));
    kvm.notifier.call("BIND", { id: b, spid: null, set, private: undefined, refcount: 1 });
    expect(kvm.readTable()).toEqual(new Map([[3, a]]));
    expect([ioasid.refcount(a), ioasid.refcount(b)]).toEqual([2, 1]);
  });

  it("follows the set's death (every ID freed) and the token's next set", () => {
    const { ioasid, mm, set, kvm } = vm();
    bound(ioasid, set, 1);
    bound(ioasid, set, 2);
    ioasid.setPut(set);
    expect(kvm.references).toBe(0);
    expect(kvm.readTable().size).toBe(0);
    expect(ioasid.allocated).toBe(0);
    expect(ioasid.pendingNotifiers(mm)).toBe(1);
    const next = ioasid.allocSet(mm, 4, "mm");
    const id = bound(ioasid, next, 1);
    expect(kvm.readTable()).toEqual(new Map([[1, id]]));
  });

  it("two VMs may use one guest PASID for different host PASIDs", () => {
    const kernel = new Kernel();
    const host = kvmTestHost(kernel);
    const [mmA, mmB] = [{}, {}];
    const kvmA = startKvm(host, mmA, asVmId(1));
    const kvmB = startKvm(host, mmB, asVmId(2));
    const setA = host.ioasid.allocSet(mmA, 4, "mm");
    const setB = host.ioasid.allocSet(mmB, 4, "mm");
    const a = bound(host.ioasid, setA, 101);
    const b = bound(host.ioasid, setB, 101);
    expect(a).not.toBe(b);
    expect(kvmA.enqcmd(msr(101))).toMatchObject({ ok: true, hostPasid: a });
    expect(kvmB.enqcmd(msr(101))).toMatchObject({ ok: true, hostPasid: b });
  });
});

describe("KvmPasid: VM teardown", () => {
  it("drops every reference it holds, unregisters, and frees every page", () => {
    const { ioasid, pool, mm, set, kvm } = vm();
    const ids = [1, 2, 1025, 0x8_0000].map((g) => bound(ioasid, set, g));
    expect(kvm.pages).toBe(5);
    kvm.destroy();
    expect(ids.map((id) => ioasid.refcount(id))).toEqual([1, 1, 1, 1]);
    expect(pool.inUse).toBe(0);
    expect(kvm.pages).toBe(0);
    expect(ioasid.snapshot().sets[0]?.notifiers).toBe(0);
    expect(ioasid.pendingNotifiers(mm)).toBe(0);
    // Later UNBIND and FREE reach no KVM, and the IDs still go away.
    for (const id of ids) ioasid.detachSpid(set, id);
    for (const id of ids) expect(ioasid.free(set, id)).toBe(true);
    expect(errnoOf(() => kvm.enqcmd(msr(1)))).toBe(Errno.EINVAL);
    kvm.destroy();
  });

  it("traces install and remove with vm, guest PASID, host PASID and the refcount after KVM's get or put", () => {
    const kernel = new Kernel();
    const rec = new TraceRecorder(kernel.trace);
    const { ioasid, set, kvm } = vm(kernel);
    const a = bound(ioasid, set, 11);
    const b = bound(ioasid, set, 12);
    ioasid.detachSpid(set, a);
    ioasid.free(set, a);
    kvm.destroy();
    const kvmEvents = rec.byActor("KVM").map((e) => [e.kind, e.ids, "cause" in e.payload ? e.payload.cause : null, e.refcount]);
    expect(kvmEvents).toEqual([
      ["kvm.pasid.install", { vm: 1, gpasid: 11, hpasid: a }, null, 2],
      ["kvm.pasid.install", { vm: 1, gpasid: 12, hpasid: b }, null, 2],
      ["kvm.pasid.remove", { vm: 1, gpasid: 11, hpasid: a }, "UNBIND", 1],
      ["kvm.pasid.remove", { vm: 1, gpasid: 12, hpasid: b }, "TEARDOWN", 1],
    ]);
  });
});

describe("KvmPasid: ENQCMD, ENQCMDS and IA32_PASID", () => {
  it("translates the thread's IA32_PASID through memory in two reads", () => {
    const { ioasid, set, kvm } = vm();
    const id = bound(ioasid, set, 0x8_0401);
    expect(kvm.enqcmd(msr(0x8_0401))).toEqual({ ok: true, guestPasid: 0x8_0401, hostPasid: id, reads: 2 });
    expect(kvm.enqcmd(BigInt(msr(0x8_0401)))).toMatchObject({ ok: true, hostPasid: id });
  });

  it("raises #GP in the guest when IA32_PASID.VALID is clear, reading nothing", () => {
    const { ioasid, set, kvm } = vm();
    bound(ioasid, set, 5);
    expect(kvm.enqcmd(5)).toEqual({ ok: false, fault: { kind: "GP", vector: 13, errorCode: 0, reason: "IA32_PASID.VALID is clear" }, reads: 0 });
  });

  it("exits with reason 72 for an unbound guest PASID and leaves the host untouched", () => {
    const kernel = new Kernel();
    const { ioasid, set, kvm } = vm(kernel);
    const id = bound(ioasid, set, 5);
    ioasid.detachSpid(set, id);
    const before = ioasid.snapshot();
    const rec = new TraceRecorder(kernel.trace);
    const r = kvm.enqcmd(msr(5));
    expect(r).toEqual({ ok: false, fault: { kind: "VMEXIT", exitReason: VmExitReason.ENQCMD_PASID_TRANSLATION_FAILURE, guestPasid: 5, miss: "dir-not-present" }, reads: 1 });
    expect(VmExitReason.ENQCMD_PASID_TRANSLATION_FAILURE).toBe(72);
    expect(ioasid.snapshot()).toEqual(before);
    expect(rec.ofKind("kvm.pasid.translate-fault").map((e) => [e.ids, e.payload.exitReason])).toEqual([[{ vm: 1, gpasid: 5 }, 72]]);
  });

  it("ENQCMDS translates its source operand's PASID, exiting with reason 73 when it cannot", () => {
    const { ioasid, set, kvm } = vm();
    const id = bound(ioasid, set, 40);
    expect(kvm.enqcmds(40)).toMatchObject({ ok: true, hostPasid: id });
    expect(kvm.enqcmds(41)).toMatchObject({ ok: false, fault: { kind: "VMEXIT", exitReason: 73, miss: "entry-not-valid" } });
    expect(errnoOf(() => kvm.enqcmds(0x10_0000))).toBe(Errno.EINVAL);
  });

  it("WRMSR IA32_PASID takes #GP for a reserved bit (30:20 or 63:32) and accepts PASID|VALID", () => {
    const { kvm } = vm();
    expect(kvm.wrmsrPasid(msr(0xf_ffff))).toEqual({ ok: true, value: msr(0xf_ffff) });
    expect(kvm.wrmsrPasid(0)).toEqual({ ok: true, value: 0 });
    for (const bad of [1 << 20, 1 << 30, 2 ** 32, 1n << 63n]) {
      expect(kvm.wrmsrPasid(bad)).toMatchObject({ ok: false, fault: { kind: "GP", vector: 13 } });
    }
  });

  it("refuses values no MSR can hold with EINVAL, never another exception", () => {
    const { kvm } = vm();
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 53, -1n, 1n << 64n]) {
      expect(errnoOf(() => kvm.enqcmd(bad))).toBe(Errno.EINVAL);
      expect(errnoOf(() => kvm.wrmsrPasid(bad))).toBe(Errno.EINVAL);
    }
    // Reserved bits cannot be in IA32_PASID: its WRMSR faults first.
    expect(errnoOf(() => kvm.enqcmd(msr(1 << 20)))).toBe(Errno.EINVAL);
  });
});
