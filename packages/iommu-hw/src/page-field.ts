/**
 * Address fields that hold bits 63:12 of a 64-bit address in 52 bits: VT-d
 * fault records (FI), page request descriptors and invalidation descriptors
 * (ADDR), SMMUv3 PRI queue entries (ADDR). Both directions live here so that
 * the units that encode and the drivers that decode agree on the one subtle
 * point: an upper-half address (negative here, sign-extended) keeps its
 * two's-complement bits in the field and comes back negative.
 */
const PAGE = 4096;
const SPAN = 2 ** 52;

/**
 * The field value for `addr`. Anything that is not a finite number becomes 0
 * rather than an exception (a device's garbage must not crash the unit).
 */
export function pageField(addr: number): number {
  if (!Number.isFinite(addr)) return 0;
  const pfn = Math.floor(addr / PAGE);
  return ((pfn % SPAN) + SPAN) % SPAN;
}

/** The signed page number a field value (0 ≤ field < 2^52) names: bit 51 set is the upper half. */
export function signedPageNumber(field: number): number {
  return field >= SPAN / 2 ? field - SPAN : field;
}

/** The page address a field value names (the inverse of {@link pageField} on page-aligned addresses). */
export function addrOfPageField(field: number): number {
  return signedPageNumber(field) * PAGE;
}
