import { InfoCapHeaderLayout } from "./structs.js";

/**
 * A capability chain for a VFIO *_GET_INFO reply (drivers/vfio/vfio.c v5.10:
 * vfio_info_cap_add, vfio_info_cap_shift). Each capability starts with
 * struct vfio_info_cap_header; `next` is the offset of the following one from
 * the start of the INFO buffer, 0 on the last. v5.10 packs capabilities back
 * to back with no padding between them (8-byte alignment came later), and we
 * model v5.10.
 */
export interface InfoCap {
  readonly id: number;
  readonly version: number;
  /** The capability's bytes after its 8-byte header. */
  readonly body: Uint8Array;
}

/**
 * The chain's bytes as they land at `base` in the user's buffer (the INFO
 * struct's size: the chain follows the struct).
 */
export function buildCapChain(caps: readonly InfoCap[], base: number): Uint8Array {
  const total = caps.reduce((n, c) => n + InfoCapHeaderLayout.size + c.body.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  caps.forEach((c, i) => {
    const size = InfoCapHeaderLayout.size + c.body.length;
    InfoCapHeaderLayout.set(out, "id", c.id, at);
    InfoCapHeaderLayout.set(out, "version", c.version, at);
    InfoCapHeaderLayout.set(out, "next", i === caps.length - 1 ? 0 : base + at + size, at);
    out.set(c.body, at + InfoCapHeaderLayout.size);
    at += size;
  });
  return out;
}

/** Walks a chain in a user's INFO buffer (what a VMM does): [id, version, offset] per capability. */
export function walkCapChain(buf: Uint8Array, first: number): { id: number; version: number; offset: number }[] {
  const out: { id: number; version: number; offset: number }[] = [];
  const seen = new Set<number>();
  for (let at = first; at !== 0 && at + InfoCapHeaderLayout.size <= buf.length && !seen.has(at); ) {
    seen.add(at);
    out.push({ id: InfoCapHeaderLayout.get(buf, "id", at), version: InfoCapHeaderLayout.get(buf, "version", at), offset: at });
    at = InfoCapHeaderLayout.get(buf, "next", at);
  }
  return out;
}
