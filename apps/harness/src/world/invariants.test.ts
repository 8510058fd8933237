import { describe, expect, it } from "vitest";
import { DsaOpcode, encodeDescriptor } from "@vsva/dsa";
import { Prot } from "@vsva/iommu-core";
import { Host } from "./host.js";
import { InvariantChecker, checkQuiescent } from "./invariants.js";
import { dmaWrite, plugInSvaDevice } from "../scenarios/sva-common.js";
import { asHostPasid, asIoasid, asSpid, asVmId, type Ioasid } from "@vsva/kernel";
import { createMdev, plugAccelerator } from "../scenarios/vdcm-common.js";
import { VfioIoctl } from "@vsva/vfio-type1";
import { type StepContext, runHostScenario } from "./host-scenario.js";
import { MiB } from "./host.js";
import { guestTable } from "../scenarios/vfio.js";
import { type Vm, allocPasid, bindOp, bindToVfio, groupOf, mapGuestRam, openContainer, startVm, vfioOn } from "../scenarios/vfio-common.js";

function boundHost() {
  const h = new Host();
  const slot = h.addDevice("dsa0", 4);
  h.enableSva(slot);
  const mm = h.newMm("P");
  const buf = mm.mmap(null, 0x2000, Prot.READ | Prot.WRITE, { populate: true });
  const bond = h.core.sva.bindDevice(slot.dev, mm);
  const checker = new InvariantChecker(h);
  return { h, slot, mm, buf, bond, checker };
}

describe("InvariantChecker", () => {
  it("finds DMA that reached a page its address space does not map there", () => {
    const { h, slot, buf, bond, checker } = boundHost();
    checker.bind(bond.pasid, () => 0x1234_5000); // a lie about where the buffer lives
    expect(dmaWrite(h, slot, bond.pasid, buf, Uint8Array.of(1))).toBe("ok");
    expect(checker.check().join("\n")).toMatch(/reached 0x[0-9a-f]+, but the bound address space maps it to 0x12345000/);
  });

  it("finds translations and device-TLB entries for a PASID nobody has bound", () => {
    const { h, slot, buf, bond, checker } = boundHost();
    expect(dmaWrite(h, slot, bond.pasid, buf, Uint8Array.of(1))).toBe("ok");
    const found = checker.check().join("\n");
    expect(found).toMatch(/translated although no address space is bound/);
    expect(found).toMatch(/device TLB still holds .* for PASID \d+, which is not bound/);
  });

  it("finds a cached translation that a missing flush left stale", () => {
    const { h, slot, mm, buf, bond, checker } = boundHost();
    checker.bind(bond.pasid, (va) => {
      const m = mm.lookup(va);
      return m === null ? null : m.pa + (va - m.va);
    });
    expect(dmaWrite(h, slot, bond.pasid, buf, Uint8Array.of(1))).toBe("ok");
    expect(checker.check()).toEqual([]);
    // A driver bug: the PASID table page is rewritten behind the unit's back, with no PASID-cache flush.
    const pasidTables = h.pages.live().filter((p) => p.tag === "vtd.pasid-table");
    for (const p of pasidTables) h.mem.writeBytes(p.pa, new Uint8Array(4096));
    expect(checker.check().join("\n")).toMatch(/IOMMU (pasid cache entry|cache serves a stale translation)/);
  });

  it("reports leaks at quiescence", () => {
    const { h } = boundHost();
    expect(checkQuiescent(h).join("\n")).toMatch(/kernel pages leaked.*IOASID \d+ not reclaimed|IOASID \d+ not reclaimed/s);
  });
});

describe("the KVM table invariant", () => {
  /** A VM with one guest PASID bound through VFIO, then `corrupt` as a last step. */
  function vmRun(corrupt: (ctx: StepContext, vm: Vm, hpasid: Ioasid) => void) {
    return runHostScenario(
      {
        name: "kvm-corrupt",
        summary: "",
        title: "",
        platforms: ["vtd"],
        body(ctx) {
          const vfio = vfioOn(ctx.host);
          const slot = plugInSvaDevice(ctx);
          bindToVfio(ctx, vfio, slot);
          const vm = startVm(ctx, "qemu", 8 * MiB, MiB);
          const c = openContainer(vfio, vm, groupOf(slot.dev), "nesting");
          mapGuestRam(c, vm, 0, MiB);
          const hpasid = asIoasid(allocPasid(c, 1, 0xfffff));
          ctx.step("bind guest PASID 7", () => c.ioctl(VfioIoctl.IOMMU_NESTING_OP, bindOp(hpasid, guestTable(vm).root, 7)));
          ctx.step("corrupt", () => corrupt(ctx, vm, hpasid));
        },
      },
      { seed: 1 },
    );
  }

  it("holds for a VM whose KVM followed its binds", () => {
    expect(vmRun(() => undefined).violations).toEqual([]);
  });

  it("finds a bound guest PASID whose entry was wiped from the table in memory", () => {
    const r = vmRun((ctx) => {
      for (const p of ctx.host.pages.live().filter((pg) => pg.tag === "kvm.pasid-table")) ctx.host.mem.writeBytes(p.pa, new Uint8Array(4096));
    });
    expect(r.violations.join("\n")).toMatch(/after "corrupt": VM 1: guest PASID 7 is bound to host PASID \d+, but KVM's translation table has no entry/);
  });

  it("finds an entry for a guest PASID nobody bound, and a BIND KVM took without the IOMMU attaching it", () => {
    const r = vmRun((ctx, vm, hpasid) => {
      const set = ctx.host.ioasid.findSetByToken(vm.user.mm);
      if (set === null) throw new Error("the VM has a set");
      const other = asIoasid(ctx.host.ioasid.alloc(set, 1, 0xfffff));
      // A BIND no publisher sent: KVM trusts the data (ioasid.rst rule 2), so its table now disagrees with the binds.
      vm.kvm.notifier.call("BIND", { id: other, spid: asSpid(9), set, private: null, refcount: 1 });
      expect(ctx.host.ioasid.refcount(hpasid)).toBe(3);
    });
    expect(r.violations.join("\n")).toMatch(/VM 1: KVM's translation table still sends guest PASID 9 to host PASID \d+, which is not bound/);
  });
});

describe("the VDCM invariant", () => {
  it("finds a hardware WQ lent to an mdev holding a host PASID the VDCM holds no reference for (a lazy clear)", () => {
    const run = (corrupt: boolean) =>
      runHostScenario(
        {
          name: "vdcm-corrupt",
          summary: "",
          title: "",
          platforms: ["vtd"],
          body(ctx) {
            const accel = plugAccelerator(ctx, vfioOn(ctx.host));
            createMdev(ctx, accel, "mdev0", 0, asVmId(1), { vmm: "qemu" });
            // The host driver's handle, used behind the VDCM's back: the WQ now holds a PASID nobody holds a reference on.
            ctx.step("corrupt", () => {
              if (corrupt) accel.idxd.wq(0).setPasid(asHostPasid(77));
            });
          },
        },
        { seed: 1 },
      ).violations.join("\n");
    expect(run(false)).toBe("");
    expect(run(true)).toMatch(/after "corrupt": mdev0: hardware WQ 0 holds host PASID 77, but the VDCM holds nothing for it/);
  });
});

describe("the in-flight descriptor invariant", () => {
  it("finds a descriptor still queued on an accelerator whose PASID is back in the pool", () => {
    const run = (corrupt: boolean) =>
      runHostScenario(
        {
          name: "inflight-corrupt",
          summary: "",
          title: "",
          platforms: ["vtd"],
          body(ctx) {
            const idxd = ctx.step("plug in a stepwise dsa0 with a shared WQ", () => ctx.host.addAccelerator("dsa0", 5, { wqs: [{ mode: "shared", size: 4, type: "user" }] }, { mode: "stepwise" }));
            ctx.defer("idxd is removed", () => idxd.remove());
            // A portal write behind every driver's back, with a PASID nobody holds: the device queues it and has not run it yet.
            ctx.step("corrupt", () => {
              if (corrupt) idxd.hw.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.NOOP, pasid: 77 }));
            });
          },
        },
        { seed: 1 },
      ).violations.join("\n");
    expect(run(false)).toBe("");
    expect(run(true)).toMatch(/after "corrupt": dsa0: a descriptor with PASID 77 is still queued or running, but PASID 77 was reclaimed/);
  });
});
