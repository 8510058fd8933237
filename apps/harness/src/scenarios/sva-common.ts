import { type Mm, Prot, type SvaBond } from "@vsva/iommu-core";
import type { DeviceSlot, Host } from "../world/host.js";
import type { StepContext } from "../world/host-scenario.js";
import type { AddressResolver } from "../world/invariants.js";

/** What the CPU's page tables of `mm` say `va` maps to: the truth SVA DMA is held to. */
export function mmResolver(mm: Mm): AddressResolver {
  return (va) => {
    const m = mm.lookup(va);
    return m === null ? null : m.pa + (va - m.va);
  };
}

/** Plugs in dsa0 at a seeded slot 00:dd.0 (probed by the IOMMU driver) and has its driver enable SVA. */
export function plugInSvaDevice(ctx: StepContext, label?: string): DeviceSlot {
  const devNo = ctx.choose.int("dsa0's slot", 1, 31, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
  const at = `00:${devNo.toString(16).padStart(2, "0")}.0`;
  return ctx.step(label ?? `plug in dsa0 at ${at} (probed by the IOMMU driver); its driver enables SVA`, () => {
    const slot = ctx.host.addDevice("dsa0", devNo);
    ctx.host.enableSva(slot);
    return slot;
  });
}

export interface BoundProcess {
  readonly mm: Mm;
  readonly bond: SvaBond;
  readonly buf: number;
  readonly pasid: number;
}

export interface BindOptions {
  readonly size: number;
  /** Fault every page in at mmap (MAP_POPULATE); otherwise pages come on demand. */
  readonly populate: boolean;
  readonly stop?: () => void;
  readonly label: string;
}

/**
 * Process P maps a buffer and its driver binds P's mm to the device: the
 * PASID's address space is declared to the invariant checker, and the
 * driver's unbind is deferred for every exit path.
 */
export function bindProcess(ctx: StepContext, slot: DeviceSlot, o: BindOptions): BoundProcess {
  const h = ctx.host;
  // Anywhere in the lower 64 TiB, which every platform's user address space covers, 64 KiB aligned.
  const va = ctx.choose.int("P's buffer", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
  return ctx.step(o.label, () => {
    const mm = h.newMm("P");
    const buf = mm.mmap(va, o.size, Prot.READ | Prot.WRITE, { populate: o.populate });
    const stop = o.stop;
    const bond = h.core.sva.bindDevice(slot.dev, mm, stop === undefined ? {} : { stop: () => stop() });
    ctx.bindSpace(bond.pasid, mmResolver(mm));
    ctx.defer("P's driver unbinds (if the bond is still there)", () => {
      if (bond.state === "bound") h.core.sva.unbindDevice(bond);
    });
    return { mm, bond, buf, pasid: bond.pasid };
  });
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
