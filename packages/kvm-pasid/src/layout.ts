import { defineLayout } from "@vsva/pgtable";

/**
 * The architectural pieces of guest ENQCMD: the IA32_PASID MSR, the VMX PASID
 * translation structures the CPU walks in VMX non-root operation, and the VMCS
 * fields and VM-exit reasons that go with them.
 *
 * Sources. IA32_PASID (MSR 0xD93; PASID in 19:0, VALID in 31) is Linux's
 * `arch/x86/include/asm/msr-index.h` (MSR_IA32_PASID, MSR_IA32_PASID_VALID)
 * and `Documentation/x86/sva.rst`; ENQCMD's #GP when the MSR is not valid is
 * the Intel SDM Vol. 2A ENQCMD page. The VMCS encodings 0x2038/0x203A ("low"
 * and "high PASID directory address", 64-bit VM-execution controls) are those
 * of public hypervisors' VMCS-encoding headers (the field-encoding appendix of
 * the Intel SDM Vol. 3 lists the 64-bit control fields); the basic exit
 * reasons 72 and 73 (ENQCMD / ENQCMDS PASID translation failure) are in the
 * SDM Vol. 3 Appendix C and in intel/tdx-module's
 * `src/common/x86_defs/vmcs_defs.h`.
 *
 * Unverified: The translation structure below — guest PASID bit 19 picks the low or
 * high PASID directory; a directory is one 4 KiB page of 512 8-byte entries
 * indexed by guest PASID 18:10 (bit 0 present, 51:12 the HPA of a table); a
 * table is one 4 KiB page of 1024 4-byte entries indexed by guest PASID 9:0
 * (bit 31 valid, 19:0 the host PASID) — is the one described in the Intel
 * Architecture Instruction Set Extensions and Future Features Programming
 * Reference (Intel document 319433, 2020 editions), in its chapter on VMX
 * PASID translation, as recalled, not re-read against the document. It is
 * the layout we model because it is the only one ever published for this VMCS
 * field pair; 2 directories x 512 x 1024 covers the 2^20 guest PASIDs exactly.
 * Which bits are reserved, and whether the CPU checks them, is not known to
 * us: we treat a set reserved bit as a translation failure, the conservative
 * choice (the guest cannot set these bits; only KVM writes the structure).
 */

/** `MSR_IA32_PASID`. */
export const MSR_IA32_PASID = 0xd93;

/**
 * IA32_PASID. Bits 30:20 and 63:32 are reserved; a WRMSR that sets one takes
 * #GP (unverified: the SDM lists the MSR as 64 bits with only PASID and VALID
 * defined, and reserved MSR bits fault on WRMSR as a rule).
 */
export const Ia32Pasid = defineLayout("IA32_PASID", 64, {
  PASID: [19, 0],
  VALID: [31, 31],
});

/** How the CPU splits a guest PASID to walk the translation structure (unverified, see above). */
export const GuestPasidIndex = defineLayout("guest PASID (translation index)", 32, {
  /** Index into a PASID-translation table (1024 entries). */
  TABLE: [9, 0],
  /** Index into a PASID directory (512 entries). */
  DIR: [18, 10],
  /** 0: the low PASID directory (VMCS 0x2038); 1: the high one (VMCS 0x203A). */
  HIGH: [19, 19],
});

/** A PASID-directory entry: present bit and the HPA of a PASID-translation table (unverified). */
export const VmxPasidDirEntry = defineLayout("VMX PASID-directory entry", 64, {
  P: [0, 0],
  TABLE: [51, 12],
});

/** A PASID-translation-table entry: valid bit and the host PASID (unverified). */
export const VmxPasidTableEntry = defineLayout("VMX PASID-translation entry", 32, {
  HPASID: [19, 0],
  V: [31, 31],
});

export const PASID_DIR_ENTRY_BYTES = VmxPasidDirEntry.bits / 8;
export const PASID_TABLE_ENTRY_BYTES = VmxPasidTableEntry.bits / 8;
/** 512 directory entries per 4 KiB page (guest PASID bits 18:10). */
export const PASID_DIR_ENTRIES = 2 ** (GuestPasidIndex.spec("DIR").msb - GuestPasidIndex.spec("DIR").lsb + 1);
/** 1024 translation entries per 4 KiB page (guest PASID bits 9:0). */
export const PASID_TABLE_ENTRIES = 2 ** (GuestPasidIndex.spec("TABLE").msb + 1);
/** The largest guest PASID the structure translates (20 bits). */
export const GUEST_PASID_MAX = 2 ** (GuestPasidIndex.spec("HIGH").msb + 1) - 1;

/** VMCS field encodings of the two PASID directories (64-bit VM-execution controls). */
export const VmcsField = { LOW_PASID_DIR_ADDR: 0x2038, HIGH_PASID_DIR_ADDR: 0x203a } as const;
export type VmcsField = (typeof VmcsField)[keyof typeof VmcsField];

/** Basic VM-exit reasons of a failed PASID translation. */
export const VmExitReason = { ENQCMD_PASID_TRANSLATION_FAILURE: 72, ENQCMDS_PASID_TRANSLATION_FAILURE: 73 } as const;
export type VmExitReason = (typeof VmExitReason)[keyof typeof VmExitReason];

/** #GP, vector 13, error code 0 as ENQCMD and WRMSR raise it. */
export const GP_VECTOR = 13;
