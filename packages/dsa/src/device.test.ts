import { describe, expect, it } from "vitest";
import { Errno, Scheduler } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { DsaDevice } from "./device.js";
import { decodeCompletion, encodeDescriptor } from "./descriptor.js";
import { DescFlag, DsaCmdErr, DsaCommand, DsaOpcode, DsaReg, DsaStatus, DsaSwErr, DsaWqCfg } from "./regs.js";
import { bringUp, dsaCommand, makeDsaRig, writeWqCfg, type DsaRig } from "./testing/index.js";

const P = 5;
const PAGE = 0x1000;
const SRC = 0x10_000;
const DST = 0x20_000;
const CR = 0x30_000;
const SRC_PA = 0x100_000;
const DST_PA = 0x200_000;
const CR_PA = 0x300_000;
const CR_FLAGS = DescFlag.CRAV | DescFlag.RCR;

/** Maps `pages` pages at `va` for `pasid` to consecutive physical pages at `pa`. */
function mapRange(r: DsaRig, pasid: number, va: number, pa: number, pages: number): void {
  for (let i = 0; i < pages; i++) r.iommu.map(pasid, va + i * PAGE, { pa: pa + i * PAGE });
}

function standardMaps(r: DsaRig, pasid = P): void {
  mapRange(r, pasid, SRC, SRC_PA, 4);
  mapRange(r, pasid, DST, DST_PA, 4);
  mapRange(r, pasid, CR, CR_PA, 1);
}

/** The completion record as the CPU reads it (physical here: the test knows the mapping). */
function completion(r: DsaRig, pa = CR_PA): ReturnType<typeof decodeCompletion> {
  const b = new Uint8Array(32);
  r.mem.readBytes(pa, b);
  return decodeCompletion(b);
}

function fillBytes(r: DsaRig, pa: number, n: number, f: (i: number) => number): void {
  r.mem.writeBytes(
    pa,
    Uint8Array.from({ length: n }, (_, i) => f(i)),
  );
}

function readBytes(r: DsaRig, pa: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  r.mem.readBytes(pa, b);
  return b;
}

function swerr(dev: DsaDevice): Record<string, number> {
  const v = DsaSwErr.alloc();
  for (let i = 0; i < v.length; i++) v[i] = dev.mmioRead32(DsaReg.SWERR + 4 * i);
  return DsaSwErr.decode(v);
}

describe("operations through a dedicated WQ (MOVDIR64B, the WQ's PASID)", () => {
  it("moves bytes across page boundaries and writes a success completion record", () => {
    const r = makeDsaRig();
    expect(bringUp(r.dev, [{ mode: "dedicated", size: 8, pasid: P }])).toEqual([]);
    standardMaps(r);
    fillBytes(r, SRC_PA, 3 * PAGE, (i) => (i * 7 + 3) & 0xff);
    // The source starts mid-page and the destination at another offset: every chunk boundary differs.
    const size = 2 * PAGE + 100;
    r.dev.movdir64b(0, encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS, pasid: 0, completionAddr: CR, src: SRC + 0x300, dst: DST + 0x10, size }));
    const cr = completion(r);
    expect(cr.status).toBe(DsaStatus.SUCCESS);
    expect(cr.bytesCompleted).toBe(size);
    expect(readBytes(r, DST_PA + 0x10, size)).toEqual(readBytes(r, SRC_PA + 0x300, size));
    expect(readBytes(r, DST_PA + 0x10 + size, 1)[0]).toBe(0); // nothing past the destination
    expect(r.iommu.translations.every((t) => t.pasid === P)).toBe(true);
  });

  it("over a memory with neither block copies nor dword writes, moves the same bytes and writes the same whole record through writeBytes", () => {
    const records = [false, true].map((plain) => {
      const r = makeDsaRig({ requiredMemoryMethodsOnly: plain });
      expect(bringUp(r.dev, [{ mode: "dedicated", size: 8, pasid: P }])).toEqual([]);
      standardMaps(r);
      fillBytes(r, SRC_PA, 2 * PAGE, (i) => (i * 5 + 1) & 0xff);
      fillBytes(r, CR_PA, 32, () => 0xee); // a stale record: every field must be overwritten
      const d = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS, completionAddr: CR, src: SRC + 8, dst: DST, size: PAGE + 16 });
      r.dev.movdir64b(0, d);
      fillBytes(r, CR_PA, 32, () => 0xee);
      r.dev.movdir64b(0, d); // the second one finds its pages translated (the express path, where the memory allows it)
      expect(readBytes(r, DST_PA, PAGE + 16)).toEqual(readBytes(r, SRC_PA + 8, PAGE + 16));
      return [...readBytes(r, CR_PA, 32)];
    });
    expect(records[1]).toEqual(records[0]);
    expect(decodeCompletion(Uint8Array.from(records[0] ?? []))).toMatchObject({ status: DsaStatus.SUCCESS, bytesCompleted: PAGE + 16, faultAddr: 0 });
  });

  it("a dedicated WQ without a PASID issues requests without PASID", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "dedicated", size: 8 }]);
    r.iommu.map(undefined, CR, { pa: CR_PA });
    r.dev.movdir64b(0, encodeDescriptor({ opcode: DsaOpcode.NOOP, flags: CR_FLAGS, pasid: P, completionAddr: CR }));
    expect(completion(r).status).toBe(DsaStatus.SUCCESS);
    expect(r.iommu.translations.map((t) => t.pasid)).toEqual([undefined]);
  });
});

describe("operations through a shared WQ (ENQCMD, the payload's PASID)", () => {
  it("fills with the 8-byte pattern, phase kept from the destination start", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "shared", size: 8 }]);
    standardMaps(r);
    const size = PAGE + 13;
    const res = r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: CR_FLAGS, pasid: P, completionAddr: CR, pattern: 0x0807_0605_0403_0201n, dst: DST + 0xff8, size }));
    expect(res).toBe("accepted");
    expect(completion(r).status).toBe(DsaStatus.SUCCESS);
    const got = readBytes(r, DST_PA + 0xff8, size + 1);
    for (let i = 0; i < size; i++) expect(got[i]).toBe((i % 8) + 1);
    expect(got[size]).toBe(0);
  });

  it("compares: equal gives result 0, a difference gives result 1 and its offset", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "shared", size: 8 }]);
    standardMaps(r);
    fillBytes(r, SRC_PA, 2 * PAGE, (i) => i & 0xff);
    fillBytes(r, DST_PA, 2 * PAGE, (i) => i & 0xff);
    const cmp = (): ReturnType<typeof decodeCompletion> => {
      r.mem.writeBytes(CR_PA, new Uint8Array(32));
      r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.COMPARE, flags: CR_FLAGS, pasid: P, completionAddr: CR, src: SRC, dst: DST, size: 2 * PAGE }));
      return completion(r);
    };
    expect(cmp()).toMatchObject({ status: DsaStatus.SUCCESS, result: 0 });
    r.mem.writeBytes(DST_PA + PAGE + 5, Uint8Array.of(0xee));
    expect(cmp()).toMatchObject({ status: DsaStatus.SUCCESS, result: 1, bytesCompleted: PAGE + 5 });
  });

  it("answers retry when the shared WQ is full, and accepts again once the engine drains it", () => {
    const r = makeDsaRig({ mode: "stepwise" });
    bringUp(r.dev, [{ mode: "shared", size: 2 }]);
    standardMaps(r);
    const d = encodeDescriptor({ opcode: DsaOpcode.NOOP, pasid: P });
    expect([r.dev.enqcmd(0, d), r.dev.enqcmd(0, d), r.dev.enqcmd(0, d)]).toEqual(["accepted", "accepted", "retry"]);
    expect(DsaWqCfg.decode(Uint32Array.from({ length: 8 }, (_, i) => r.dev.mmioRead32(r.dev.wqcfgOffset(0) + 4 * i))).OCCUPANCY).toBe(2);
    r.dev.step();
    expect(r.dev.enqcmd(0, d)).toBe("accepted");
    expect(r.dev.stats.retried).toBe(1);
  });

  it("ENQCMD to a dedicated WQ is retried and MOVDIR64B to a shared WQ is dropped", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [
      { mode: "dedicated", size: 2, pasid: P },
      { mode: "shared", size: 2 },
    ]);
    const d = encodeDescriptor({ opcode: DsaOpcode.NOOP, pasid: P });
    expect(r.dev.enqcmd(0, d)).toBe("retry");
    r.dev.movdir64b(1, d);
    expect(r.dev.stats).toMatchObject({ dropped: 1, submitted: 0 });
  });
});

describe("page faults", () => {
  it("with block-on-fault, the device issues a page request and resumes on the response", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "dedicated", size: 4, pasid: P, bof: true }]);
    mapRange(r, P, SRC, SRC_PA, 2);
    mapRange(r, P, CR, CR_PA, 1);
    fillBytes(r, SRC_PA, 2 * PAGE, (i) => (i * 3) & 0xff);
    r.dev.movdir64b(0, encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS | DescFlag.BOF, completionAddr: CR, src: SRC, dst: DST, size: 2 * PAGE }));
    expect(r.dev.blocked).toBe(true);
    expect(completion(r).status).toBe(DsaStatus.NONE);
    const [req] = r.iommu.pendingPageRequests;
    expect(req).toMatchObject({ pasid: P, addr: DST, write: true });
    if (req === undefined) return;
    mapRange(r, P, DST, DST_PA, 2); // the fault handler makes both pages present
    r.iommu.respond(req, "success");
    expect(completion(r)).toMatchObject({ status: DsaStatus.SUCCESS, bytesCompleted: 2 * PAGE });
    expect(readBytes(r, DST_PA, 2 * PAGE)).toEqual(readBytes(r, SRC_PA, 2 * PAGE));
    expect(r.dev.stats.pageRequests).toBe(1);
  });

  it("a failed page response completes with a page fault at the address", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "dedicated", size: 4, pasid: P, bof: true }]);
    mapRange(r, P, CR, CR_PA, 1);
    mapRange(r, P, SRC, SRC_PA, 1);
    r.dev.movdir64b(0, encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS | DescFlag.BOF, completionAddr: CR, src: SRC, dst: DST, size: 64 }));
    const [req] = r.iommu.pendingPageRequests;
    if (req === undefined) throw new Error("no page request");
    r.iommu.respond(req, "invalid");
    expect(completion(r)).toMatchObject({ status: DsaStatus.PAGE_FAULT_NOBOF, faultAddr: DST, faultWrite: true, bytesCompleted: 0 });
  });

  it("a failed page response for the completion record's own page goes to SWERR and retires the descriptor, asking no more", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "dedicated", size: 4, pasid: P, bof: true }]);
    mapRange(r, P, SRC, SRC_PA, 1);
    r.dev.movdir64b(0, encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS | DescFlag.BOF, completionAddr: CR, src: SRC, dst: DST, size: 64 }));
    // The destination's request, refused (a VMM gone): the descriptor turns to writing its record, whose page is not present either.
    for (const want of [DST, CR]) {
      const [req] = r.iommu.pendingPageRequests;
      expect(req).toMatchObject({ pasid: P, addr: want, write: true });
      if (req === undefined) return;
      r.iommu.respond(req, "invalid");
    }
    expect(r.iommu.pendingPageRequests).toHaveLength(0);
    expect(r.dev.blocked).toBe(false);
    expect(r.dev.stats).toMatchObject({ pageRequests: 2, completed: 1 });
    expect(swerr(r.dev)).toMatchObject({ VALID: 1, ERROR: DsaStatus.CRA_XLAT, PASID: P, OPERATION: DsaOpcode.MEMMOVE });
  });

  it("without block-on-fault, a partial completion gives bytes completed and the fault address", () => {
    const r = makeDsaRig();
    // The descriptor asks for BOF but the WQ does not allow it: the flag is not honoured.
    bringUp(r.dev, [{ mode: "dedicated", size: 4, pasid: P }]);
    mapRange(r, P, SRC, SRC_PA, 1); // the second source page is missing
    mapRange(r, P, DST, DST_PA, 2);
    mapRange(r, P, CR, CR_PA, 1);
    fillBytes(r, SRC_PA, PAGE, () => 0xab);
    r.dev.movdir64b(0, encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS | DescFlag.BOF, completionAddr: CR, src: SRC + 0x800, dst: DST, size: PAGE }));
    expect(completion(r)).toMatchObject({ status: DsaStatus.PAGE_FAULT_NOBOF, bytesCompleted: 0x800, faultAddr: SRC + PAGE, faultWrite: false });
    expect(readBytes(r, DST_PA, 0x801)).toEqual(Uint8Array.from({ length: 0x801 }, (_, i) => (i < 0x800 ? 0xab : 0)));
    expect(r.iommu.allPageRequests).toEqual([]);
  });
});

describe("errors", () => {
  it("a bad opcode or undefined flag completes with an error status; the buffers are untouched", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "shared", size: 4 }]);
    standardMaps(r);
    r.dev.enqcmd(0, encodeDescriptor({ opcode: 0x7f, flags: CR_FLAGS, pasid: P, completionAddr: CR, src: SRC, dst: DST, size: 64 }));
    expect(completion(r).status).toBe(DsaStatus.BAD_OPCODE);
    r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS | 0x40_0000, pasid: P, completionAddr: CR, src: SRC, dst: DST, size: 64 }));
    expect(completion(r)).toMatchObject({ status: DsaStatus.INVALID_FLAGS, invalidFlags: 0x40_0000 });
    r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS, pasid: P, completionAddr: CR, src: SRC, dst: SRC + 8, size: 64 }));
    expect(completion(r).status).toBe(DsaStatus.OVERLAP_BUFFERS);
    r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: CR_FLAGS, pasid: P, completionAddr: CR, dst: DST, size: 0 }));
    expect(completion(r).status).toBe(DsaStatus.XFER_ERANGE);
    expect(r.iommu.translations.every((t) => t.addr === CR)).toBe(true);
  });

  it("a misaligned completion record address goes to SWERR, and a second error only sets overflow", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "shared", size: 4 }]);
    standardMaps(r);
    const d = encodeDescriptor({ opcode: DsaOpcode.NOOP, flags: CR_FLAGS, pasid: P, completionAddr: CR + 8 });
    r.dev.enqcmd(0, d);
    expect(swerr(r.dev)).toMatchObject({ VALID: 1, OVERFLOW: 0, ERROR: DsaStatus.CRA_ALIGN, WQ_IDX: 0, PASID: P, OPERATION: DsaOpcode.NOOP });
    expect(r.iommu.translations).toEqual([]);
    r.dev.enqcmd(0, d);
    expect(swerr(r.dev)).toMatchObject({ VALID: 1, OVERFLOW: 1 });
    r.dev.mmioWrite64(DsaReg.SWERR, 3n); // software acknowledges
    expect(swerr(r.dev)).toMatchObject({ VALID: 0, OVERFLOW: 0 });
  });

  it("a PASID the IOMMU refuses: no data moves, and the error reaches SWERR (the record cannot be written)", () => {
    const r = makeDsaRig();
    r.iommu.priCapable = false; // faults are final, as for a PASID with no entry
    bringUp(r.dev, [{ mode: "shared", size: 4 }]);
    standardMaps(r, P);
    r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: CR_FLAGS | DescFlag.BOF, pasid: 9, completionAddr: CR, pattern: 1n, dst: DST, size: 64 }));
    expect(swerr(r.dev)).toMatchObject({ VALID: 1, ERROR: DsaStatus.CRA_XLAT, PASID: 9, FAULT_ADDR_LO: CR });
    expect(readBytes(r, DST_PA, 64).every((b) => b === 0)).toBe(true);
    expect(r.iommu.allPageRequests).toEqual([]);
  });

  it("a refused data page with a writable record completes with translation fail", () => {
    const r = makeDsaRig();
    r.iommu.priCapable = false;
    bringUp(r.dev, [{ mode: "shared", size: 4 }]);
    mapRange(r, P, CR, CR_PA, 1);
    r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: CR_FLAGS, pasid: P, completionAddr: CR, pattern: 1n, dst: DST, size: 64 }));
    expect(completion(r)).toMatchObject({ status: DsaStatus.TRANSLATION_FAIL, faultAddr: DST, faultWrite: true });
  });

  it("a portal write that is not one 64-byte store is EINVAL", () => {
    const r = makeDsaRig();
    expect(errnoOf(() => r.dev.movdir64b(0, new Uint8Array(32)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => r.dev.enqcmd(9, new Uint8Array(64)))).toBe(Errno.EINVAL);
  });
});

describe("commands and configuration", () => {
  it("reports the command errors a driver checks", () => {
    const off = makeDsaRig({ enable: { busMaster: false } });
    expect(dsaCommand(off.dev, DsaCommand.ENABLE_DEVICE).err).toBe(DsaCmdErr.BUSMASTER_EN);
    const r = makeDsaRig();
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_WQ, 0).err).toBe(DsaCmdErr.DEV_NOTEN);
    expect(dsaCommand(r.dev, DsaCommand.DISABLE_DEVICE).err).toBe(DsaCmdErr.DIS_DEV_EN);
    writeWqCfg(r.dev, 0, { mode: "shared", size: 4 });
    writeWqCfg(r.dev, 1, { mode: "dedicated", size: 0 });
    writeWqCfg(r.dev, 2, { mode: "dedicated", size: 4, maxXferShift: 30 });
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_DEVICE).err).toBe(DsaCmdErr.SUCCESS);
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_DEVICE).err).toBe(DsaCmdErr.DEV_ENABLED);
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_WQ, 1).err).toBe(DsaCmdErr.WQ_SIZE);
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_WQ, 2).err).toBe(DsaCmdErr.MAX_XFER_SIZE);
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_WQ, 7).err).toBe(DsaCmdErr.INVAL_WQIDX);
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_WQ, 0).err).toBe(DsaCmdErr.SUCCESS);
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_WQ, 0).err).toBe(DsaCmdErr.WQ_ENABLED);
    expect(dsaCommand(r.dev, 0x1f).err).toBe(DsaCmdErr.INVAL_CMD);
    expect(dsaCommand(r.dev, DsaCommand.DISABLE_WQ, 1 << 1).err).toBe(DsaCmdErr.DEV_NOT_EN);
  });

  it("a shared WQ must be PASID-enabled, and the WQ sizes must fit the device", () => {
    const r = makeDsaRig({ totalWqSize: 8 });
    writeWqCfg(r.dev, 0, { mode: "dedicated", size: 6 });
    writeWqCfg(r.dev, 1, { mode: "dedicated", size: 6 });
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_DEVICE).err).toBe(DsaCmdErr.WQ_SIZE_ERANGE);
    writeWqCfg(r.dev, 1, { mode: "dedicated", size: 2 });
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_DEVICE).err).toBe(DsaCmdErr.SUCCESS);
    // Shared mode with PASID_EN cleared, written raw.
    const base = r.dev.wqcfgOffset(1);
    r.dev.mmioWrite32(base + 8, 0);
    r.dev.mmioWrite32(base + 12, 21);
    expect(dsaCommand(r.dev, DsaCommand.ENABLE_WQ, 1).err).toBe(DsaCmdErr.PASID_EN);
  });

  it("WQCFG is read-only while the WQ is enabled", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "dedicated", size: 4, pasid: P }]);
    const base = r.dev.wqcfgOffset(0);
    const before = r.dev.mmioRead32(base + 8);
    r.dev.mmioWrite32(base + 8, 0);
    expect(r.dev.mmioRead32(base + 8)).toBe(before);
    expect(dsaCommand(r.dev, DsaCommand.DISABLE_WQ, 1).err).toBe(DsaCmdErr.SUCCESS);
    r.dev.mmioWrite32(base + 8, 0);
    expect(r.dev.mmioRead32(base + 8)).toBe(0);
  });

  it("disabling a WQ waits (CMDSTS active) for a descriptor blocked on a page request", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "dedicated", size: 4, pasid: P, bof: true }]);
    mapRange(r, P, CR, CR_PA, 1);
    mapRange(r, P, SRC, SRC_PA, 1);
    r.dev.movdir64b(0, encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS | DescFlag.BOF, completionAddr: CR, src: SRC, dst: DST, size: 64 }));
    expect(dsaCommand(r.dev, DsaCommand.DISABLE_WQ, 1)).toEqual({ err: 0, active: true });
    // Further portal writes are not taken while the drain is in progress.
    r.dev.movdir64b(0, encodeDescriptor({ opcode: DsaOpcode.NOOP }));
    expect(r.dev.stats.dropped).toBe(1);
    const [req] = r.iommu.pendingPageRequests;
    if (req === undefined) throw new Error("no page request");
    mapRange(r, P, DST, DST_PA, 1);
    r.iommu.respond(req, "success");
    expect(completion(r).status).toBe(DsaStatus.SUCCESS);
    expect(r.dev.mmioRead32(DsaReg.CMDSTS)).toBe(0);
    expect(r.dev.mmioRead32(r.dev.wqcfgOffset(0) + 24) >>> 30).toBe(0); // WQ state disabled
  });

  it("DRAIN_PASID waits for that PASID's descriptors only: another PASID's blocked work does not hold it, its own does", () => {
    const r = makeDsaRig({ mode: "stepwise" });
    bringUp(r.dev, [{ mode: "shared", size: 8, bof: true }]);
    mapRange(r, P, CR, CR_PA, 1);
    mapRange(r, P + 1, CR, CR_PA, 1);
    // PASID P+1 blocks on a page request (nothing mapped at DST for it); P has two NOOPs queued behind.
    r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: CR_FLAGS | DescFlag.BOF, pasid: P + 1, completionAddr: CR, pattern: 1n, dst: DST, size: 64 }));
    r.dev.run();
    expect(r.dev.blocked).toBe(true);
    r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.NOOP, pasid: P }));
    // Queued first, the running (blocked) job last.
    expect(r.dev.inFlightPasids()).toEqual([P, P + 1]);
    expect(dsaCommand(r.dev, DsaCommand.DRAIN_PASID, P + 1)).toEqual({ err: 0, active: true });
    // New work is still taken while a PASID drains.
    expect(r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.NOOP, pasid: P }))).toBe("accepted");
    const [req] = r.iommu.pendingPageRequests;
    if (req === undefined) throw new Error("no page request");
    mapRange(r, P + 1, DST, DST_PA, 1);
    r.iommu.respond(req, "success");
    r.dev.step();
    r.dev.step();
    // The fill's record is written: P+1 is drained, with P's NOOPs still queued.
    expect(r.dev.mmioRead32(DsaReg.CMDSTS)).toBe(0);
    expect(r.dev.runnable).toBe(true);
    expect(dsaCommand(r.dev, DsaCommand.DRAIN_PASID, P)).toEqual({ err: 0, active: true });
    r.dev.run();
    expect(r.dev.mmioRead32(DsaReg.CMDSTS)).toBe(0);
    expect(r.dev.stats.completed).toBe(3);
    expect(r.dev.inFlightPasids()).toEqual([]);
  });

  it("ABORT_PASID drops only that PASID's queued descriptors", () => {
    const r = makeDsaRig({ mode: "stepwise" });
    bringUp(r.dev, [{ mode: "shared", size: 8 }]);
    for (const pasid of [P, P + 1, P, P + 1]) r.dev.enqcmd(0, encodeDescriptor({ opcode: DsaOpcode.NOOP, pasid }));
    expect(dsaCommand(r.dev, DsaCommand.ABORT_PASID, P)).toEqual({ err: 0, active: false });
    expect(r.dev.mmioRead32(r.dev.wqcfgOffset(0) + 24) & 0xffff).toBe(2); // occupancy
    r.dev.run();
    expect(r.dev.stats.completed).toBe(2);
  });

  it("a Function Level Reset returns the device registers to reset", () => {
    const r = makeDsaRig();
    bringUp(r.dev, [{ mode: "dedicated", size: 4, pasid: P }]);
    expect(r.dev.state).toBe(1);
    r.dev.ep.configWrite(r.dev.ep.config.devCtl.offset, 2, 0x8000); // Initiate FLR through config space
    expect(r.dev.state).toBe(0);
    expect(r.dev.mmioRead32(r.dev.wqcfgOffset(0))).toBe(0);
  });
});

describe("deterministic execution", () => {
  it("a stepwise device runs from a kernel work queue, one page per work item", () => {
    const sched = new Scheduler();
    const wq = sched.createWorkqueue("dsa");
    const r = makeDsaRig({ mode: "stepwise" });
    r.dev.driveFrom(wq);
    bringUp(r.dev, [{ mode: "dedicated", size: 4, pasid: P }]);
    standardMaps(r);
    fillBytes(r, SRC_PA, 3 * PAGE, (i) => i & 0xff);
    r.dev.movdir64b(0, encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS, completionAddr: CR, src: SRC, dst: DST, size: 3 * PAGE }));
    expect(r.dev.stats.bytesMoved).toBe(0); // nothing until the scheduler runs
    sched.drain();
    expect(completion(r).status).toBe(DsaStatus.SUCCESS);
    expect(r.dev.stats.bytesMoved).toBe(3 * PAGE);
  });

  it("an immediate device cannot be driven by a work queue", () => {
    const r = makeDsaRig();
    expect(errnoOf(() => r.dev.driveFrom(new Scheduler().createWorkqueue("x")))).toBe(Errno.EINVAL);
  });
});
