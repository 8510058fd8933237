import { describe, expect, it } from "vitest";
import { Errno, type TraceEvent, TraceRecorder, asHostPasid } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import {
  CONTEXT_ENTRY_BYTES, ContextEntry, type Layout, GcmdReg, GstsReg, InvType, PASID_DIR_ENTRY_BYTES, PASID_ENTRY_BYTES, PasidCacheDesc, PasidDirEntry,
  PasidEntry, Pgtt, ROOT_ENTRY_BYTES, RegOffset, RootEntry, RtaddrReg, type SparseMemory, TableWriter, type VtdTrap, WaitDesc,
  pasidDirIndex, pasidTableIndex, readReg, x86Format,
} from "@vsva/iommu-hw";
import { PATTERN, type TestHost, dmaWrite, endpoint, probe, testHost } from "./test-host.js";

/** A process page table mapping one page (what iommu-core's Mm would build). */
function processTables(h: TestHost, va: number, pa: number): TableWriter {
  let next = 0x60_0000;
  const w = new TableWriter(h.mem, x86Format({ levels: 4 }), { alloc: () => (next += 0x1000) });
  w.map(va, pa, 0x1000, { write: true, user: true });
  return w;
}

/**
 * The PASID-table entry of `pasid` for `sid`, found as a VMM finds it: from
 * RTADDR through the root, context and PASID-directory entries in memory
 * (VT-d §9.1, §9.4, §9.5).
 */
function pasidEntryOf(h: TestHost, sid: number, pasid: number): Uint32Array {
  const rt = RtaddrReg.getAddr(readReg(h.unit, RegOffset.RTADDR, RtaddrReg), "RTA");
  const read = (layout: Layout<string>, pa: number): Uint32Array => {
    const v = layout.alloc();
    if (!layout.read(h.mem, pa, v)) throw new Error(`no memory at 0x${pa.toString(16)}`);
    return v;
  };
  const root = read(RootEntry, rt + ROOT_ENTRY_BYTES * (sid >> 8));
  const devfn = sid & 0xff;
  const ctxTable = devfn < 0x80 ? RootEntry.getAddr(root, "LCTP") : RootEntry.getAddr(root, "UCTP");
  const ctx = read(ContextEntry, ctxTable + CONTEXT_ENTRY_BYTES * (devfn & 0x7f));
  const dir = read(PasidDirEntry, ContextEntry.getAddr(ctx, "PASIDDIRPTR") + PASID_DIR_ENTRY_BYTES * pasidDirIndex(pasid));
  return read(PasidEntry, PasidDirEntry.getAddr(dir, "SMPTBLPTR") + PASID_ENTRY_BYTES * pasidTableIndex(pasid));
}

/** Every populated 4 KiB page's bytes, by address (the state a run leaves in memory). */
function memoryImage(mem: SparseMemory, bytes: number): Map<number, string> {
  const out = new Map<number, string>();
  const page = new Uint8Array(4096);
  for (let pa = 0; pa < bytes; pa += 4096) {
    if (!mem.readBytes(pa, page) || page.every((b) => b === 0)) continue;
    out.set(pa, Buffer.from(page).toString("base64"));
  }
  return out;
}

/** A trace event without its timestamp (the virtual clock is the same in both runs anyway). */
const shape = (e: TraceEvent): unknown => ({ seq: e.seq, kind: e.kind, actor: e.actor, ids: e.ids, payload: e.payload });

describe("trap points under the VT-d driver (the unit as a guest's virtual IOMMU)", () => {
  it("a trap observes the guest driver's PASID-cache invalidation, reads the PASID entry it names, and completes the wait only after the host has acted", () => {
    const PASID = 9;
    const log: string[] = [];
    let observed: { did: number; pgtt: number; flptr: number } | null = null;
    let deferred: { seq: number; status: number; data: number } | null = null;
    let h: TestHost | null = null;
    const trap: VtdTrap = (e) => {
      if (e.kind !== "descriptor" || h === null) return "pass";
      if (e.type === InvType.PASID_CACHE && PasidCacheDesc.get(e.dwords, "PASID") === PASID && observed === null) {
        expect((e.bytes[0] ?? 0) & 0xf).toBe(InvType.PASID_CACHE);
        const entry = pasidEntryOf(h, ep.sid, PASID);
        observed = { did: PasidCacheDesc.get(e.dwords, "DID"), pgtt: PasidEntry.get(entry, "PGTT"), flptr: PasidEntry.getAddr(entry, "FLPTPTR") };
        log.push(`observe PASID-cache invalidation of PASID ${PASID} at slot ${e.slot}`);
        return "pass";
      }
      if (e.type === InvType.WAIT && observed !== null && deferred === null && !log.includes("host bound")) {
        deferred = { seq: e.seq, status: WaitDesc.getAddr(e.dwords, "STADDR"), data: WaitDesc.get(e.dwords, "STDATA") };
        log.push("defer wait");
        return "defer";
      }
      return "pass";
    };
    // The driver spins on the wait's status word; the VMM acts in between, as the host would on another CPU.
    const poll = (): void => {
      const d = deferred;
      if (d === null || h === null) return;
      log.push(h.mem.read32(d.status) === d.data ? "status already written" : "status not written while deferred");
      log.push("host bound");
      h.unit.completeDeferred(d.seq, "pass");
      log.push(h.mem.read32(d.status) === d.data ? "status written on completion" : "status still missing");
      deferred = null;
    };
    h = testHost({ cachingMode: true, trap }, true, { poll });
    const ep = endpoint(h);
    const dev = probe(h, ep);
    const w = processTables(h, 0x4000_0000, 0x30_0000);
    h.drv.svaBind(dev, { pgd: w.root, levels: 4, pasid: asHostPasid(PASID), name: "guest-proc" });

    expect(log).toEqual([
      expect.stringMatching(/^observe PASID-cache invalidation of PASID 9 at slot \d+$/),
      "defer wait",
      "status not written while deferred",
      "host bound",
      "status written on completion",
    ]);
    // The entry the invalidation names, as the VMM read it: first level over the process's table.
    expect(observed).toMatchObject({ pgtt: Pgtt.FIRST_LEVEL, flptr: w.root });
    expect(h.unit.deferred).toBeNull();
    expect(dmaWrite(ep, 0x4000_0010, PATTERN, PASID)).toBe("ok");
  });

  it("a trap that refuses a register write leaves the register and the unit as they were", () => {
    let refuse = false;
    const h = testHost({ trap: (e) => (refuse && e.kind === "mmio-write" && e.offset === RegOffset.GCMD ? "handled" : "pass") });
    const gcmd = GcmdReg.alloc();
    GcmdReg.set(gcmd, "QIE", 1); // TE would go to 0
    const tes = (): number => GstsReg.get(readReg(h.unit, RegOffset.GSTS, GstsReg), "TES");
    refuse = true;
    h.unit.mmioWrite32(RegOffset.GCMD, gcmd[0] ?? 0);
    expect([tes(), h.unit.mmioRead32(RegOffset.GCMD) & GcmdReg.bit("QIE").mask]).toEqual([1, 0]);
    refuse = false;
    h.unit.mmioWrite32(RegOffset.GCMD, gcmd[0] ?? 0);
    expect(tes()).toBe(0);
    // A reply that does not answer a write is refused before anything changes.
    const bad = testHost({ trap: (e) => (e.kind === "mmio-write" && e.offset === RegOffset.GCMD ? "defer" : "pass") }, false);
    expect(errnoOf(() => bad.drv.init())).toBe(Errno.EINVAL);
    expect(GstsReg.get(readReg(bad.unit, RegOffset.GSTS, GstsReg), "RTPS")).toBe(0);
  });

  it("a pass-through trap changes nothing: the same trace and the same memory bytes as a run without one", () => {
    const run = (trap: VtdTrap | undefined): { events: unknown[]; image: Map<number, string>; seen: number } => {
      let seen = 0;
      const h = testHost({ cachingMode: true, ...(trap === undefined ? {} : { trap: (e) => (seen++, trap(e)) }) }, false);
      const rec = new TraceRecorder(h.kernel.trace);
      h.drv.init();
      const ep = endpoint(h);
      const dev = probe(h, ep);
      const w = processTables(h, 0x4000_0000, 0x30_0000);
      const bond = h.drv.svaBind(dev, { pgd: w.root, levels: 4, pasid: asHostPasid(9), name: "proc" });
      dmaWrite(ep, 0x4000_0010, PATTERN, 9);
      bond.invalidateRange(0x4000_0000, 0x4000_1000);
      dmaWrite(ep, 0x4000_0020, PATTERN, 9);
      dmaWrite(ep, 0x5000_0000, PATTERN, 9); // not mapped: a page request and its response
      bond.unbind();
      return { events: rec.events.map(shape), image: memoryImage(h.mem, 32 << 20), seen };
    };
    const bare = run(undefined);
    const trapped = run(() => "pass");
    expect(trapped.seen).toBeGreaterThan(40);
    expect(trapped.events).toEqual(bare.events);
    expect(trapped.image).toEqual(bare.image);
    expect(bare.events.length).toBeGreaterThan(20);
  });
});
