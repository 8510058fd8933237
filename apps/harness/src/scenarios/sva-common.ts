import type { Mm } from "@vsva/iommu-core";
import type { DeviceSlot } from "../world/host.js";
import type { AddressResolver } from "../world/invariants.js";

/** What the CPU's page tables of `mm` say `va` maps to: the truth SVA DMA is held to. */
export function mmResolver(mm: Mm): AddressResolver {
  return (va) => {
    const m = mm.lookup(va);
    return m === null ? null : m.pa + (va - m.va);
  };
}

/** The device driver programs its DMA engine and kicks it; returns the engine's result code. */
export function dmaWrite(slot: DeviceSlot, pasid: number, addr: number, bytes: Uint8Array): string {
  slot.ep.dma.setProgram({ pasid, addr, length: bytes.length, direction: "write", pattern: bytes });
  return slot.ep.dma.trigger();
}

export function dmaRead(slot: DeviceSlot, pasid: number, addr: number, into: Uint8Array): string {
  slot.ep.dma.setProgram({ pasid, addr, length: into.length, direction: "read", buffer: into });
  return slot.ep.dma.trigger();
}

export const PATTERN = Uint8Array.of(0x76, 0x53, 0x56, 0x41); // "vSVA"

export function hexBytes(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}
