import { Errno, type GuestPasid, type HostPasid, Kernel } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { PagePool, SparseMemory, u64 } from "@vsva/pgtable";
import { describe, expect, it } from "vitest";
import { PASID_DIR_ENTRIES, PASID_DIR_ENTRY_BYTES, PASID_TABLE_ENTRIES, PASID_TABLE_ENTRY_BYTES } from "./layout.js";
import { PasidTranslationTable, readPasidTranslations, walkPasidTranslation } from "./translation-table.js";

const g = (n: number) => n as GuestPasid;
const h = (n: number) => n as HostPasid;

function setUp() {
  const kernel = new Kernel();
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 4 << 20 }] });
  const pool = new PagePool(mem, 0x10_0000, 1 << 20);
  const table = new PasidTranslationTable(mem, pool, kernel.faults);
  return { kernel, mem, pool, table };
}

describe("the VMX PASID translation structure in memory", () => {
  it("fills one 4 KiB page per directory and per table (512 x 8 B, 1024 x 4 B)", () => {
    expect(PASID_DIR_ENTRIES * PASID_DIR_ENTRY_BYTES).toBe(4096);
    expect(PASID_TABLE_ENTRIES * PASID_TABLE_ENTRY_BYTES).toBe(4096);
  });

  it("puts guest PASID bit 19 in the high directory, bits 18:10 as directory index, bits 9:0 as table index", () => {
    const { mem, table } = setUp();
    // 0x8_0C05: bit 19 set, bits 18:10 = 3, bits 9:0 = 5.
    table.install(g(0x8_0c05), h(0x1234));
    const de = u64();
    expect(mem.read64(table.dirs.high + 3 * 8, de)).toBe(true);
    expect(de.lo & 1).toBe(1); // present
    const tablePa = (de.lo & ~0xfff) >>> 0;
    expect(tablePa % 4096).toBe(0);
    expect(de.hi).toBe(0);
    // Entry 5 of that table: valid (bit 31) and host PASID in 19:0.
    expect(mem.read32(tablePa + 5 * 4)).toBe((0x8000_0000 | 0x1234) >>> 0);
    // Nothing in the low directory.
    for (let i = 0; i < 512; i++) {
      expect(mem.read64(table.dirs.low + i * 8, de)).toBe(true);
      expect(de.lo | de.hi).toBe(0);
    }
  });

  it("walks as the CPU does: two reads when translated, one when the directory entry is absent", () => {
    const { mem, table } = setUp();
    table.install(g(7), h(99));
    expect(walkPasidTranslation(mem, table.dirs, 7)).toEqual({ ok: true, hostPasid: 99, reads: 2 });
    expect(walkPasidTranslation(mem, table.dirs, 8)).toEqual({ ok: false, miss: "entry-not-valid", reads: 2 });
    expect(walkPasidTranslation(mem, table.dirs, 7 + 1024)).toEqual({ ok: false, miss: "dir-not-present", reads: 1 });
    const before = mem.stats.reads;
    table.walk(7);
    expect(mem.stats.reads - before).toBe(2);
  });

  it("treats a reserved bit in either entry as a translation failure", () => {
    const { mem, table } = setUp();
    table.install(g(1), h(2));
    const de = u64();
    mem.read64(table.dirs.low, de);
    const tablePa = (de.lo & ~0xfff) >>> 0;
    mem.write32(tablePa + 4, 0x8000_0000 | (1 << 20) | 2);
    expect(walkPasidTranslation(mem, table.dirs, 1)).toMatchObject({ ok: false, miss: "entry-reserved" });
    mem.write64(table.dirs.low, de.lo, 1 << 20); // bit 52
    expect(walkPasidTranslation(mem, table.dirs, 1)).toMatchObject({ ok: false, miss: "dir-reserved" });
  });

  it("allocates a table page with the first entry of its range and frees it with the last", () => {
    const { pool, table } = setUp();
    expect(table.pages).toBe(2);
    expect(pool.inUse).toBe(2);
    table.install(g(0), h(10));
    table.install(g(1023), h(11));
    table.install(g(1024), h(12));
    expect(table.pages).toBe(4);
    expect(table.remove(g(0))).toBe(true);
    expect(table.pages).toBe(4);
    expect(table.remove(g(1023))).toBe(true);
    expect(table.pages).toBe(3);
    expect(table.remove(g(1023))).toBe(false);
    expect(table.read()).toEqual(new Map([[1024, 12]]));
    table.destroy();
    expect(pool.inUse).toBe(0);
    expect(table.pages).toBe(0);
    expect(errnoOf(() => table.read())).toBe(Errno.EINVAL);
  });

  it("refuses a second translation for a guest PASID and PASIDs beyond 20 bits, changing nothing", () => {
    const { mem, table } = setUp();
    table.install(g(5), h(6));
    expect(errnoOf(() => table.install(g(5), h(7)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => table.install(g(0x10_0000), h(7)))).toBe(Errno.EINVAL);
    expect(errnoOf(() => table.install(g(8), h(0x10_0000)))).toBe(Errno.EINVAL);
    expect(readPasidTranslations(mem, table.dirs)).toEqual(new Map([[5, 6]]));
  });

  it("leaves nothing held when a page cannot be had", () => {
    const { kernel, pool, table } = setUp();
    kernel.faults.failPoint("kvm_pasid.table_page");
    expect(errnoOf(() => table.install(g(3), h(4)))).toBe(Errno.ENOMEM);
    expect(table.pages).toBe(2);
    expect(pool.inUse).toBe(2);
    expect(table.read().size).toBe(0);
    // A source with one page: the second directory cannot be had, and the first goes back.
    const small = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 1 << 20 }] });
    const empty = new PagePool(small, 0, 4096);
    expect(errnoOf(() => new PasidTranslationTable(small, empty, kernel.faults))).toBe(Errno.ENOMEM);
    expect(empty.inUse).toBe(0);
  });
});
