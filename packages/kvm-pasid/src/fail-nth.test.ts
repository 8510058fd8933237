import { asSpid, type Ioasid, Kernel } from "@vsva/kernel";
import { tolerate } from "@vsva/kernel/testing";
import type { IoasidSet } from "@vsva/ioasid";
import { describe, expect, it } from "vitest";
import type { KvmPasid } from "./kvm-pasid.js";
import { kvmTestHost, startKvm } from "./testing/host.js";

/**
 * The VM's life with KVM, in the style of iommufd_fail_nth: start KVM, let
 * VFIO create the set, bind four guest PASIDs spread over both directories
 * and two tables of one directory, unbind one, free one. With the n-th
 * fallible step failing, the state must stay consistent (what memory holds is
 * what KVM believes, KVM holds one reference per translation and no other,
 * pages held are the structure's), and teardown must leave nothing behind.
 */
function run(n: number | null) {
  const kernel = new Kernel();
  const host = kvmTestHost(kernel);
  const { ioasid, pool } = host;
  const mm = {};
  if (n !== null) kernel.faults.failNth(n);
  const kvm: KvmPasid | null = tolerate(() => startKvm(host, mm));
  const set: IoasidSet | null = tolerate(() => ioasid.allocSet(mm, 8, "mm"));
  const ids: Ioasid[] = [];
  if (set !== null) {
    const s = set;
    for (const g of [1, 2, 1025, 0x8_0000]) {
      tolerate(() => {
        const id = ioasid.alloc(s, 1, 100);
        ids.push(id);
        ioasid.attachSpid(s, id, asSpid(g));
      });
    }
    const [a, b] = ids;
    if (a !== undefined && ioasid.info(a)?.spid !== null) tolerate(() => ioasid.detachSpid(s, a));
    if (b !== undefined) tolerate(() => ioasid.free(s, b));
  }
  const injected = [...kernel.faults.injected];
  kernel.faults.disarm();

  // Consistency before teardown.
  const k = kvm;
  if (k === null) {
    expect(pool.inUse).toBe(0);
    expect(ioasid.pendingNotifiers(mm)).toBe(0);
  } else {
    const held = k.translations();
    expect(k.readTable()).toEqual(held);
    expect(pool.inUse).toBe(k.pages);
    expect(k.references).toBe(held.size);
    const heldHosts = new Set<number>(held.values());
    for (const info of ioasid.snapshot().ids) {
      const kvmHolds = heldHosts.has(info.id);
      if (info.state === "ACTIVE") expect(info.refcount).toBe(1 + (kvmHolds ? 1 : 0));
      // KVM only translates what is bound.
      if (kvmHolds) expect(info.spid).not.toBeNull();
    }
  }
  // Teardown: KVM first (its VM goes), then VFIO's set.
  k?.destroy();
  if (set !== null) ioasid.setPut(set);
  expect(pool.inUse).toBe(0);
  expect(ioasid.allocated).toBe(0);
  return { injected, kvmStarted: k !== null };
}

describe("fail-nth over a VM's KVM life", () => {
  it("leaves no page and no reference behind whichever fallible step fails", () => {
    const clean = run(null);
    expect(clean.injected).toEqual([]);
    const points = new Map<string, number>();
    let n = 1;
    for (; n < 100; n++) {
      const r = run(n);
      if (r.injected.length === 0) break;
      for (const p of r.injected) points.set(p, (points.get(p) ?? 0) + 1);
    }
    expect(n).toBeLessThan(100);
    // Two directory pages at start, then the first table page of each of three ranges at BIND.
    expect(points.get("kvm_pasid.table_page")).toBe(5);
    expect(points.get("ioasid.notifier_mm")).toBe(1);
    expect(points.get("ioasid.attach_spid")).toBeGreaterThan(0);
  });

  it("a BIND whose table page cannot be had leaves the guest PASID untranslated: the guest's ENQCMD exits, nothing leaks", () => {
    const kernel = new Kernel();
    const host = kvmTestHost(kernel);
    const mm = {};
    const kvm = startKvm(host, mm);
    const set = host.ioasid.allocSet(mm, 4, "mm");
    const id = host.ioasid.alloc(set, 1, 10);
    kernel.faults.failPoint("kvm_pasid.table_page");
    host.ioasid.attachSpid(set, id, asSpid(33));
    expect(host.ioasid.info(id)?.spid).toBe(33);
    expect(host.ioasid.refcount(id)).toBe(1);
    expect(kvm.enqcmd(0x8000_0000 + 33)).toMatchObject({ ok: false, fault: { kind: "VMEXIT", exitReason: 72 } });
    expect(host.pool.inUse).toBe(2);
    expect(kernel.log.lines.some((l) => l.actor === "KVM" && l.message.includes("BIND"))).toBe(true);
  });
});
