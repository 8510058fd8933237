import { describe, expect, it } from "vitest";
import { Errno, Kernel, TraceRecorder, formatBdf, sourceId } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import type { DmaRequest, IommuPort, TranslateResult } from "@vsva/iommu-hw";
import { MockIommu } from "@vsva/iommu-core/testing";
import { Board } from "./board.js";
import type { Platform, PlatformContext } from "./platform.js";

/**
 * A platform with no silicon: the core's mock driver, and a unit that passes
 * DMA through untranslated. The drivers' own platforms are tested in their
 * packages, on this same board.
 */
function mockPlatform(seen: PlatformContext[] = []) {
  return (ctx: PlatformContext): Platform & { attached: number[] } => {
    seen.push(ctx);
    const attached: number[] = [];
    const port: IommuPort = {
      translate: (req: DmaRequest): TranslateResult => ({ ok: true, pa: req.addr, size: 4096, read: true, write: true, exec: false, privOnly: false }),
      pageRequest: () => false,
    };
    return {
      name: "mock", iommuName: "mock0", port, attached,
      ops: new MockIommu({ faults: ctx.kernel.faults, pages: ctx.pages }),
      mmArch: "x86-64",
      attachEndpoint: (ep) => attached.push(ep.sid),
      cacheViolations: () => [],
      isReportedFault: () => false,
      shutdown: () => undefined,
    };
  };
}

describe("Board", () => {
  it("builds the platform from the board's own kernel, memory, page pool and IOASID core, which the IOMMU core shares", () => {
    const seen: PlatformContext[] = [];
    const b = new Board({ platform: mockPlatform(seen) });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toEqual({ kernel: b.kernel, mem: b.mem, pages: b.pages, ioasid: b.ioasid });
    expect(b.core.ioasid).toBe(b.ioasid);
    expect(b.iommu.name).toBe("mock0");
  });

  it("plugs endpoints in on any bus, device and function, and past 32 devices", () => {
    const b = new Board({ platform: mockPlatform() });
    const auto = Array.from({ length: 64 }, (_, i) => b.addDevice(`dsa${i}`));
    expect(new Set(auto.map((s) => s.ep.sid)).size).toBe(64);
    expect(formatBdf(auto[0]!.ep.sid)).toBe("00:01.0");
    expect(formatBdf(auto[63]!.ep.sid)).toBe("02:00.0"); // bus 0 and 1 are full (00:00.0 is the host bridge)
    const far = b.addDevice("far", { bus: 0x5a, dev: 31, fn: 7, pasidWidth: 10 });
    expect(far.ep.sid).toBe(sourceId(0x5a, 31, 7));
    expect(b.platform.attached).toContain(far.ep.sid);
    expect(b.endpoints.size).toBe(65);
    // The endpoint was enabled as its driver would: its DMA with a PASID reaches memory.
    b.mem.write32(0x1000, 0);
    far.ep.dma.setProgram({ pasid: 5, addr: 0x1000, length: 4, direction: "write", pattern: Uint8Array.of(1, 2, 3, 4) });
    expect(far.ep.dma.trigger()).toBe("ok");
    expect(b.mem.read32(0x1000)).toBe(0x0403_0201);
  });

  it("refuses a taken or impossible BDF without plugging anything in", () => {
    const b = new Board({ platform: mockPlatform() });
    b.endpoint({ dev: 4 });
    expect(errnoOf(() => b.endpoint({ dev: 4 }))).toBe(Errno.EEXIST);
    expect(errnoOf(() => b.endpoint({ bus: 256 }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => b.endpoint({ dev: 32 }))).toBe(Errno.EINVAL);
    expect(errnoOf(() => b.endpoint({ fn: 8 }))).toBe(Errno.EINVAL);
    expect(b.endpoints.size).toBe(1);
  });

  it("puts an interposer between the endpoints and the unit", () => {
    const seen: DmaRequest[] = [];
    const b = new Board({
      platform: mockPlatform(),
      interpose: (unit) => ({ translate: (r) => (seen.push(r), unit.translate(r)), pageRequest: (r) => unit.pageRequest(r) }),
    });
    const ep = b.endpoint();
    ep.dma.setProgram({ addr: 0x2000, length: 4, direction: "write", pattern: Uint8Array.of(9, 9, 9, 9) });
    expect(ep.dma.trigger()).toBe("ok");
    expect(seen.map((r) => r.addr)).toEqual([0x2000]);
  });

  it("runs in a guest's kernel context on the host's clock, its events stamped with that context", () => {
    const host = new Kernel();
    const vm1 = new Kernel({ system: host, context: "vm1" });
    const rec = new TraceRecorder(host.trace, { system: true });
    const guestBoard = new Board({ platform: mockPlatform(), kernel: vm1 });
    guestBoard.addDevice("vdsa0");
    expect(rec.events.length).toBeGreaterThan(0);
    expect(new Set(rec.events.map((e) => e.context))).toEqual(new Set(["vm1"]));
    expect(guestBoard.kernel.scheduler.sharesClockWith(host.scheduler)).toBe(true);
  });
});
