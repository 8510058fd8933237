import { describe, expect, it } from "vitest";
import { Errno, KernelError } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { Prot, type IommuDevice, type Mm, type SvaBindingOps, type SvaMm } from "@vsva/iommu-core";
import { CmdOp } from "@vsva/iommu-hw";
import { atcInv, cfgiCd, tlbiNhAsid, tlbiNhVa } from "./commands.js";
import { PATTERN, SmmuTestHost, dmaWrite, type SmmuHostOptions } from "./testing.js";

/**
 * What native SVA puts on the command queue when it flushes, drains, drops
 * its hold on the shared ASID or rolls a failed bind back: each command
 * and its range, not only that the caches end up clean.
 */

const RW = Prot.READ | Prot.WRITE;
const PAGE = 0x1000;

/** Every batch the driver submits from now on, as it submitted it. */
function recordCommands(h: SmmuTestHost): Uint32Array[][] {
  const log: Uint32Array[][] = [];
  const cmdq = h.drv.hw.cmdq;
  const submit = cmdq.submit.bind(cmdq);
  cmdq.submit = (cmds) => {
    log.push([...cmds]);
    submit(cmds);
  };
  return log;
}

const opcode = (c: Uint32Array): number => (c[0] ?? 0) & 0xff;

function host(opts: SmmuHostOptions = {}) {
  const h = new SmmuTestHost(opts);
  const ep = h.endpoint();
  const dev = h.probe(ep);
  h.core.enableFeature(dev, "sva");
  h.core.enableFeature(dev, "iopf");
  return { h, ep, dev, sid: h.drv.hw.master(dev).sid };
}

/** A master whose STE bypasses (identity domain): no CD table until the first SVA bind. */
function identityHost(opts: SmmuHostOptions = {}) {
  const x = host(opts);
  x.h.core.attachDevice(x.h.core.domainAlloc(x.dev, { type: "identity" }), x.dev);
  return x;
}

/**
 * A bypass master with no CD table, as one probed under a core with no
 * default domain (IommuCore's `defaultDomain: "none"`, which the test board
 * does not offer): the CD table the default DMA domain left is freed here.
 */
function tablelessHost(opts: SmmuHostOptions = {}) {
  const x = identityHost(opts);
  const m = x.h.drv.hw.master(x.dev);
  m.cd?.free();
  m.cd = null;
  return x;
}

/** Binds through the core (which gives the mm its PASID) and returns the driver's own binding ops. */
function bindOps(h: SmmuTestHost, dev: IommuDevice, mm: Mm): SvaBindingOps {
  const sva = h.drv.sva;
  const bind = sva.bind.bind(sva);
  let ops: SvaBindingOps | undefined;
  sva.bind = (d, m) => (ops = bind(d, m));
  h.core.sva.bindDevice(dev, mm);
  sva.bind = bind;
  if (ops === undefined) throw new Error("the core did not call the driver's bind");
  return ops;
}

/** The ASID the driver gave the next bind, from its trace. */
function asidOfNextBind(h: SmmuTestHost): () => number {
  let asid = -1;
  h.kernel.trace.subscribe((e) => {
    if (e.kind === "smmu-drv.cd" && e.payload.state === "valid") asid = e.payload.asid;
  });
  return () => asid;
}

describe("native SVA flushes exactly the range an mm invalidation names", () => {
  it("munmap of pages 1-2 of four: TLBI_NH_VA for those two pages under the mm's ASID, one ATC_INV covering them", () => {
    const { h, dev, sid } = host();
    const mm = h.newMm();
    const va = mm.mmap(null, 4 * PAGE, RW, { populate: true });
    const asid = asidOfNextBind(h);
    const bond = h.core.sva.bindDevice(dev, mm);
    const log = recordCommands(h);
    mm.munmap(va + PAGE, 2 * PAGE);
    expect(log).toEqual([[tlbiNhVa(asid(), va + PAGE), tlbiNhVa(asid(), va + 2 * PAGE), atcInv(sid, bond.pasid, va + PAGE, 2 * PAGE)]]);
    h.core.sva.unbindDevice(bond);
  });

  it("a range past 32 pages: one TLBI_NH_ASID for the mm's ASID instead of a TLBI per page", () => {
    const { h, dev, sid } = host();
    const mm = h.newMm();
    const va = mm.mmap(null, 64 * PAGE, RW, { populate: true });
    const asid = asidOfNextBind(h);
    const bond = h.core.sva.bindDevice(dev, mm);
    const log = recordCommands(h);
    mm.munmap(va, 64 * PAGE);
    expect(log).toEqual([[tlbiNhAsid(asid()), atcInv(sid, bond.pasid, va, 64 * PAGE)]]);
    h.core.sva.unbindDevice(bond);
  });

  it("an empty range flushes nothing (no ATC_INV of everything), nor does any range once the bind has ended", () => {
    const { h, dev } = host();
    const mm = h.newMm();
    const va = mm.mmap(null, PAGE, RW, { populate: true });
    const ops = bindOps(h, dev, mm);
    const log = recordCommands(h);
    ops.invalidateRange(va, va);
    ops.invalidateRange(va + PAGE, va);
    expect(log).toEqual([]);
    ops.unbind();
    log.length = 0;
    ops.invalidateRange(va, va + PAGE);
    expect(log).toEqual([]);
  });

  it("without ATS in the unit: TLBIs only, never an ATC_INV", () => {
    const h = new SmmuTestHost({ unit: { ats: false, pri: false } });
    const dev = h.probe(h.endpoint());
    h.core.enableFeature(dev, "sva");
    const sid = h.drv.hw.master(dev).sid;
    const mm = h.newMm();
    const va = mm.mmap(null, 2 * PAGE, RW, { populate: true });
    const asid = asidOfNextBind(h);
    const ops = bindOps(h, dev, mm);
    const log = recordCommands(h);
    ops.invalidateRange(va, va + PAGE);
    ops.release();
    expect(log).toEqual([[tlbiNhVa(asid(), va)], [cfgiCd(sid, ops.pasid), tlbiNhAsid(asid())]]);
  });
});

describe("native SVA ends a bind once: a second release or unbind flushes nothing and drops nothing", () => {
  function twoDevicesOneMm() {
    const h = new SmmuTestHost();
    const [ep0, ep1] = [h.endpoint(4), h.endpoint(5)];
    const d0 = h.probe(ep0, "dsa0");
    const d1 = h.probe(ep1, "dsa1");
    for (const d of [d0, d1]) h.core.enableFeature(d, "sva");
    const mm = h.newMm();
    const va = mm.mmap(null, PAGE, RW, { populate: true });
    return { h, ep0, ep1, d0, d1, mm, va };
  }

  it("release then release, then unbind: one teardown, and the other device keeps the mm's ASID", () => {
    const { h, ep1, d0, d1, mm, va } = twoDevicesOneMm();
    const asid = asidOfNextBind(h);
    const b0 = bindOps(h, d0, mm);
    const b1 = bindOps(h, d1, mm);
    const log = recordCommands(h);
    b0.release();
    const after = log.length;
    expect(after).toBeGreaterThan(0);
    b0.release();
    b0.unbind();
    b0.invalidateRange(va, va + PAGE);
    expect(log.length).toBe(after);
    expect(h.drv.sva.asidsHeld).toBe(1);
    expect(h.drv.sva.isBound(h.drv.hw.master(d1), b1.pasid)).toBe(true);
    expect(dmaWrite(ep1, va, PATTERN, b1.pasid)).toBe("ok");
    // The ASID the other device still uses is still the mm's.
    b1.invalidateRange(va, va + PAGE);
    expect(log.at(-1)?.[0]).toEqual(tlbiNhVa(asid(), va));
    b1.unbind();
    expect(h.drv.sva.asidsHeld).toBe(0);
  });

  it("unbind then unbind, then release: one teardown, one CD user less, and the other device keeps the mm's ASID", () => {
    const { h, ep1, d0, d1, mm, va } = twoDevicesOneMm();
    const b0 = bindOps(h, d0, mm);
    const b1 = bindOps(h, d1, mm);
    const m0 = h.drv.hw.master(d0);
    const log = recordCommands(h);
    b0.unbind();
    const after = log.length;
    expect(m0.svaBinds).toBe(0);
    b0.unbind();
    b0.release();
    expect(log.length).toBe(after);
    expect(m0.svaBinds).toBe(0);
    expect(h.drv.sva.asidsHeld).toBe(1);
    expect(dmaWrite(ep1, va, PATTERN, b1.pasid)).toBe("ok");
    b1.unbind();
    expect(h.drv.sva.asidsHeld).toBe(0);
  });

  it("release: CFGI_CD for the SubstreamID, TLBI_NH_ASID for the mm's ASID, ATC_INV of the whole SubstreamID, in one batch", () => {
    const { h, dev, sid } = host();
    const mm = h.newMm();
    mm.mmap(null, PAGE, RW, { populate: true });
    const asid = asidOfNextBind(h);
    const ops = bindOps(h, dev, mm);
    const held = asid();
    const log = recordCommands(h);
    ops.release();
    expect(log).toEqual([[cfgiCd(sid, ops.pasid), tlbiNhAsid(held), atcInv(sid, ops.pasid, 0, 0)]]);
    expect(h.drv.sva.asidsHeld).toBe(0);
  });

  it("unbind of the last CD user on a stage-1 stream rewrites no STE; on a bypass stream it does", () => {
    const { h, dev } = host();
    expect(h.drv.hw.master(dev).config.kind).toBe("s1");
    const mm = h.newMm();
    mm.mmap(null, PAGE, RW, { populate: true });
    const ops = bindOps(h, dev, mm);
    const log = recordCommands(h);
    ops.unbind();
    expect(log.flat().map(opcode)).not.toContain(CmdOp.CFGI_STE);

    const other = identityHost();
    const mm2 = other.h.newMm();
    const ops2 = bindOps(other.h, other.dev, mm2);
    const log2 = recordCommands(other.h);
    ops2.unbind();
    expect(log2.flat().map(opcode)).toContain(CmdOp.CFGI_STE);
  });
});

describe("native SVA bookkeeping of who is bound at a PASID", () => {
  it("unbinding one of two devices at a PASID leaves the other's page requests reaching the core", () => {
    const h = new SmmuTestHost();
    const [ep0, ep1] = [h.endpoint(4), h.endpoint(5)];
    const devs: IommuDevice[] = [h.probe(ep0, "dsa0"), h.probe(ep1, "dsa1")];
    for (const d of devs) {
      h.core.enableFeature(d, "sva");
      h.core.enableFeature(d, "iopf");
    }
    const [d0, d1] = devs as [IommuDevice, IommuDevice];
    const mm = h.newMm();
    const va = mm.mmap(null, PAGE, RW);
    const b0 = h.core.sva.bindDevice(d0, mm);
    const b1 = h.core.sva.bindDevice(d1, mm);
    expect(b1.pasid).toBe(b0.pasid);
    h.core.sva.unbindDevice(b0);
    expect(h.drv.sva.isBound(h.drv.hw.master(d0), b0.pasid)).toBe(false);
    expect(h.drv.sva.isBound(h.drv.hw.master(d1), b1.pasid)).toBe(true);
    expect(dmaWrite(ep1, va, PATTERN, b1.pasid)).toBe("pageRequestPending");
    h.kernel.scheduler.runUntilIdle();
    expect(h.drv.prq.stats.reported).toBe(1);
    expect(ep1.dma.trigger()).toBe("ok");
    h.core.sva.unbindDevice(b1);
  });

  it("a device removed while bound is forgotten at its PASID: a new device at the same StreamID is not bound there", () => {
    const h = new SmmuTestHost();
    const ep = h.endpoint(4);
    const d0 = h.probe(ep, "dsa0");
    h.core.enableFeature(d0, "sva");
    const mm = h.newMm();
    const ops = bindOps(h, d0, mm);
    const m0 = h.drv.hw.master(d0);
    expect(h.drv.sva.isBound(m0, ops.pasid)).toBe(true);
    const other = bindOps(h, d0, h.newMm("other"));
    h.drv.releaseDevice(d0);
    expect(h.drv.sva.isBound(m0, ops.pasid)).toBe(false);
    expect(h.drv.sva.isBound(m0, other.pasid)).toBe(false);
    // The mm exits, or is unbound, after its device went (and its CD table with it): the ASIDs still go, nothing throws.
    expect(() => ops.release()).not.toThrow();
    expect(() => other.unbind()).not.toThrow();
    expect(h.drv.sva.asidsHeld).toBe(0);
  });
});

describe("native SVA forgets only what goes", () => {
  it("removing one of two devices bound at a PASID leaves the other bound there", () => {
    const h = new SmmuTestHost();
    const d0 = h.probe(h.endpoint(4), "dsa0");
    const d1 = h.probe(h.endpoint(5), "dsa1");
    for (const d of [d0, d1]) h.core.enableFeature(d, "sva");
    const mm = h.newMm();
    const b0 = bindOps(h, d0, mm);
    const b1 = bindOps(h, d1, mm);
    expect(b1.pasid).toBe(b0.pasid);
    h.drv.releaseDevice(d0);
    expect(h.drv.sva.isBound(h.drv.hw.master(d1), b1.pasid)).toBe(true);
    b1.unbind();
  });

  it("a bind over a quiet CD left by release takes no second CD user: after its unbind a bypass stream bypasses again", () => {
    const { h, dev } = identityHost();
    const m = h.drv.hw.master(dev);
    const mm = h.newMm();
    const ops = bindOps(h, dev, mm);
    expect(m.svaBinds).toBe(1);
    ops.release();
    // The quiet CD still counts: the STE keeps pointing at the CD table.
    expect(m.svaBinds).toBe(1);
    // The same SubstreamID bound again (as when the PASID is reused by a new mm) overwrites the quiet CD.
    const again: SvaMm = { pgd: mm.pgd, levels: mm.levels, pasid: ops.pasid, name: "again", format: mm.format };
    const ops2 = h.drv.sva.bind(dev, again);
    expect(m.svaBinds).toBe(1);
    ops2.unbind();
    expect(m.svaBinds).toBe(0);
    expect(m.config.kind).toBe("bypass");
    expect(h.unit.debug.checkStructureCaches()).toEqual([]);
  });
});

describe("a failed bind is rolled back: no ASID held, no CD table left", () => {
  it("the CD table cannot be allocated: ENOMEM, the ASID is freed and the master has no table", () => {
    const { h, dev } = tablelessHost();
    const mm = h.newMm();
    const m = h.drv.hw.master(dev);
    expect(m.cd).toBeNull();
    const pages = h.pages;
    const alloc = pages.allocPages.bind(pages);
    const live = pages.stats.livePages;
    pages.allocPages = () => {
      throw new KernelError(Errno.ENOMEM, "test: no pages");
    };
    expect(errnoOf(() => bindOps(h, dev, mm))).toBe(Errno.ENOMEM);
    pages.allocPages = alloc;
    expect(m.cd).toBeNull();
    expect(h.drv.sva.asidsHeld).toBe(0);
    expect(pages.stats.livePages).toBe(live);
    // The rollback left a usable master: the next bind succeeds.
    const ops = bindOps(h, dev, mm);
    expect(h.drv.sva.asidsHeld).toBe(1);
    ops.unbind();
  });

  it("the CD is allocated but writing it fails: the fresh table is freed with the ASID", () => {
    const { h, dev } = tablelessHost({ unit: { twoLevelCdTable: true } });
    const mm = h.newMm();
    const m = h.drv.hw.master(dev);
    expect(m.cd).toBeNull();
    const pages = h.pages;
    const alloc = pages.allocPages.bind(pages);
    const live = pages.stats.livePages;
    let calls = 0;
    pages.allocPages = (order, what) => {
      if (++calls > 1) throw new KernelError(Errno.ENOMEM, "test: no second page");
      return alloc(order, what);
    };
    expect(errnoOf(() => bindOps(h, dev, mm))).toBe(Errno.ENOMEM);
    pages.allocPages = alloc;
    expect(calls).toBeGreaterThan(1);
    expect(m.cd).toBeNull();
    expect(h.drv.sva.asidsHeld).toBe(0);
    expect(pages.stats.livePages).toBe(live);
  });
});
