import { asSpid, asVmId, Errno, type Ioasid } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { DescFlag, DsaCmdErr, DsaCommand, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "@vsva/dsa";
import { describe, expect, it } from "vitest";
import { Idxd } from "@vsva/idxd";
import { allocPasid, freePasid, type HostDriverContext, openMdev, type VdcmRigOptions, vdcmRig, vmmUser } from "./testing/index.js";

const G = 101;

function at<T>(a: readonly T[], i: number): T {
  const x = a[i];
  if (x === undefined) throw new Error(`no element ${i}`);
  return x;
}

/** idxd's probe of the accelerator with every WQ of type "mdev": its WQ handles are what the VDCM borrows (the real host driver). */
function idxdDriver(ctx: HostDriverContext): readonly Idxd["wqs"][number][] {
  const config = { wqs: ctx.wqs.map((w) => ({ mode: w.mode, size: w.size, type: "mdev" as const })) };
  return Idxd.probe({ kernel: ctx.kernel, core: ctx.core, iommuDev: ctx.parent, hw: ctx.dsa, config }).wqs;
}

const HOST_DRIVERS: readonly (readonly [string, VdcmRigOptions])[] = [
  ["a host WQ driven through the registers", {}],
  ["idxd's WQ handles", { hostDriver: idxdDriver }],
];

for (const [label, opts] of HOST_DRIVERS) {
  describe(`over ${label}`, () => {
    /** A host with one VM whose VMM opened an mdev on the rig's first (dedicated) WQ, and a host PASID bound to guest PASID 101. */
    function setUp(wq = 0) {
      const r = vdcmRig(opts);
      const user = vmmUser("vm1");
      const hostWq = at(r.wqs, wq);
      const mdev = r.vdcm.createMdev("mdev0", hostWq, { vm: asVmId(1), mm: user.mm });
      const vm = openMdev(r.vfio, user, mdev);
      const hpasid = allocPasid(vm.container) as Ioasid;
      const set = r.ioasid.findSetByToken(user.mm);
      if (set === null) throw new Error("no VM set");
      // What the IOMMU driver's bind_gpasid does for the guest PASID: the SPID (BIND reaches the VM's subscribers).
      r.ioasid.attachSpid(set, hpasid, asSpid(G));
      return { ...r, user, hostWq, mdev, vm, hpasid, set };
    }

    describe("composing an mdev from a host WQ", () => {
      it("registers an IOMMU-backed mdev: a sub-device of the accelerator, aux-attached once its group joins a container", () => {
        const r = vdcmRig(opts);
        const user = vmmUser("vm1");
        const mdev = r.vdcm.createMdev("mdev0", at(r.wqs, 0), { vm: asVmId(1), mm: user.mm });
        expect(mdev.vfioDevice?.iommuBacked).toBe(true);
        expect(mdev.sub.parent).toBe(r.parent);
        expect(r.parent.hasFeature("aux")).toBe(true);
        expect(mdev.sub.domain).toBeNull();
        openMdev(r.vfio, user, mdev);
        expect(mdev.sub.domain).not.toBeNull();
        expect(errnoOf(() => r.vdcm.createMdev("mdev0", at(r.wqs, 1), { vm: asVmId(1), mm: user.mm }))).toBe(Errno.EEXIST);
        expect(errnoOf(() => r.vdcm.createMdev("mdev1", at(r.wqs, 0), { vm: asVmId(1), mm: user.mm }))).toBe(Errno.EBUSY);
        expect(errnoOf(() => r.vdcm.createMdev("mdev1", at(r.wqs, 1), { vm: asVmId(2), mm: user.mm }))).toBe(Errno.EINVAL);
      });

      it("shows the guest a DSA function with the PASID capability and without PRI, and the virtual WQ of the host WQ's size and mode", () => {
        const { vm, hostWq } = setUp();
        const g = vm.guest;
        expect(g.configRead(0, 4)).toBe(0x0b25_8086);
        expect(g.findExtCap(0x1b)).not.toBe(0);
        expect(g.findExtCap(0x13)).toBe(0);
        const c = g.wqcfg();
        expect([c[0], (c[2] ?? 0) & 1]).toEqual([hostWq.size, 1]);
      });
    });

    describe("guest PASID programming on a dedicated WQ", () => {
      it("translates the guest PASID by SPID, programs the host PASID into the hardware WQ, takes a reference; the guest reads back its own PASID", () => {
        const { vm, hostWq, hpasid, ioasid, mdev } = setUp();
        expect(ioasid.refcount(hpasid)).toBe(1);
        expect(vm.guest.programWq(G)).toBe(DsaCmdErr.SUCCESS);
        expect(hostWq.pasid).toBe(hpasid);
        expect(ioasid.refcount(hpasid)).toBe(2);
        expect(vm.guest.readbackPasid()).toBe(G);
        expect(vm.guest.wqEnabled()).toBe(true);
        expect(mdev.programmed).toMatchObject({ hpasid, gpasid: G });
      });

      it("the guest's descriptors run with the host PASID: a memmove through the mdev's portal lands where the host PASID maps", () => {
        const { vm, hpasid, fake, mem } = setUp();
        vm.guest.programWq(G);
        for (const [va, pa] of [[0x10000, 0x100000], [0x20000, 0x200000], [0x30000, 0x300000]] as const) fake.map(hpasid, va, { pa });
        mem.writeBytes(0x100000, new TextEncoder().encode("through the mdev"));
        // The guest writes its own PASID in the descriptor; a dedicated WQ ignores it and stamps WQCFG's.
        const desc = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, pasid: G, completionAddr: 0x30000, src: 0x10000, dst: 0x20000, size: 16 });
        expect(vm.guest.submit(desc)).toBe(64);
        const out = new Uint8Array(16);
        mem.readBytes(0x200000, out);
        expect(new TextDecoder().decode(out)).toBe("through the mdev");
        const rec = new Uint8Array(32);
        mem.readBytes(0x300000, rec);
        expect(decodeCompletion(rec).status).toBe(DsaStatus.SUCCESS);
      });

      it("DISABLE_WQ quiesces and clears the hardware WQ, then drops the reference", () => {
        const { vm, hostWq, hpasid, ioasid, mdev } = setUp();
        vm.guest.programWq(G);
        expect(vm.guest.disableWq()).toBe(DsaCmdErr.SUCCESS);
        expect(hostWq.pasid).toBeNull();
        expect(ioasid.refcount(hpasid)).toBe(1);
        expect(mdev.programmed).toBeNull();
        // The guest may program again after disabling.
        expect(vm.guest.programWq(G)).toBe(DsaCmdErr.SUCCESS);
        expect(hostWq.pasid).toBe(hpasid);
      });

      it("refuses a guest PASID that does not resolve in the VM's set with CMDSTS 0x26; nothing changes", () => {
        const { vm, hostWq, ioasid, mdev } = setUp();
        const before = ioasid.snapshot();
        expect(vm.guest.programWq(202)).toBe(DsaCmdErr.PASID_EN);
        expect(hostWq.pasid).toBeNull();
        expect(vm.guest.wqEnabled()).toBe(false);
        expect(ioasid.snapshot()).toEqual(before);
        expect(mdev.programmed).toBeNull();
      });

      it("refuses another VM's guest PASID: it resolves only in that VM's set", () => {
        const r = setUp();
        const other = vmmUser("vm2", 0x4_0000_0000);
        const m2 = r.vdcm.createMdev("mdev1", at(r.wqs, 1), { vm: asVmId(2), mm: other.mm });
        const vm2 = openMdev(r.vfio, other, m2, asVmId(2));
        const before = r.ioasid.snapshot();
        // VM 2 has no guest PASID 101: VM 1's is not VM 2's to use.
        expect(vm2.guest.programWq(G)).toBe(DsaCmdErr.PASID_EN);
        expect((at(r.wqs, 1)).pasid).toBeNull();
        expect(r.ioasid.snapshot()).toEqual(before);
      });

      it("refuses PASID_EN when the guest has not enabled the PASID capability", () => {
        const { vm, hostWq } = setUp();
        vm.guest.configWrite(4, 2, 0x6); // bus mastering on, PASID capability left off
        vm.guest.writePasid(G, true, false);
        vm.guest.command(DsaCommand.ENABLE_DEVICE);
        expect(vm.guest.command(DsaCommand.ENABLE_WQ, 0)).toBe(DsaCmdErr.PASID_EN);
        expect(hostWq.pasid).toBeNull();
      });

      it("without PASID_EN the WQ gets the mdev's default PASID, its aux domain's, privileged", () => {
        const { vm, hostWq, core, mdev, ioasid } = setUp();
        const before = ioasid.snapshot();
        expect(vm.guest.programWq(null)).toBe(DsaCmdErr.SUCCESS);
        const domain = mdev.sub.domain;
        expect(domain).not.toBeNull();
        expect(hostWq.pasid).toBe(core.auxGetPasid(domain, mdev.sub));
        expect(mdev.programmed).toMatchObject({ gpasid: null, priv: true, set: null });
        expect(ioasid.snapshot()).toEqual(before);
        vm.guest.disableWq();
        expect(hostWq.pasid).toBeNull();
      });

      it("the guest cannot rewrite the PASID of an enabled WQ", () => {
        const { vm, hostWq, hpasid } = setUp();
        vm.guest.programWq(G);
        vm.guest.writePasid(7, true, false);
        expect(vm.guest.readbackPasid()).toBe(G);
        expect(hostWq.pasid).toBe(hpasid);
      });
    });

    describe("FREE, release and removal: the hardware WQ is cleared before the reference goes", () => {
      it("FREE before clearing: the clearing is queued, the WQ keeps the PASID until the work runs, then clears and puts; the ID is reclaimed", () => {
        const { vm, hostWq, hpasid, ioasid, kernel, mdev, set } = setUp();
        vm.guest.programWq(G);
        ioasid.detachSpid(set, hpasid);
        freePasid(vm.container, hpasid);
        expect(ioasid.state(hpasid)).toBe("FREE_PENDING");
        expect(hostWq.pasid).toBe(hpasid);
        expect(mdev.clearPending).toBe(true);
        expect(vm.guest.wqEnabled()).toBe(false);
        kernel.scheduler.drain();
        expect(hostWq.pasid).toBeNull();
        expect(ioasid.state(hpasid)).toBe("IDLE");
      });

      it("the guest disabling after FREE was notified clears at once; the queued work finds nothing left", () => {
        const { vm, hostWq, hpasid, ioasid, kernel, mdev } = setUp();
        vm.guest.programWq(G);
        freePasid(vm.container, hpasid);
        vm.guest.command(DsaCommand.DISABLE_DEVICE);
        expect(hostWq.pasid).toBeNull();
        expect(mdev.clearPending).toBe(false);
        expect(ioasid.state(hpasid)).toBe("IDLE");
        kernel.scheduler.drain();
        expect(ioasid.state(hpasid)).toBe("IDLE");
      });

      it("closing the device file (the VMM's release) clears the WQ and drops the reference at once", () => {
        const { vm, hostWq, hpasid, ioasid, mdev } = setUp();
        vm.guest.programWq(G);
        vm.device.close();
        expect(hostWq.pasid).toBeNull();
        expect(ioasid.refcount(hpasid)).toBe(1);
        expect(mdev.programmed).toBeNull();
      });

      it("removal waits for VFIO to let go (EBUSY, nothing changed), then clears, releases and unregisters", () => {
        const { vm, hostWq, hpasid, ioasid, mdev, vdcm, user, core } = setUp();
        vm.guest.programWq(G);
        expect(errnoOf(() => vdcm.removeMdev(mdev))).toBe(Errno.EBUSY);
        expect(hostWq.pasid).toBe(hpasid);
        vm.device.close();
        vm.group.close();
        vm.container.close();
        vdcm.removeMdev(mdev);
        expect(hostWq.pasid).toBeNull();
        expect(core.devices.has(mdev.sub)).toBe(false);
        expect(vdcm.vms).toBe(0);
        expect(ioasid.allocated).toBe(0);
        expect(errnoOf(() => vdcm.removeMdev(mdev))).toBe(Errno.ENOENT);
        // The WQ is free to lend again.
        expect(vdcm.createMdev("again", hostWq, { vm: asVmId(1), mm: user.mm }).name).toBe("again");
      });

      it("destroying the VDCM is EBUSY while an mdev is in use (nothing removed); then it removes every mdev, turns aux domains off and creates no more (ENODEV)", () => {
        const r = setUp();
        const second = r.vdcm.createMdev("mdev1", at(r.wqs, 1), { vm: asVmId(2), mm: vmmUser("vm2").mm });
        r.vm.guest.programWq(G);
        expect(errnoOf(() => r.vdcm.destroy())).toBe(Errno.EBUSY);
        expect(r.vdcm.mdevs.map((m) => m.name)).toEqual(["mdev0", "mdev1"]);
        expect(r.hostWq.pasid).toBe(r.hpasid);
        r.vm.device.close();
        r.vm.group.close();
        r.vm.container.close();
        r.vdcm.destroy();
        expect(r.vdcm.mdevs).toEqual([]);
        expect(r.vdcm.vms).toBe(0);
        expect(r.core.devices.has(second.sub)).toBe(false);
        expect(r.parent.hasFeature("aux")).toBe(false);
        expect(r.hostWq.pasid).toBeNull();
        expect(r.ioasid.allocated).toBe(0);
        expect(errnoOf(() => r.vdcm.createMdev("late", r.hostWq, { vm: asVmId(1), mm: r.user.mm }))).toBe(Errno.ENODEV);
        r.vdcm.destroy();
      });
    });
  });
}

describe("Function Level Reset of the mdev", () => {
  it("clears the hardware WQ, drops the reference and resets the virtual registers", () => {
    const r = vdcmRig();
    const user = vmmUser("vm1");
    const mdev = r.vdcm.createMdev("mdev0", r.wq(0), { vm: asVmId(1), mm: user.mm });
    const vm = openMdev(r.vfio, user, mdev);
    const hpasid = allocPasid(vm.container) as Ioasid;
    const set = r.ioasid.findSetByToken(user.mm);
    if (set === null) throw new Error("no set");
    r.ioasid.attachSpid(set, hpasid, asSpid(G));
    expect(vm.guest.programWq(G)).toBe(0);
    // PCIe Device Control: Initiate Function Level Reset (bit 15).
    const devCtl = mdev.config.devCtl.offset;
    vm.guest.configWrite(devCtl, 2, vm.guest.configRead(devCtl, 2) | 0x8000);
    expect(r.wq(0).pasid).toBeNull();
    expect(r.ioasid.refcount(hpasid)).toBe(1);
    expect(vm.guest.wqEnabled()).toBe(false);
    expect(vm.guest.readbackPasid()).toBeNull();
  });
});

describe("several mdevs of one VM", () => {
  it("two mdevs programmed with one guest PASID hold a reference each; FREE queues both clearings and the ID is reclaimed after both", () => {
    const r = vdcmRig();
    const user = vmmUser("vm1");
    const m0 = r.vdcm.createMdev("m0", r.wq(0), { vm: asVmId(1), mm: user.mm });
    const m1 = r.vdcm.createMdev("m1", r.wq(1), { vm: asVmId(1), mm: user.mm });
    expect(r.vdcm.vms).toBe(1);
    const vm0 = openMdev(r.vfio, user, m0);
    const vm1 = openMdev(r.vfio, user, m1);
    const hpasid = allocPasid(vm0.container) as Ioasid;
    const set = r.ioasid.findSetByToken(user.mm);
    if (set === null) throw new Error("no set");
    r.ioasid.attachSpid(set, hpasid, asSpid(G));
    expect([vm0.guest.programWq(G), vm1.guest.programWq(G)]).toEqual([0, 0]);
    expect([r.wq(0).pasid, r.wq(1).pasid]).toEqual([hpasid, hpasid]);
    expect(r.ioasid.refcount(hpasid)).toBe(3);
    freePasid(vm0.container, hpasid);
    expect([m0.clearPending, m1.clearPending]).toEqual([true, true]);
    r.kernel.scheduler.drain();
    expect([r.wq(0).pasid, r.wq(1).pasid]).toEqual([null, null]);
    expect(r.ioasid.state(hpasid)).toBe("IDLE");
  });

  it("a VM's further mdev joins its registered notifier even once its set owns IDs; a first mdev then is EBUSY (its events would be lost), nothing changed", () => {
    const r = vdcmRig();
    const u1 = vmmUser("vm1");
    const m0 = r.vdcm.createMdev("m0", r.wq(0), { vm: asVmId(1), mm: u1.mm });
    allocPasid(openMdev(r.vfio, u1, m0).container);
    expect(r.vdcm.createMdev("m1", r.wq(1), { vm: asVmId(1), mm: u1.mm }).name).toBe("m1");
    // VM 2's set already owns an ID when its first mdev is asked for.
    const u2 = vmmUser("vm2", 0x4_0000_0000);
    const set2 = r.ioasid.allocSet(u2.mm, 8, "mm");
    r.ioasid.alloc(set2, 1, 100);
    const devices = r.core.devices.size;
    expect(errnoOf(() => r.vdcm.createMdev("late", r.wq(2), { vm: asVmId(2), mm: u2.mm }))).toBe(Errno.EBUSY);
    expect([r.vdcm.mdevs.length, r.vdcm.vms, r.core.devices.size, r.ioasid.pendingNotifiers(u2.mm)]).toEqual([2, 1, devices, 0]);
    expect(r.vdcm.createMdev("late", r.wq(2), { vm: asVmId(3), mm: vmmUser("vm3").mm }).name).toBe("late");
  });
});

describe("bad arguments from the host side", () => {
  it("are KernelErrors, never a TypeError, and change nothing", () => {
    const r = vdcmRig();
    const mm = vmmUser("vm1").mm;
    const bad: unknown[] = [null, undefined, 3, {}];
    for (const b of bad) {
      expect(errnoOf(() => r.vdcm.createMdev("m", b as never, { vm: asVmId(1), mm }))).toBe(Errno.EINVAL);
      expect(errnoOf(() => r.vdcm.createMdev("m", r.wq(0), b as never))).toBe(Errno.EINVAL);
      expect(errnoOf(() => r.vdcm.removeMdev(b as never))).toBe(Errno.ENOENT);
    }
    expect(errnoOf(() => r.vdcm.createMdev("m", r.wq(0), { vm: asVmId(1), mm: null as never }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => r.vdcm.createMdev("", r.wq(0), { vm: asVmId(1), mm }))).toBe(Errno.EINVAL);
    expect([r.vdcm.mdevs.length, r.vdcm.vms, r.core.devices.size]).toEqual([0, 0, 1]);
  });
});
