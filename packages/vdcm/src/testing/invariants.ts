import type { Ioasid } from "@vsva/kernel";
import type { IoasidCore } from "@vsva/ioasid";
import type { HostWq } from "../host-wq.js";
import type { Vdcm } from "../vdcm.js";

/**
 * What must hold whenever the VDCM is at rest, as violations (empty: all
 * good): every dedicated hardware WQ lent to an mdev holds exactly the host
 * PASID the VDCM believes it programmed (nothing when it believes nothing),
 * and a WQ holding a guest's host PASID holds it with the ID still allocated
 * and referenced: no hardware WQ holds a host PASID whose reference was
 * dropped, so the PASID cannot have reached another guest on this device.
 */
export function vdcmViolations(vdcm: Vdcm, ioasid: IoasidCore, wqs: readonly HostWq[]): string[] {
  const out: string[] = [];
  for (const w of wqs) {
    if (w.mode !== "dedicated") continue;
    const m = vdcm.mdevs.find((x) => x.hostWq === w);
    if (m === undefined) continue;
    const want = m.programmed?.hpasid ?? null;
    if (w.pasid !== want) out.push(`WQ ${w.id} (${m.name}) holds PASID ${String(w.pasid)}, the VDCM programmed ${String(want)}`);
  }
  for (const h of vdcm.heldPasids()) {
    if (h.set === null) continue;
    const id = h.hpasid as number as Ioasid;
    const state = ioasid.state(id);
    const refs = ioasid.refcount(id);
    if (state === "IDLE" || refs < 1) out.push(`${h.mdev.name}'s WQ holds host PASID ${h.hpasid}, which is ${state} with ${refs} references`);
    const info = ioasid.info(id);
    if (info !== null && info.set !== h.set) out.push(`${h.mdev.name}'s WQ holds host PASID ${h.hpasid} of another set`);
  }
  return out;
}
