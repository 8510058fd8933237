import type { Mm } from "@vsva/iommu-core";
import type { DeviceSlot, Host } from "../world/host.js";
import type { AddressResolver } from "../world/invariants.js";

/** What the CPU's page tables of `mm` say `va` maps to: the truth SVA DMA is held to. */
export function mmResolver(mm: Mm): AddressResolver {
  return (va) => {
    const m = mm.lookup(va);
    return m === null ? null : m.pa + (va - m.va);
  };
}

/**
 * The device driver programs its DMA engine, kicks it and waits for the
 * completion: a DMA that met a missing page waits for its page request to be
 * answered (the host runs its deferred work meanwhile). Returns the result code.
 */
export function dmaWrite(host: Host, slot: DeviceSlot, pasid: number, addr: number, bytes: Uint8Array): string {
  slot.ep.dma.setProgram({ pasid, addr, length: bytes.length, direction: "write", pattern: bytes });
  return complete(host, slot, slot.ep.dma.trigger());
}

export function dmaRead(host: Host, slot: DeviceSlot, pasid: number, addr: number, into: Uint8Array): string {
  slot.ep.dma.setProgram({ pasid, addr, length: into.length, direction: "read", buffer: into });
  return complete(host, slot, slot.ep.dma.trigger());
}

/** Kicks the DMA without waiting: the first result the engine reports. */
export function dmaWriteNoWait(slot: DeviceSlot, pasid: number, addr: number, bytes: Uint8Array): string {
  slot.ep.dma.setProgram({ pasid, addr, length: bytes.length, direction: "write", pattern: bytes });
  return slot.ep.dma.trigger();
}

function complete(host: Host, slot: DeviceSlot, first: string): string {
  if (first !== "pageRequestPending") return first;
  host.settle();
  return slot.ep.dma.result;
}

export const PATTERN = Uint8Array.of(0x76, 0x53, 0x56, 0x41); // "vSVA"

export function hexBytes(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}
