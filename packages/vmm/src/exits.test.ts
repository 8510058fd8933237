import { describe, expect, it } from "vitest";
import { Prot, type SvaBond } from "@vsva/iommu-core";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const VA = 0x7000_0000_0000;

/** Exits of each of `n` guest binds, then of each unbind, on a fresh VM; with the guest driver's queue submissions per bind. */
function exitsOf(n: number): { binds: number[]; unbinds: number[]; submissions: number[] } {
  const h = vmTestHost();
  const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: 4 << 20, device: h.device });
  const g = new Guest(vm);
  const stats = g.viommu.stats;
  const qi = g.driver.hw.qi.stats;
  const bonds: SvaBond[] = [];
  const binds: number[] = [];
  const submissions: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = g.newProcess(`P${i}`);
    p.mmap(VA, PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const [e, s] = [stats.exits, qi.submissions];
    bonds.push(g.core.sva.bindDevice(g.device, p));
    binds.push(stats.exits - e);
    submissions.push(qi.submissions - s);
  }
  const unbinds = bonds.map((b) => {
    const e = stats.exits;
    g.core.sva.unbindDevice(b);
    return stats.exits - e;
  });
  expect(stats.binds).toBe(n);
  expect(stats.unbinds).toBe(n);
  vm.kill();
  return { binds, unbinds, submissions };
}

describe("VM exits of the guest's SVA binds and unbinds", () => {
  it("a bind after the first costs the PASID's virtual command and one queue submission (the PASID-cache and IOTLB flush batched): 2 exits; the first one more, for the context-cache flush that turns on PASID", () => {
    const { binds, submissions } = exitsOf(4);
    expect(binds).toEqual([3, 2, 2, 2]);
    // One exit per submission: the submissions are the exits beyond the virtual command.
    expect(submissions).toEqual(binds.map((x) => x - 1));
  });

  it("an unbind costs the teardown's submission and the page-request drain's: 2 exits, no virtual command (the PASID stays with the mm)", () => {
    expect(exitsOf(3).unbinds).toEqual([2, 2, 2]);
  });

  it("the counts are the same on two fresh VMs", () => {
    expect(exitsOf(3)).toEqual(exitsOf(3));
  });
});
