import { sourceId } from "@vsva/kernel";
import { expect, it } from "vitest";
import {
  ContextEntry, GcmdReg, PagePool, PasidDirEntry, PasidEntry, Pgtt, RegOffset, RootEntry, RtaddrReg,
  SparseMemory, TableWriter, VtdUnit, joinDwords, pasidDirIndex, pasidTableIndex, x86Format,
} from "./index.js";

// The example of README.md, line for line (imports from "./index.js" instead of "@vsva/iommu-hw").
it("runs the README example", () => {
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 64 << 20 }] });
  const pool = new PagePool(mem, 0x10_0000, 1 << 20);
  const iommu = new VtdUnit({ mem });
  const [dev, pasid, did] = [sourceId(0, 2, 0), 5, 1];
  // A first-level (x86-64, 4-level) table: VA 0x7f00_0000_0000 -> PA 0x20_0000, user, writable.
  const fl = new TableWriter(mem, x86Format({ levels: 4 }), { alloc: pool.alloc });
  fl.map(0x7f00_0000_0000, 0x20_0000, 4096, { write: true });
  // Root entry (bus) -> context entry (devfn) -> PASID directory -> PASID-table entry. Pointers are page numbers.
  const [root, ctx, dir, table] = [pool.alloc() ?? 0, pool.alloc() ?? 0, pool.alloc() ?? 0, pool.alloc() ?? 0];
  RootEntry.write(mem, root + 16 * (dev >> 8), RootEntry.encode({ LP: 1, LCTP: ctx / 4096 }));
  ContextEntry.write(mem, ctx + 32 * (dev & 0x7f), ContextEntry.encode({ P: 1, PASIDE: 1, PASIDDIRPTR: dir / 4096 }));
  PasidDirEntry.write(mem, dir + 8 * pasidDirIndex(pasid), PasidDirEntry.encode({ P: 1, SMPTBLPTR: table / 4096 }));
  PasidEntry.write(mem, table + 64 * pasidTableIndex(pasid), PasidEntry.encode({ P: 1, PGTT: Pgtt.FIRST_LEVEL, DID: did, NXE: 1, FLPTPTR: fl.root / 4096 }));
  // The driver's part: RTADDR (TTM=01b, scalable mode), GCMD.SRTP, then GCMD.TE.
  const [lo, hi] = RtaddrReg.encode({ RTA: root / 4096, TTM: 1 });
  iommu.mmioWrite64(RegOffset.RTADDR, joinDwords(lo ?? 0, hi ?? 0));
  iommu.mmioWrite32(RegOffset.GCMD, GcmdReg.bit("SRTP").mask);
  iommu.mmioWrite32(RegOffset.GCMD, GcmdReg.bit("TE").mask);
  // A DMA write with PASID 5, as the endpoint would send it.
  const r = iommu.translate({ sid: dev, pasid, addr: 0x7f00_0000_0123, write: true });
  expect(r).toMatchObject({ ok: true, pa: 0x20_0123, size: 4096 });
});
