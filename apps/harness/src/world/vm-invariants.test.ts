import { describe, expect, it } from "vitest";
import { asIoasid } from "@vsva/kernel";
import { type GuestProcess, type GuestVm, guestProcess, startGuestVm } from "../scenarios/guest-common.js";
import { PATTERN } from "../scenarios/sva-common.js";
import { PAGE, vfioOn } from "../scenarios/vfio-common.js";
import type { Host } from "./host.js";
import { type StepContext, runHostScenario } from "./host-scenario.js";

const VA = 0x10_0000_0000;

interface Pair {
  readonly a: GuestVm & { readonly p: GuestProcess };
  readonly b: GuestVm & { readonly p: GuestProcess };
}

/** Two VMs, each with a guest process bound to its own function (2 pages, both touched), then `corrupt` as a last step. */
function twoVmRun(corrupt: (ctx: StepContext, vms: Pair) => void): string {
  return runHostScenario(
    {
      name: "vm-corrupt",
      summary: "",
      title: "",
      platforms: ["vtd"],
      body(ctx) {
        const vfio = vfioOn(ctx.host);
        const a = startGuestVm(ctx, vfio, { id: 1, dev: 4, device: "dsa0" });
        const b = startGuestVm(ctx, vfio, { id: 2, dev: 5, device: "dsa1" });
        const pa = ctx.step("PA binds dsa0 in VM 1", () => guestProcess(ctx, a, "PA", VA, 2));
        const pb = ctx.step("PB binds dsa1 in VM 2", () => guestProcess(ctx, b, "PB", VA, 2));
        ctx.step("corrupt", () => corrupt(ctx, { a: { ...a, p: pa }, b: { ...b, p: pb } }));
      },
    },
    { seed: 1 },
  ).violations.join("\n");
}

/** The host page behind a guest process's `va` (through its table and its VM's RAM). */
function hostPageOf(g: GuestVm & { readonly p: GuestProcess }, va: number): number {
  const m = g.p.mm.lookup(va);
  const hpa = m === null ? null : g.vm.hpa(m.pa + (va - m.va));
  if (hpa === null) throw new Error(`0x${va.toString(16)} is mapped`);
  return hpa - (hpa % PAGE);
}

/**
 * A host bug, done by hand: the second-level (VFIO's MAP_DMA) leaf entry that
 * sends a guest page to host page `from` is rewritten to send it to `to`,
 * in memory (no flush is needed for an entry the unit never cached).
 */
function redirectSecondLevel(host: Host, from: number, to: number): void {
  let hits = 0;
  const page = new Uint8Array(PAGE);
  for (const t of host.pages.live().filter((p) => p.tag === "vtd.sl-table")) {
    host.mem.readBytes(t.pa, page);
    const dv = new DataView(page.buffer);
    for (let off = 0; off < PAGE; off += 8) {
      const lo = dv.getUint32(off, true);
      const hi = dv.getUint32(off + 4, true);
      const addr = (lo - (lo % PAGE)) + (hi & 0xf_ffff) * 2 ** 32;
      if ((lo & 3) === 0 || addr !== from) continue;
      host.mem.write32(t.pa + off, to + (lo % PAGE));
      hits++;
    }
  }
  if (hits !== 1) throw new Error(`expected one second-level entry for 0x${from.toString(16)}, found ${hits}`);
}

describe("the per-VM invariants", () => {
  it("hold for two VMs that each DMA into their own process's pages", () => {
    const v = twoVmRun((_ctx, { a, b }) => {
      expect(a.guest.dma({ pasid: a.p.bond.pasid, addr: VA + 0x10, length: 4, direction: "write", pattern: PATTERN })).toBe("ok");
      expect(b.guest.dma({ pasid: b.p.bond.pasid, addr: VA + 0x10, length: 4, direction: "write", pattern: PATTERN })).toBe("ok");
    });
    expect(v).toBe("");
  });

  it("isolation: finds a VM's DMA that a broken second level sent outside its RAM", () => {
    const v = twoVmRun((ctx, { a }) => {
      const stray = ctx.host.pages.allocPage("test: a page no VM has");
      ctx.defer("free the stray page", () => ctx.host.pages.freePages(stray));
      redirectSecondLevel(ctx.host, hostPageOf(a, VA + PAGE), stray);
      a.guest.dma({ pasid: a.p.bond.pasid, addr: VA + PAGE + 8, length: 4, direction: "write", pattern: PATTERN });
    });
    expect(v).toMatch(/after "corrupt": isolation: DMA write at 0x[0-9a-f]+ with PASID \d+ \(a PASID of vm1\) reached host page 0x[0-9a-f]+, outside vm1's RAM/);
  });

  it("no DMA after death: finds a write into a page the dead VM had, before anyone was given it again", () => {
    const v = twoVmRun((ctx, { a, b }) => {
      const was = hostPageOf(a, VA);
      a.vm.kill();
      redirectSecondLevel(ctx.host, hostPageOf(b, VA + PAGE), was);
      b.guest.dma({ pasid: b.p.bond.pasid, addr: VA + PAGE + 8, length: 4, direction: "write", pattern: PATTERN });
    });
    expect(v).toMatch(/DMA after death: DMA write at 0x[0-9a-f]+ with PASID \d+ wrote host page 0x[0-9a-f]+, which vm1 had until it died/);
  });

  it("faults only to their owner: finds VM 1's page request queued in VM 2's page request queue", () => {
    const v = twoVmRun((_ctx, { a, b }) => {
      // A VMM bug: a fault record of VM 1's PASID forwarded into VM 2's vIOMMU.
      b.vm.viommu.unit.pageRequest({ sid: b.vm.guestSid, pasid: a.p.bond.pasid, priv: false, exec: false, addr: VA, read: true, write: true, lastInGroup: true, groupIndex: 3 });
    });
    expect(v).toMatch(/fault delivered to the wrong owner: a page request of PASID \d+, which is vm1's was queued in vm2's page request queue/);
  });

  it("released at death: finds a host reference on the dead VM's PASID that outlived it", () => {
    const v = twoVmRun((ctx, { a }) => {
      ctx.host.ioasid.get(null, asIoasid(a.p.bond.pasid)); // a host user's reference nobody drops
      a.vm.kill();
    });
    expect(v).toMatch(/after "corrupt": after vm1 died, IOASID \d+ of its set is still \w+ with 1 references/);
  });
});
