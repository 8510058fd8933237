import type { SourceId } from "@vsva/kernel";
import type { DmaRequest, EndpointPort, IommuPort, PageGroupResponse, PageRequest, PageResponseCode, TranslateResult } from "../../iommu-port.js";

/**
 * A test double for the IOMMU above an endpoint: translations come from a
 * table of mappings keyed by (PASID or none, page), not from page tables, so
 * endpoint tests do not depend on the VT-d model being written alongside.
 *
 * Like a real IOMMU it does not tell the device when a mapping changes: tests
 * call {@link FakeIommu.invalidate} to send the device-TLB invalidation, or
 * deliberately do not, to see the stale entry served.
 *
 * For ATS translation requests a not-present page is a recoverable fault
 * (when `priCapable`), and a page without the requested write permission is a
 * successful completion without W, as an ATS translation agent answers.
 * Untranslated requests fault on both, non-recoverably.
 */
export interface FakeMapping {
  readonly pa: number;
  /** Power of two, at least 4 KiB (default 4 KiB); `addr` and `pa` aligned to it. */
  readonly size?: number;
  readonly read?: boolean;
  readonly write?: boolean;
  readonly exec?: boolean;
  readonly privOnly?: boolean;
}

interface Stored {
  readonly base: number;
  readonly pa: number;
  readonly size: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly privOnly: boolean;
}

export const FAKE_FAULT_NOT_PRESENT = 1;
export const FAKE_FAULT_PERMISSION = 2;

const NO_PASID = -1;

export class FakeIommu implements IommuPort {
  /** Every translate() call, in order. */
  readonly translations: DmaRequest[] = [];
  /** Page requests received and not yet answered by {@link respond}. */
  readonly pendingPageRequests: PageRequest[] = [];
  readonly allPageRequests: PageRequest[] = [];
  /** Whether faults on ATS requests are recoverable (the context allows page requests). */
  priCapable = true;
  /** Whether pageRequest() accepts (false: dropped as on queue overflow). */
  acceptPageRequests = true;
  /** Called for each accepted page request, e.g. to map the page and respond at once. */
  onPageRequest: ((req: PageRequest, iommu: FakeIommu) => void) | undefined;
  readonly #maps = new Map<number, Map<number, Stored>>();
  readonly #sizes = new Set<number>([4096]);
  readonly #endpoints = new Map<SourceId, EndpointPort>();

  /** Lets {@link respond} and {@link invalidate} reach the endpoint. */
  connect(ep: EndpointPort): void {
    this.#endpoints.set(ep.sid, ep);
  }

  map(pasid: number | undefined, addr: number, m: FakeMapping): void {
    const size = m.size ?? 4096;
    if (addr % size !== 0 || m.pa % size !== 0) throw new RangeError(`fake map: 0x${addr.toString(16)} -> 0x${m.pa.toString(16)} not aligned to ${size}`);
    this.#sizes.add(size);
    let t = this.#maps.get(pasid ?? NO_PASID);
    if (t === undefined) {
      t = new Map();
      this.#maps.set(pasid ?? NO_PASID, t);
    }
    t.set(addr, {
      base: addr,
      pa: m.pa,
      size,
      read: m.read ?? true,
      write: m.write ?? true,
      exec: m.exec ?? false,
      privOnly: m.privOnly ?? false,
    });
  }

  /** Removes the mapping that starts at `addr`; does NOT invalidate the device TLB. */
  unmap(pasid: number | undefined, addr: number): boolean {
    return this.#maps.get(pasid ?? NO_PASID)?.delete(addr) ?? false;
  }

  /** The mapping covering `addr`, or undefined. */
  lookup(pasid: number | undefined, addr: number): Stored | undefined {
    const t = this.#maps.get(pasid ?? NO_PASID);
    if (t === undefined) return undefined;
    for (const size of this.#sizes) {
      const m = t.get(addr - (addr % size));
      if (m?.size === size) return m;
    }
    return undefined;
  }

  translate(req: DmaRequest): TranslateResult {
    this.translations.push(req);
    const ats = req.ats === true;
    const m = this.lookup(req.pasid, req.addr);
    if (m === undefined) {
      return { ok: false, reason: FAKE_FAULT_NOT_PRESENT, name: "not present", recoverable: ats && this.priCapable };
    }
    const exec = req.exec === true;
    const allowed = (req.write ? m.write : m.read) && (!exec || m.exec) && (req.priv === true || !m.privOnly);
    if (!allowed && !ats) return { ok: false, reason: FAKE_FAULT_PERMISSION, name: "permission", recoverable: false };
    const visible = req.priv === true || !m.privOnly;
    return {
      ok: true,
      pa: m.pa + (req.addr - m.base),
      size: m.size,
      read: visible && m.read,
      write: visible && m.write,
      exec: visible && m.exec,
      privOnly: m.privOnly,
    };
  }

  pageRequest(req: PageRequest): boolean {
    if (!this.acceptPageRequests) return false;
    this.allPageRequests.push(req);
    this.pendingPageRequests.push(req);
    this.onPageRequest?.(req, this);
    return true;
  }

  /** Answers a pending page request (or any group index, to test unexpected responses). */
  respond(req: Pick<PageRequest, "sid" | "groupIndex"> & { readonly pasid?: number }, code: PageResponseCode): void {
    const i = this.pendingPageRequests.findIndex((r) => r.sid === req.sid && r.groupIndex === req.groupIndex);
    if (i >= 0) this.pendingPageRequests.splice(i, 1);
    const resp: PageGroupResponse = { sid: req.sid, groupIndex: req.groupIndex, code, ...(req.pasid === undefined ? {} : { pasid: req.pasid }) };
    this.#endpoints.get(req.sid)?.pageResponse(resp);
  }

  /** Sends a device-TLB invalidation to the endpoint `sid`. */
  invalidate(sid: SourceId, inv: { readonly pasid?: number; readonly global?: boolean; readonly addr: number; readonly size: number }): void {
    this.#endpoints.get(sid)?.invalidateDeviceTlb(inv);
  }
}
