import { describe, expect, it } from "vitest";
import { SparseMemory } from "@vsva/pgtable";
import { decodeCd, decodeSte } from "./config.js";
import { resolveSmmuConfig } from "./options.js";

/**
 * STEs and CDs as Linux v5.10's arm_smmu_write_strtab_ent() and
 * arm_smmu_write_ctx_desc() write them, composed by hand from the
 * STRTAB_STE_* / CTXDESC_CD_* macros of arm-smmu-v3.h and written out as
 * literal dwords; the unit's decoder must accept each as Linux meant it.
 */

const cfg = resolveSmmuConfig({ mem: new SparseMemory({ addrBits: 48, regions: [{ base: 0, size: 1 << 24 }] }) });

/** A structure from its 64-bit dwords, as it lies in memory. */
function dwords(...qs: bigint[]): Uint32Array {
  const v = new Uint32Array(16);
  qs.forEach((q, i) => {
    v[2 * i] = Number(q & 0xffff_ffffn);
    v[2 * i + 1] = Number(q >> 32n);
  });
  return v;
}

describe("STEs from arm_smmu_write_strtab_ent()", () => {
  it("bypass: V | CFG_BYPASS, dword 1 SHCFG = incoming", () => {
    const s = decodeSte(dwords(0x9n, 1n << 44n), cfg);
    expect([s.fault, s.kind, s.eats]).toEqual([null, "bypass", 0]);
  });

  it("abort (arm_smmu_init_bypass_stes() with disable_bypass): V | CFG_ABORT, SHCFG = incoming", () => {
    const s = decodeSte(dwords(0x1n, 1n << 44n), cfg);
    expect([s.fault, s.kind]).toEqual([null, "abort"]);
  });

  it("stage 2: VMID, VTCR, S2PTW | S2AA64 | S2R in dword 2, S2TTB in dword 3", () => {
    // VTCR = T0SZ 25 | SL0 1 << 6 | IRGN0 1 << 8 | ORGN0 1 << 10 | SH0 3 << 12 | TG 0 | PS 5 << 16.
    const vtcr = 0x5_3559n;
    const dw2 = 5n | (vtcr << 32n) | (1n << 51n) | (1n << 54n) | (1n << 58n);
    const s = decodeSte(dwords(0xdn, 0n, dw2, 0x10_0000n), cfg);
    expect([s.fault, s.kind, s.vmid, s.s2r]).toEqual([null, "s2", 5, true]);
    expect(s.s2).toMatchObject({ ttb: 0x10_0000, inputBits: 39, startLevel: 1, ptw: true });
  });
});

describe("CDs from arm_smmu_write_ctx_desc()", () => {
  // TCR: T0SZ 16 | IRGN0 1 << 8 | ORGN0 1 << 10 | SH0 3 << 12 | EPD1 << 30 | IPS 5 << 32;
  // then R | A | AA64 | ASID 3 << 48 | V, and ASET when the CD has no mm.
  const tcr = 16n | (1n << 8n) | (1n << 10n) | (3n << 12n) | (1n << 30n) | (5n << 32n);
  const base = tcr | (1n << 31n) | (1n << 41n) | (1n << 45n) | (1n << 46n) | (3n << 48n);

  it("a domain's CD: ASET set, MAIR 0xf404ff44 in dword 3 (io-pgtable-arm)", () => {
    const c = decodeCd(dwords(base | (1n << 47n), 0x20_0000n, 0n, 0xf404_ff44n), cfg);
    expect([c.fault, c.asid, c.aset, c.record, c.ttb0?.ttb, c.ttb1]).toEqual([null, 3, true, true, 0x20_0000, null]);
  });

  it("an SVA CD (with an mm): ASET clear", () => {
    const c = decodeCd(dwords(base, 0x20_0000n, 0n, 0xf404_ff44n), cfg);
    expect([c.fault, c.aset]).toEqual([null, false]);
  });
});
