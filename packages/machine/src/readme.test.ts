import { expect, it } from "vitest";
import { Kernel, TraceRecorder } from "@vsva/kernel";
import { SparseMemory } from "@vsva/pgtable";
import { GuestMemoryView } from "./index.js";

// The first example of README.md, line for line (imports from "./index.js" instead of "@vsva/machine").
it("runs the README example", () => {
  const host = new Kernel();                                   // the host's kernel: the system clock
  const vm1 = new Kernel({ system: host, context: "vm1" });    // a guest's kernel on the same timeline
  const ram = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 64 << 20 }] });
  const guest = new GuestMemoryView({ host: ram, addrBits: 39 }); // 39-bit GPA space, whatever RAM it has
  guest.map(0x0000, 0x30_0000, 0x1000);                        // GPA page 0 -> a host page
  guest.map(0x1000, 0x10_0000, 0x1000);                        // GPA page 1 -> an unrelated one
  guest.write32(0xffe, 0xdead_beef);                           // crosses the guest page boundary
  const hpas = guest.pin(0, 0x2000);                           // VFIO MAP_DMA: [0x300000, 0x100000]
  const timeline = new TraceRecorder(host.trace, { system: true });
  vm1.log.warn("vtd", "guest: DMAR fault", "IOMMU");           // stamped context "vm1"
  expect([ram.read16(0x30_0ffe), ram.read16(0x10_0000)]).toEqual([0xbeef, 0xdead]);
  expect(hpas).toEqual([0x30_0000, 0x10_0000]);
  expect(timeline.events.map((e) => e.context)).toEqual(["vm1"]);
});
