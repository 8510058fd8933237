/**
 * Branded ID types. Each is a number at run time, but a host PASID, a guest
 * PASID, a domain ID, a VM ID and a PCIe source ID are different types, so
 * passing a guest PASID where a host PASID belongs does not compile.
 */
declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** An ID from the IOASID namespace of the kernel that allocated it. */
export type Ioasid = Brand<number, "Ioasid">;
/** A set-private ID (SPID): an alias of an IOASID, unique within its set. */
export type Spid = Brand<number, "Spid">;
/** A PASID in the host's namespace, what the physical IOMMU sees. */
export type HostPasid = Brand<number, "HostPasid">;
/** A PASID in a guest's namespace, what the guest kernel allocated and programs. */
export type GuestPasid = Brand<number, "GuestPasid">;
/** An IOMMU domain identifier (VT-d DID, SMMU ASID/VMID owner). */
export type DomainId = Brand<number, "DomainId">;
export type VmId = Brand<number, "VmId">;
/** PCIe requester ID: bus[15:8] device[7:3] function[2:0]. */
export type SourceId = Brand<number, "SourceId">;

function checkedU32(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new RangeError(`${what} must be a u32, got ${n}`);
  return n;
}

export const asIoasid = (n: number): Ioasid => checkedU32(n, "IOASID") as Ioasid;
export const asSpid = (n: number): Spid => checkedU32(n, "SPID") as Spid;
export const asHostPasid = (n: number): HostPasid => checkedU32(n, "host PASID") as HostPasid;
export const asGuestPasid = (n: number): GuestPasid => checkedU32(n, "guest PASID") as GuestPasid;
export const asDomainId = (n: number): DomainId => checkedU32(n, "domain ID") as DomainId;
export const asVmId = (n: number): VmId => checkedU32(n, "VM ID") as VmId;

export function sourceId(bus: number, dev: number, fn: number): SourceId {
  if (bus < 0 || bus > 255 || dev < 0 || dev > 31 || fn < 0 || fn > 7) {
    throw new RangeError(`bad BDF ${bus}:${dev}.${fn}`);
  }
  return ((bus << 8) | (dev << 3) | fn) as SourceId;
}

/** `"00:02.0"` style. */
export function formatBdf(sid: SourceId): string {
  const h = (v: number, w: number) => v.toString(16).padStart(w, "0");
  return `${h(sid >> 8, 2)}:${h((sid >> 3) & 0x1f, 2)}.${sid & 7}`;
}
