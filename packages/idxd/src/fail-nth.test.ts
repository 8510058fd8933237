import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { isKernelError } from "@vsva/kernel";
import { FaultCoverage, sourceFaultPoints } from "@vsva/kernel/testing";
import { IOASID_FAULT_POINTS } from "@vsva/ioasid";
import { IOMMU_CORE_FAULT_POINTS, Prot } from "@vsva/iommu-core";
import { MOCK_FAULT_POINTS } from "@vsva/iommu-core/testing";
import { DescFlag, DsaOpcode, DsaStatus, encodeDescriptor } from "@vsva/dsa";
import { IDXD_FAULT_POINTS, type Idxd, type IdxdUserFile, UserThread, openUserWq, plugIdxd } from "./index.js";
import { svaMockBoard } from "./testing/index.js";

const BUF = 0x6000_0000;

/**
 * Probe, a process opening a dedicated and a shared user WQ, one MEMMOVE
 * through each, close, remove — with the nth fallible step failed. Returns
 * where it stopped and what is left.
 */
function run(nth: number | null) {
  const board = svaMockBoard();
  const faults = board.kernel.faults;
  const mm = board.newMm("P");
  mm.mmap(BUF, 0x4000, Prot.READ | Prot.WRITE, { populate: true });
  const thread = new UserThread(mm);
  if (nth !== null) faults.failNth(nth);
  let idxd: Idxd | null = null;
  const files: IdxdUserFile[] = [];
  let failed: number | null = null;
  let completed = 0;
  try {
    idxd = plugIdxd(board, { dev: 4, config: { wqs: [{ mode: "dedicated", size: 4, type: "user" }, { mode: "shared", size: 4, type: "user" }] } });
    for (const wq of [0, 1]) {
      const f = openUserWq(idxd, wq, thread);
      files.push(f);
      const cr = BUF + 0x3000 + wq * 32;
      f.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: cr, src: BUF, dst: BUF + 0x1000, size: 0x800 }));
      if (f.readCompletion(cr).status === DsaStatus.SUCCESS) completed++;
    }
  } catch (e) {
    if (!isKernelError(e)) throw e;
    failed = e.errno;
  }
  const injected = [...faults.injected];
  faults.disarm();
  // What is left right after the failure, before any cleanup.
  const after = {
    bonds: board.core.sva.liveBonds,
    files: files.length,
    devices: board.core.devices.size,
    wq0Pasid: idxd?.wqs[0]?.pasid ?? null,
  };
  for (const f of files) f.close();
  idxd?.remove();
  const left = { bonds: board.core.sva.liveBonds, sva: idxd?.iommuDev.hasFeature("sva") ?? false };
  return { failed, injected, after, left, completed, faults, mm };
}

describe("fail-nth sweep over probe, open, submit, close and remove", () => {
  it("every failure is an errno with nothing half-done: no bond without a file, no PASID in a WQ nobody opened; teardown leaves nothing", () => {
    const clean = run(null);
    expect(clean.failed).toBeNull();
    expect(clean.completed).toBe(2);
    const cov = new FaultCoverage(IDXD_FAULT_POINTS, [IOMMU_CORE_FAULT_POINTS, MOCK_FAULT_POINTS, IOASID_FAULT_POINTS]);
    let n = 1;
    for (; n < 200; n++) {
      const r = run(n);
      cov.record(r.faults);
      if (r.injected.length === 0) {
        expect(r.failed).toBeNull();
        break;
      }
      expect(r.failed).not.toBeNull();
      // Each open file holds exactly one bond; a failed probe leaves no device in the core.
      expect({ n, bonds: r.after.bonds }).toEqual({ n, bonds: r.after.files });
      if (r.after.files === 0) expect({ n, pasid: r.after.wq0Pasid }).toEqual({ n, pasid: null });
      expect({ n, left: r.left }).toEqual({ n, left: { bonds: 0, sva: false } });
    }
    expect(n).toBeLessThan(200);
    expect(n).toBeGreaterThan(3);
    expect(cov.missing()).toEqual([]);
    expect(cov.undeclared()).toEqual([]);
  });

  it("declares every point its code injects by name", () => {
    const named = sourceFaultPoints(fileURLToPath(new URL(".", import.meta.url)));
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((p) => !IDXD_FAULT_POINTS.has(p))).toEqual([]);
  });
});
