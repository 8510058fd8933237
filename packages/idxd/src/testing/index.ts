import { asHostPasid } from "@vsva/kernel";
import type { DmaRequest, IommuPort, TranslateResult } from "@vsva/iommu-hw";
import type { IommuCore, IommuDevice } from "@vsva/iommu-core";
import { MockIommu } from "@vsva/iommu-core/testing";
import { Board, type Platform, type PlatformContext } from "@vsva/machine";

/** What the SVA mock platform's unit resolves PASIDs through, filled in once the board's core exists. */
interface Resolver {
  core: IommuCore | null;
  readonly devices: Map<number, IommuDevice>;
}

const REFUSED: TranslateResult = { ok: false, reason: 0, name: "no SVA binding", recoverable: false };

/**
 * A board whose IOMMU is the core's mock driver and whose unit translates a
 * PASID-tagged request by the CPU page tables of the mm bound at that PASID
 * (what a first-level SVA walk gives). Faults are never recoverable here (no
 * page requests): block-on-fault is tested over the real VT-d unit in the
 * harness. Enough for the driver's own tests without a driver package below.
 */
export function svaMockBoard(): Board {
  const r: Resolver = { core: null, devices: new Map() };
  const port: IommuPort = {
    translate: (req: DmaRequest): TranslateResult => {
      const dev = r.devices.get(req.sid);
      if (r.core === null || dev === undefined || req.pasid === undefined) return REFUSED;
      const mm = r.core.sva.faultTarget(dev, asHostPasid(req.pasid));
      const m = mm?.lookup(req.addr) ?? null;
      if (m === null || (req.write && !m.prot.write)) return { ok: false, reason: 1, name: "not present", recoverable: false };
      return { ok: true, pa: m.pa + (req.addr - m.va), size: m.size, read: m.prot.read, write: m.prot.write, exec: m.prot.exec, privOnly: !m.prot.user };
    },
    pageRequest: () => false,
  };
  const platform = (ctx: PlatformContext): Platform => ({
    name: "sva-mock",
    iommuName: "mock0",
    port,
    ops: new MockIommu({ faults: ctx.kernel.faults, pages: ctx.pages }),
    mmArch: "x86-64",
    attachEndpoint: () => undefined,
    cacheViolations: () => [],
    isReportedFault: () => false,
    shutdown: () => undefined,
  });
  const board = new Board({ platform });
  r.core = board.core;
  const probe = board.probe.bind(board);
  board.probe = (ep, name, pasidWidth) => {
    const dev = probe(ep, name, pasidWidth);
    r.devices.set(ep.sid, dev);
    return dev;
  };
  return board;
}
