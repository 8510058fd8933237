import { describe, expect, it } from "vitest";
import { type SourceId, asHostPasid } from "@vsva/kernel";
import { RegOffset, TableWriter, x86Format } from "@vsva/iommu-hw";
import type { PageRequestFault } from "@vsva/iommu-core";
import { type TestHost, endpoint, probe, testHost } from "./test-host.js";

/**
 * What the driver writes, byte for byte, against what Linux v5.10 writes for
 * the same operation (the QI_* macros of include/linux/intel-iommu.h and the
 * pasid_set_*()/context_set_*() helpers). The descriptors are read back from
 * the invalidation queue's ring in memory, the entries from their tables.
 */

const PASID = 9;

/** Every 256-bit slot written to the invalidation queue since IQT was `from`, as four qwords each. */
function ring(h: TestHost, from: number): bigint[][] {
  const base = h.unit.mmioRead32(RegOffset.IQA) & ~0xfff;
  const to = h.unit.mmioRead32(RegOffset.IQT);
  const out: bigint[][] = [];
  for (let at = from; at !== to; at = (at + 32) % 4096) {
    out.push([0, 8, 16, 24].map((o) => (BigInt(h.mem.read32(base + at + o + 4)) << 32n) | BigInt(h.mem.read32(base + at + o))));
  }
  return out;
}
const tail = (h: TestHost): number => h.unit.mmioRead32(RegOffset.IQT);
const type = (d: readonly bigint[]): number => Number((d[0] ?? 0n) & 0xfn);

function sva(opts: Parameters<typeof testHost>[0] = {}) {
  const h = testHost(opts);
  const ep = endpoint(h);
  const dev = probe(h, ep);
  let next = 0x60_0000;
  const w = new TableWriter(h.mem, x86Format({ levels: 4 }), { alloc: () => (next += 0x1000) });
  w.map(0x4000_0000, 0x30_0000, 0x1000, { write: true, user: true });
  const bind = () => h.drv.svaBind(dev, { pgd: w.root, levels: 4, pasid: asHostPasid(PASID), name: "proc" });
  return { h, ep, dev, bind, sid: BigInt(ep.sid) };
}

/** The scalable-mode context entry of `sid`, qword 0. */
function contextQw0(h: TestHost, sid: number): bigint {
  const root = h.unit.mmioRead32(RegOffset.RTADDR) & ~0xfff;
  const lower = h.mem.read32(root + 16 * (sid >>> 8)) & ~0xfff;
  const at = lower + 32 * (sid & 0x7f);
  return (BigInt(h.mem.read32(at + 4)) << 32n) | BigInt(h.mem.read32(at));
}

describe("PFSID in device-TLB invalidations", () => {
  it("with ECAP.DIT the PASID device-TLB invalidation carries the PF's source ID (the device itself: it is no VF)", () => {
    const { h, bind, sid } = sva({ deviceTlbThrottling: true });
    const bond = bind();
    const from = tail(h);
    bond.unbind();
    const dt = ring(h, from).filter((d) => type(d) === 8);
    expect(dt.length).toBeGreaterThan(0);
    // qi_flush_dev_iotlb_pasid(): PASID<<32 | SID<<16 | type 8 | PFSID[3:0]<<12 | PFSID[15:4]<<52.
    const pfsid = ((sid & 0xfn) << 12n) | ((sid >> 4n) << 52n);
    for (const d of dt) expect(d[0]).toBe((BigInt(PASID) << 32n) | (sid << 16n) | 8n | pfsid);
  });

  it("without DIT, PFSID is 0 (reserved), as iommu_enable_dev_iotlb() leaves it", () => {
    const { h, bind, sid } = sva();
    const bond = bind();
    const from = tail(h);
    bond.unbind();
    const dt = ring(h, from).filter((d) => type(d) === 8);
    expect(dt.length).toBeGreaterThan(0);
    for (const d of dt) expect(d[0]).toBe((BigInt(PASID) << 32n) | (sid << 16n) | 8n);
  });
});

describe("context entry: PASIDE on first PASID use, with a device-selective flush carrying the DID", () => {
  it("probe writes the context entry without PASIDE; the first bind sets it and flushes the device's context with its domain's DID", () => {
    const { h, ep, dev, bind, sid } = sva();
    expect((contextQw0(h, ep.sid) >> 3n) & 1n).toBe(0n);
    const from = tail(h);
    bind();
    expect((contextQw0(h, ep.sid) >> 3n) & 1n).toBe(1n);
    const cc = ring(h, from).filter((d) => type(d) === 1);
    // The device's RID_PASID entry is its default domain's (pass-through: FLPT_DEFAULT_DID = 1).
    const did = BigInt(h.drv.hw.device(dev).ridPasidDid);
    expect(did).not.toBe(0n);
    // QI_CC_SID(sid) | QI_CC_DID(did) | QI_CC_GRAN(DMA_CCMD_DEVICE_INVL) | QI_CC_TYPE.
    expect(cc).toEqual([[(sid << 32n) | (did << 16n) | 0x31n, 0n, 0n, 0n]]);
  });
});

describe("page-request drain as intel_svm_drain_prq() queues it", () => {
  it("unbind ends with a fence-only wait, PASID-IOTLB, PASID device-TLB, then a status-write wait with PD and no FN", () => {
    const { h, bind } = sva();
    const bond = bind();
    const from = tail(h);
    bond.unbind();
    const r = ring(h, from);
    const fence = r.findIndex((d) => d[0] === 0x0000_0002_0000_0045n && d[1] === 0n);
    expect(fence).toBeGreaterThanOrEqual(0);
    const [, piotlb, devtlb, wait] = r.slice(fence);
    // QI_EIOTLB_PASID | QI_EIOTLB_DID(domain) | QI_EIOTLB_GRAN(QI_GRAN_NONG_PASID) | type 6.
    expect(type(piotlb ?? [])).toBe(6);
    expect(Number(((piotlb?.[0] ?? 0n) >> 4n) & 3n)).toBe(2);
    expect(Number((piotlb?.[0] ?? 0n) >> 32n)).toBe(PASID);
    expect(type(devtlb ?? [])).toBe(8);
    expect(devtlb?.[1]).toBe(0n);
    const w0 = wait?.[0] ?? 0n;
    expect(type(wait ?? [])).toBe(5);
    expect({ sw: (w0 >> 5n) & 1n, fn: (w0 >> 6n) & 1n, pd: (w0 >> 7n) & 1n }).toEqual({ sw: 1n, fn: 0n, pd: 1n });
  });
});

describe("page group responses", () => {
  function reported() {
    const s = sva();
    const faults: PageRequestFault[] = [];
    s.h.core.unregisterDeviceFaultHandler(s.dev);
    s.h.core.registerDeviceFaultHandler(s.dev, (_d, f) => (faults.push(f), true));
    s.bind();
    return { ...s, faults };
  }
  const request = (sid: SourceId, o: { last: boolean; privateData?: readonly [bigint, bigint] }) => ({
    sid, pasid: PASID, priv: false, exec: false, addr: 0x4000_5000, read: true, write: false, lastInGroup: o.last, groupIndex: 5,
    ...(o.privateData === undefined ? {} : { privateData: o.privateData }),
  });

  it("an answer relayed from the core: raw UAPI failure code 2, LPIG 1, PDP with the request's private data in qw2/qw3", () => {
    const { h, ep, dev, faults, sid } = reported();
    const priv = [0x1122_3344_5566_7788n, 0x99aa_bbcc_ddee_ff00n] as const;
    expect(h.unit.pageRequest(request(ep.sid, { last: false, privateData: priv }))).toBe(true);
    h.drv.processPageRequests();
    expect(faults.map((f) => [f.grpid, f.last, f.privateData])).toEqual([[5, false, priv]]);
    const from = tail(h);
    h.drv.pageResponse(dev, { pasid: asHostPasid(PASID), grpid: 5, code: "failure" });
    // intel_svm_page_response(): QI_PGRP_PASID | QI_PGRP_DID(sid) | PASID_P | PDP | RESP_CODE(2) | type 9; IDX(5) | LPIG(1).
    expect(ring(h, from).filter((d) => type(d) === 9)).toEqual([[(BigInt(PASID) << 32n) | (sid << 16n) | 0x2039n, 0x2cn, priv[0], priv[1]]]);
  });

  it("the driver's own answer (nobody handles the PASID): VT-d code 1, LPIG as the request had it, no PDP without private data", () => {
    const { h, ep, dev, bind, sid } = sva();
    h.core.unregisterDeviceFaultHandler(dev);
    bind();
    const from = tail(h);
    expect(h.unit.pageRequest(request(ep.sid, { last: true }))).toBe(true);
    h.drv.processPageRequests();
    // prq_event_thread(): QI_PGRP_PASID | DID(rid) | PASID_P | RESP_CODE(QI_RESP_INVALID) | type 9; IDX | LPIG(1).
    expect(ring(h, from).filter((d) => type(d) === 9)).toEqual([[(BigInt(PASID) << 32n) | (sid << 16n) | 0x1019n, 0x2cn, 0n, 0n]]);
  });
});

describe("PASID entries", () => {
  it("second level only sets SRE, RID_PASID included; supervisor first level would set SRE without WPE", async () => {
    const { secondLevelEntry, firstLevelEntry } = await import("./pasid-entry.js");
    const sl = secondLevelEntry({ did: 3, slptr: 0x5000, aw: 2, pageWalkSnoop: false });
    // val[0] = SLPTPTR | AW 2<<2 | PGTT 2<<6 | P; val[1] = DID 3; val[2] = SRE.
    expect([...sl.subarray(0, 6)]).toEqual([0x5089, 0, 3, 0, 1, 0]);
    const fl = firstLevelEntry({ did: 1, flptr: 0x7000, levels: 4, aw: 2, supervisor: true, pageWalkSnoop: false });
    // val[2] = FLPTR | SRE; no WPE (bit 132 = qword 2 bit 4).
    expect([fl[4], fl[5]]).toEqual([0x7001, 0]);
  });
});
