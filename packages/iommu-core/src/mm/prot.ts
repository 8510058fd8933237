/** `PROT_*` of mmap(2) (include/uapi/asm-generic/mman-common.h). */
export const Prot = {
  NONE: 0,
  READ: 1 << 0,
  WRITE: 1 << 1,
  EXEC: 1 << 2,
} as const;
export const PROT_KNOWN = Prot.READ | Prot.WRITE | Prot.EXEC;

/** What a fault asks for: a read unless `write`; `exec` for an instruction fetch. */
export interface MmAccess {
  readonly write?: boolean;
  readonly exec?: boolean;
}

/**
 * Whether a VMA with `prot` allows `access`, as x86's `access_error()`
 * decides (arch/x86/mm/fault.c): a write needs PROT_WRITE; an instruction
 * fetch needs PROT_EXEC; a read is allowed by any of READ, WRITE or EXEC,
 * because x86 page tables cannot express write-only or execute-only pages.
 */
export function vmaAllows(prot: number, access: MmAccess): boolean {
  if (access.write === true) return (prot & Prot.WRITE) !== 0;
  if (access.exec === true) return (prot & Prot.EXEC) !== 0;
  return (prot & PROT_KNOWN) !== 0;
}

/** True when going from `from` to `to` takes away a permission a PTE of `from` grants (so caches must be flushed). */
export function protDowngrades(from: number, to: number): boolean {
  if ((to & PROT_KNOWN) === 0) return (from & PROT_KNOWN) !== 0;
  return ((from & ~to) & (Prot.WRITE | Prot.EXEC)) !== 0;
}

export function formatProt(prot: number): string {
  return `${prot & Prot.READ ? "r" : "-"}${prot & Prot.WRITE ? "w" : "-"}${prot & Prot.EXEC ? "x" : "-"}`;
}
