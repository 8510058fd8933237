import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { asIoasid, asVmId, isKernelError } from "@vsva/kernel";
import { Prot } from "@vsva/iommu-core";
import { plugIdxd } from "@vsva/idxd";
import { Vdcm } from "@vsva/vdcm";
import { MdevGuest } from "@vsva/vdcm/testing";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { MdevRegions } from "./mdev-regions.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const RAM = 1 << 20;
const VA = 0x7000_0000_0000;

type Access =
  | { readonly kind: "write"; readonly offset: number; readonly value: number }
  | { readonly kind: "read"; readonly offset: number }
  | { readonly kind: "portal"; readonly bytes: readonly number[] };

const access: fc.Arbitrary<Access> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant("write" as const), offset: fc.integer({ min: 0, max: 0x7ff }).map((o) => o * 4), value: fc.integer({ min: 0, max: 0xffff_ffff }) }), weight: 4 },
  { arbitrary: fc.record({ kind: fc.constant("read" as const), offset: fc.integer({ min: 0, max: 0x7ff }).map((o) => o * 4) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant("portal" as const), bytes: fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 64, maxLength: 64 }) }), weight: 1 },
);

/** Sweeps and fuzz boot a guest per run: well under 2 s alone, far more on a loaded machine. */
const FUZZ_TIMEOUT = 30_000;

describe("fuzz: a guest that writes anything to its mdev's BAR0 and portal through the VMM", () => {
  it("never throws anything but a KernelError, the hardware WQ only ever holds a PASID of the VM's own set, and the kill leaves the host as it was", () => {
    fc.assert(
      fc.property(fc.array(access, { minLength: 1, maxLength: 30 }), fc.constantFrom("identity" as const, "spid" as const), (accesses, guestPasids) => {
        const h = vmTestHost();
        const idxd = plugIdxd(h.board, { dev: 6, name: "dsa9", config: { wqs: [{ mode: "dedicated", size: 8, type: "mdev" }] } });
        const vdcm = new Vdcm({ kernel: h.board.kernel, ioasid: h.board.ioasid, core: h.board.core, vfio: h.vfio, parent: idxd.iommuDev });
        const mm = { vmm: "qemu-vm1" };
        const mdev = vdcm.createMdev("mdev0", idxd.wq(0), { vm: asVmId(1), mm });
        const group = mdev.vfioDevice?.group?.id ?? -1;
        const pages = h.board.pages.stats.livePages;
        const allocated = h.board.ioasid.allocated;
        const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device, guestPasids, mm, mdevs: [{ group, name: "mdev0", guestBdf: { bus: 0, dev: 5, fn: 0 } }] });
        const g = new Guest(vm);
        const dev = g.mdevs[0];
        const file = vm.mdevFiles[0];
        if (dev === undefined || file === undefined) throw new Error("the VM has no mdev");
        const p = g.newProcess("P");
        p.mmap(VA, PAGE, Prot.READ | Prot.WRITE, { populate: true });
        const bond = g.core.sva.bindDevice(dev, p);
        expect(new MdevGuest(file).programWq(bond.pasid)).toBe(0);
        const set = h.board.ioasid.findSetByToken(mm);
        const regions = new MdevRegions(file);
        for (const a of accesses) {
          try {
            if (a.kind === "write") regions.mmioWrite32(a.offset, a.value);
            else if (a.kind === "read") regions.mmioRead32(a.offset);
            else regions.movdir64b(0, Uint8Array.from(a.bytes));
          } catch (e) {
            if (!isKernelError(e)) throw e;
          }
          h.board.settle();
          const held = idxd.wq(0).pasid;
          if (held !== null) expect(h.board.ioasid.info(asIoasid(held))?.set).toBe(set);
        }
        vm.kill();
        h.board.settle();
        // Nothing of the dead VM's set is left on the hardware WQ.
        const left = idxd.wq(0).pasid;
        if (left !== null) expect(h.board.ioasid.info(asIoasid(left))?.set).not.toBe(set);
        vdcm.removeMdev(mdev);
        h.board.settle();
        expect(h.board.ioasid.allocated).toBe(allocated);
        expect(h.board.pages.stats.livePages).toBe(pages);
        expect(h.board.platform.cacheViolations()).toEqual([]);
      }),
      { numRuns: 30, seed: 0x3d5a },
    );
  }, FUZZ_TIMEOUT);
});
