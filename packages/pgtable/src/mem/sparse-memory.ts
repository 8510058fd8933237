import { Errno, KernelError } from "@vsva/kernel";
import { MEM_ABORT, type MemStats, type PhysMem, type U64, newStats } from "./phys-mem.js";
import { u8set } from "./block-copy.js";

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;
const PAGE_MASK = PAGE_SIZE - 1;

export interface MemRegion {
  readonly base: number;
  readonly size: number;
}

export interface SparseMemoryOptions {
  /** Physical address width, 12..52 bits (default 52). */
  readonly addrBits?: number;
  /** Populated ranges (4 KiB aligned). Frames inside are zero until written. */
  readonly regions?: readonly MemRegion[];
}

/** Slots of the byte-view memo (a power of two): enough for a DMA streaming over a few hundred pages. */
const BYTES_MEMO_SLOTS = 256;
const BYTES_MEMO_MASK = BYTES_MEMO_SLOTS - 1;

/**
 * Frames are carved out of 64 KiB backing chunks (16 frames of adjacent
 * physical addresses share one buffer), so a block write or read that spans
 * several materialised frames of one chunk is one copy instead of one per
 * frame. 64 KiB, not 2 MiB: a frame written alone costs its whole chunk, and
 * 16 times the written bytes is the most a scattered writer can pay.
 */
const CHUNK_FRAMES = 16;
const CHUNK_SIZE = CHUNK_FRAMES * PAGE_SIZE;
/** `pa & CHUNK_MASK` is the offset in its chunk for any integer below 2^53 (ToInt32 keeps the low 32 bits). */
const CHUNK_MASK = CHUNK_SIZE - 1;
const CHUNK_MEMO_SLOTS = 64;
const CHUNK_MEMO_MASK = CHUNK_MEMO_SLOTS - 1;

/** A backing chunk: its bytes, and which of its frames have materialised (bit k: frame k). */
interface Chunk {
  readonly bytes: Uint8Array;
  mask: number;
}

/** Bits `first..last` (0 ≤ first ≤ last < 16) of a chunk's frame mask. */
const framesMask = (first: number, last: number): number => (2 << last) - (1 << first);

/**
 * A sparse, 4 KiB-framed physical address space. Frames inside a populated
 * region materialise (zeroed) on first write; reads of a never-written frame in
 * a region return zero without allocating. Everything outside the regions aborts.
 *
 * Little-endian, like both architectures modelled here.
 */
export class SparseMemory implements PhysMem {
  readonly addrBits: number;
  readonly stats: MemStats = newStats();
  readonly #regions: MemRegion[] = [];
  readonly #frames = new Map<number, Uint32Array>();
  /**
   * Byte views of materialised frames, made once per frame: block copies
   * (DMA) use them instead of building a view per access. Frames are never
   * dropped and only materialise inside populated regions, so a frame with a
   * view is a populated one: a copy inside it needs no region scan.
   */
  readonly #bytes = new Map<number, Uint8Array>();
  /** Slot `pfn & BYTES_MEMO_MASK` remembers frame `#bytesMemoPfn[slot]`'s view (-1: none). */
  readonly #bytesMemoPfn = new Float64Array(BYTES_MEMO_SLOTS).fill(-1);
  readonly #bytesMemo: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(BYTES_MEMO_SLOTS).fill(undefined);
  /** Backing chunks by chunk index (`floor(pfn / CHUNK_FRAMES)`); never dropped, like frames. */
  readonly #chunks = new Map<number, Chunk>();
  /** Slot `index & CHUNK_MEMO_MASK` remembers chunk `#chunkMemoIdx[slot]` (-1: none). */
  readonly #chunkMemoIdx = new Float64Array(CHUNK_MEMO_SLOTS).fill(-1);
  readonly #chunkMemo: (Chunk | undefined)[] = new Array<Chunk | undefined>(CHUNK_MEMO_SLOTS).fill(undefined);
  readonly #limit: number;
  // One-entry frame lookup cache: walks hit the same table page repeatedly.
  #lastPfn = -1;
  #lastFrame: Uint32Array | undefined;

  constructor(opts: SparseMemoryOptions = {}) {
    const bits = opts.addrBits ?? 52;
    if (!Number.isInteger(bits) || bits < 12 || bits > 52) {
      throw new KernelError(Errno.EINVAL, `physical address width ${bits} is outside 12..52 bits`);
    }
    this.addrBits = bits;
    this.#limit = 2 ** bits;
    for (const r of opts.regions ?? []) this.populate(r.base, r.size);
  }

  /** Adds a populated range. EINVAL for a misaligned, empty or out-of-width range. */
  populate(base: number, size: number): void {
    if (
      !Number.isInteger(base) || !Number.isInteger(size) || size <= 0 ||
      base % PAGE_SIZE !== 0 || size % PAGE_SIZE !== 0 || base < 0 || base + size > this.#limit
    ) {
      throw new KernelError(Errno.EINVAL, `region [${hex(base)}, +${hex(size)}) must be 4 KiB aligned and inside ${this.addrBits}-bit space`);
    }
    this.#regions.push({ base, size });
    this.#regions.sort((a, b) => a.base - b.base);
  }

  get regions(): readonly MemRegion[] {
    return this.#regions;
  }

  /** Number of frames that have been materialised (for leak and footprint checks). */
  get residentFrames(): number {
    return this.#frames.size;
  }

  isPopulated(pa: number): boolean {
    if (!(pa >= 0 && pa < this.#limit)) return false;
    for (const r of this.#regions) {
      if (pa < r.base) return false;
      if (pa < r.base + r.size) return true;
    }
    return false;
  }

  // The one-entry cache's hit is a method of its own, small enough for V8 to inline into every
  // accessor (and those into their callers); the miss, which may materialise a frame, is not.

  /** Frame words for reading: a shared zero frame if never written, undefined on abort. */
  #frameForRead(pfn: number): Uint32Array | undefined {
    return pfn === this.#lastPfn ? this.#lastFrame : this.#frameForReadMiss(pfn);
  }

  #frameForReadMiss(pfn: number): Uint32Array | undefined {
    let f = this.#frames.get(pfn);
    if (f === undefined) {
      if (!this.isPopulated(pfn * PAGE_SIZE)) return undefined;
      f = ZERO_FRAME;
      // Do not cache the zero frame: a later write must materialise a real one.
      return f;
    }
    this.#lastPfn = pfn;
    this.#lastFrame = f;
    return f;
  }

  /** Frame words for writing, materialising the frame on its first write; undefined on abort. */
  #frameForWrite(pfn: number): Uint32Array | undefined {
    return pfn === this.#lastPfn ? this.#lastFrame : this.#frameForWriteMiss(pfn);
  }

  #frameForWriteMiss(pfn: number): Uint32Array | undefined {
    let f = this.#frames.get(pfn);
    if (f === undefined) {
      if (!this.isPopulated(pfn * PAGE_SIZE)) return undefined;
      const ci = Math.floor(pfn / CHUNK_FRAMES);
      let c = this.#chunks.get(ci);
      if (c === undefined) {
        c = { bytes: new Uint8Array(CHUNK_SIZE), mask: 0 };
        this.#chunks.set(ci, c);
      }
      const k = pfn - ci * CHUNK_FRAMES;
      f = new Uint32Array(c.bytes.buffer, k * PAGE_SIZE, PAGE_SIZE / 4);
      c.mask |= 1 << k;
      this.#frames.set(pfn, f);
    }
    this.#lastPfn = pfn;
    this.#lastFrame = f;
    return f;
  }

  #abort(): number {
    this.stats.aborts++;
    return MEM_ABORT;
  }

  read32(pa: number): number {
    this.stats.reads++;
    this.stats.bytesRead += 4;
    if ((pa & 3) === 0) {
      const f = this.#frameForRead(Math.floor(pa / PAGE_SIZE));
      if (f === undefined) return this.#abort();
      return (f[(pa & PAGE_MASK) >>> 2] ?? 0) >>> 0;
    }
    return this.#readUnaligned(pa, 4);
  }

  read16(pa: number): number {
    this.stats.reads++;
    this.stats.bytesRead += 2;
    return this.#readUnaligned(pa, 2);
  }

  read8(pa: number): number {
    this.stats.reads++;
    this.stats.bytesRead += 1;
    return this.#readUnaligned(pa, 1);
  }

  read64(pa: number, out: U64): boolean {
    this.stats.reads++;
    this.stats.bytesRead += 8;
    if ((pa & 7) === 0) {
      const f = this.#frameForRead(Math.floor(pa / PAGE_SIZE));
      if (f === undefined) {
        this.stats.aborts++;
        return false;
      }
      const i = (pa & PAGE_MASK) >>> 2;
      out.lo = (f[i] ?? 0) >>> 0;
      out.hi = (f[i + 1] ?? 0) >>> 0;
      return true;
    }
    const lo = this.#readUnaligned(pa, 4);
    const hi = this.#readUnaligned(pa + 4, 4);
    if (lo === MEM_ABORT || hi === MEM_ABORT) return false;
    out.lo = lo;
    out.hi = hi;
    return true;
  }

  /** Byte-wise little-endian read of up to 4 bytes, possibly crossing frames. */
  #readUnaligned(pa: number, n: number): number {
    let v = 0;
    for (let k = 0; k < n; k++) {
      const a = pa + k;
      const f = this.#frameForRead(Math.floor(a / PAGE_SIZE));
      if (f === undefined) return this.#abort();
      const off = a & PAGE_MASK;
      const byte = ((f[off >>> 2] ?? 0) >>> ((off & 3) * 8)) & 0xff;
      v += byte * 2 ** (8 * k);
    }
    return v;
  }

  #writeUnaligned(pa: number, n: number, v: number): boolean {
    for (let k = 0; k < n; k++) {
      if (!this.isPopulated(pa + k)) {
        this.stats.aborts++;
        return false;
      }
    }
    for (let k = 0; k < n; k++) {
      const a = pa + k;
      const f = this.#frameForWrite(Math.floor(a / PAGE_SIZE));
      if (f === undefined) return false; // unreachable: checked above
      const off = a & PAGE_MASK;
      const sh = (off & 3) * 8;
      const byte = Math.floor(v / 2 ** (8 * k)) & 0xff;
      const w = off >>> 2;
      f[w] = (((f[w] ?? 0) & ~(0xff << sh)) | (byte << sh)) >>> 0;
    }
    return true;
  }

  write8(pa: number, v: number): boolean {
    this.stats.writes++;
    this.stats.bytesWritten += 1;
    return this.#writeUnaligned(pa, 1, v & 0xff);
  }

  write16(pa: number, v: number): boolean {
    this.stats.writes++;
    this.stats.bytesWritten += 2;
    return this.#writeUnaligned(pa, 2, v & 0xffff);
  }

  write32(pa: number, v: number): boolean {
    this.stats.writes++;
    this.stats.bytesWritten += 4;
    if ((pa & 3) === 0) {
      const f = this.#frameForWrite(Math.floor(pa / PAGE_SIZE));
      if (f === undefined) {
        this.stats.aborts++;
        return false;
      }
      f[(pa & PAGE_MASK) >>> 2] = v >>> 0;
      return true;
    }
    return this.#writeUnaligned(pa, 4, v >>> 0);
  }

  write64(pa: number, lo: number, hi: number): boolean {
    this.stats.writes++;
    this.stats.bytesWritten += 8;
    if ((pa & 7) === 0) {
      const f = this.#frameForWrite(Math.floor(pa / PAGE_SIZE));
      if (f === undefined) {
        this.stats.aborts++;
        return false;
      }
      const i = (pa & PAGE_MASK) >>> 2;
      f[i] = lo >>> 0;
      f[i + 1] = hi >>> 0;
      return true;
    }
    if (!this.isPopulated(pa) || !this.isPopulated(pa + 7)) {
      this.stats.aborts++;
      return false;
    }
    return this.#writeUnaligned(pa, 4, lo >>> 0) && this.#writeUnaligned(pa + 4, 4, hi >>> 0);
  }

  readBytes(pa: number, dst: Uint8Array): boolean {
    this.stats.reads++;
    this.stats.bytesRead += dst.length;
    // Fast path: inside one chunk whose frames in the range have all been written (so are populated).
    const len = dst.length;
    const coff = pa & CHUNK_MASK;
    if (len !== 0 && coff + len <= CHUNK_SIZE) {
      const c = this.#chunkOf(Math.floor(pa / CHUNK_SIZE));
      if (c !== undefined) {
        const need = framesMask(coff >>> PAGE_SHIFT, (coff + len - 1) >>> PAGE_SHIFT);
        if ((c.mask & need) === need) {
          dst.set(c.bytes.subarray(coff, coff + len));
          return true;
        }
      }
    } else if (len !== 0 && this.#copyAcrossChunks(pa, dst, false)) {
      return true;
    }
    if (!this.#rangePopulated(pa, dst.length)) {
      this.stats.aborts++;
      return false;
    }
    let done = 0;
    while (done < dst.length) {
      const a = pa + done;
      const off = a & PAGE_MASK;
      const n = Math.min(PAGE_SIZE - off, dst.length - done);
      const f = this.#frames.get(Math.floor(a / PAGE_SIZE));
      if (f === undefined) dst.fill(0, done, done + n);
      else dst.set(new Uint8Array(f.buffer, f.byteOffset + off, n), done);
      done += n;
    }
    return true;
  }

  writeBytes(pa: number, src: Uint8Array): boolean {
    this.stats.writes++;
    this.stats.bytesWritten += src.length;
    // Fast path: a non-empty copy inside one backing chunk whose frames in the range have all
    // been written before (so are populated): one block copy however many frames it spans.
    // `pa & CHUNK_MASK` takes bits 15:0 exactly for any integer below 2^53, and truncates a
    // fraction as the general path does; a negative or out-of-range pa has no chunk and goes
    // the general way.
    const len = src.length;
    const coff = pa & CHUNK_MASK;
    if (len !== 0 && coff + len <= CHUNK_SIZE) {
      const c = this.#chunkOf(Math.floor(pa / CHUNK_SIZE));
      if (c !== undefined) {
        const need = framesMask(coff >>> PAGE_SHIFT, (coff + len - 1) >>> PAGE_SHIFT);
        if ((c.mask & need) === need) {
          u8set.call(c.bytes, src, coff);
          return true;
        }
      }
    }
    return this.#writeBytesSlow(pa, src, coff);
  }

  /** writeBytes's general path, out of line so that its fast path stays small enough to inline into a caller. */
  #writeBytesSlow(pa: number, src: Uint8Array, coff: number): boolean {
    const len = src.length;
    if (len !== 0 && coff + len > CHUNK_SIZE && this.#copyAcrossChunks(pa, src, true)) return true;
    if (!this.#rangePopulated(pa, src.length)) {
      this.stats.aborts++;
      return false;
    }
    let done = 0;
    while (done < src.length) {
      const a = pa + done;
      const off = a & PAGE_MASK;
      const n = Math.min(PAGE_SIZE - off, src.length - done);
      const f = this.#frameForWrite(Math.floor(a / PAGE_SIZE));
      if (f === undefined) return false; // unreachable: checked above
      new Uint8Array(f.buffer, f.byteOffset + off, n).set(src.subarray(done, done + n));
      done += n;
    }
    return true;
  }

  writeWords(pa: number, words: Uint32Array): boolean {
    // Fast path: dword-aligned inside one frame, stored word by word into the frame (the
    // frame is materialised as writeBytes would); anything else is writeBytes of the bytes.
    const n = words.length;
    const off = pa & PAGE_MASK;
    if ((off & 3) === 0 && n !== 0 && off + 4 * n <= PAGE_SIZE) {
      const f = this.#frameForWrite(Math.floor(pa / PAGE_SIZE));
      if (f !== undefined) {
        this.stats.writes++;
        this.stats.bytesWritten += 4 * n;
        // Four stores per turn: a loop of one store per turn costs twice as much for a 32-byte record.
        const i = off >>> 2;
        let k = 0;
        for (; k + 4 <= n; k += 4) {
          f[i + k] = words[k] ?? 0;
          f[i + k + 1] = words[k + 1] ?? 0;
          f[i + k + 2] = words[k + 2] ?? 0;
          f[i + k + 3] = words[k + 3] ?? 0;
        }
        for (; k < n; k++) f[i + k] = words[k] ?? 0;
        return true;
      }
    }
    return this.writeBytes(pa, new Uint8Array(words.buffer, words.byteOffset, 4 * n));
  }

  copyBytes(dst: number, src: number, len: number): boolean {
    this.stats.reads++;
    this.stats.writes++;
    this.stats.bytesRead += len;
    this.stats.bytesWritten += len;
    // Fast path, as writeBytes's: both ranges inside one frame each, both frames written before (so
    // populated), not overlapping. `& PAGE_MASK` is exact for integers below 2^53; anything else goes the general way.
    const so = src & PAGE_MASK;
    const doff = dst & PAGE_MASK;
    if (len > 0 && so + len <= PAGE_SIZE && doff + len <= PAGE_SIZE && (src + len <= dst || dst + len <= src)) {
      const from = this.#frameBytes(Math.floor(src / PAGE_SIZE));
      const to = from === undefined ? undefined : this.#frameBytes(Math.floor(dst / PAGE_SIZE));
      if (from !== undefined && to !== undefined) {
        if (len === PAGE_SIZE) u8set.call(to, from);
        else u8set.call(to, from.subarray(so, so + len), doff);
        return true;
      }
    }
    return this.#copyBytesSlow(dst, src, len);
  }

  /** copyBytes's general path, out of line so that its fast path stays small enough to inline into a caller. */
  #copyBytesSlow(dst: number, src: number, len: number): boolean {
    if (!Number.isSafeInteger(len) || len < 0 || !this.#rangePopulated(src, len) || !this.#rangePopulated(dst, len)) {
      this.stats.aborts++;
      return false;
    }
    if (len === 0) return true;
    if (src < dst + len && dst < src + len && src !== dst) {
      // Overlapping ranges in different frames would be clobbered chunk by chunk: go through a copy.
      const tmp = new Uint8Array(len);
      this.stats.reads--;
      this.stats.writes--;
      this.stats.bytesRead -= len;
      this.stats.bytesWritten -= len;
      return this.readBytes(src, tmp) && this.writeBytes(dst, tmp);
    }
    let done = 0;
    while (done < len) {
      const s = src + done;
      const d = dst + done;
      const so = s & PAGE_MASK;
      const doff = d & PAGE_MASK;
      const n = Math.min(PAGE_SIZE - so, PAGE_SIZE - doff, len - done);
      const dpfn = Math.floor(d / PAGE_SIZE);
      let to = this.#frameBytes(dpfn);
      if (to === undefined) {
        this.#frameForWrite(dpfn);
        to = this.#frameBytes(dpfn);
      }
      const from = this.#frameBytes(Math.floor(s / PAGE_SIZE));
      // A frame never written reads as zeros. A whole frame copies without a sub-view (making one costs more than the copy's overhead).
      if (from === undefined) to?.fill(0, doff, doff + n);
      else if (n === PAGE_SIZE) to?.set(from);
      else to?.set(from.subarray(so, so + n), doff);
      done += n;
    }
    return true;
  }

  /**
   * `buf` to (`intoMemory`) or from memory at `pa`, across chunks whose frames
   * in the range have all been written: one block copy per chunk (a DMA run
   * of adjacent frames crosses a 64 KiB boundary wherever its buffer lies),
   * where the general path copies frame by frame through a view made for
   * each. False, and nothing copied, when some frame in the range was never
   * written: the caller takes the general path.
   */
  #copyAcrossChunks(pa: number, buf: Uint8Array, intoMemory: boolean): boolean {
    const len = buf.length;
    if (!this.#chunksWritten(pa, len)) return false;
    for (let done = 0; done < len; ) {
      const a = pa + done;
      const off = a & CHUNK_MASK;
      const n = Math.min(CHUNK_SIZE - off, len - done);
      const c = this.#chunkOf(Math.floor(a / CHUNK_SIZE));
      if (c !== undefined) {
        if (intoMemory) c.bytes.set(buf.subarray(done, done + n), off);
        else buf.set(c.bytes.subarray(off, off + n), done);
      }
      done += n;
    }
    return true;
  }

  /**
   * Whether every frame of `[pa, pa + len)` (len > 0) has been written, so a copy there is
   * chunk by chunk with nothing to check or materialise. Only for a non-negative safe-integer
   * `pa` (anything else goes the general way, as before).
   */
  #chunksWritten(pa: number, len: number): boolean {
    if (!Number.isSafeInteger(pa) || pa < 0 || !Number.isSafeInteger(pa + len)) return false;
    for (let done = 0; done < len; ) {
      const a = pa + done;
      const off = a & CHUNK_MASK;
      const n = Math.min(CHUNK_SIZE - off, len - done);
      const c = this.#chunkOf(Math.floor(a / CHUNK_SIZE));
      if (c === undefined) return false;
      const need = framesMask(off >>> PAGE_SHIFT, (off + n - 1) >>> PAGE_SHIFT);
      if ((c.mask & need) !== need) return false;
      done += n;
    }
    return true;
  }

  /** Backing chunk `ci`, or undefined if none of its frames has been written. */
  #chunkOf(ci: number): Chunk | undefined {
    // Direct-mapped memo in front of the Map: chunks are never dropped (their masks only grow).
    const slot = ci & CHUNK_MEMO_MASK;
    if (this.#chunkMemoIdx[slot] === ci) return this.#chunkMemo[slot];
    const c = this.#chunks.get(ci);
    if (c !== undefined) {
      this.#chunkMemoIdx[slot] = ci;
      this.#chunkMemo[slot] = c;
    }
    return c;
  }

  /** The byte view of materialised frame `pfn`, or undefined if it has not been written. */
  #frameBytes(pfn: number): Uint8Array | undefined {
    // Direct-mapped memo in front of the Map: frames are never dropped, so a
    // remembered view stays right for good and needs no invalidation.
    const slot = pfn & BYTES_MEMO_MASK;
    if (this.#bytesMemoPfn[slot] === pfn) return this.#bytesMemo[slot];
    let b = this.#bytes.get(pfn);
    if (b === undefined) {
      const f = this.#frames.get(pfn);
      if (f === undefined) return undefined;
      b = new Uint8Array(f.buffer, f.byteOffset, PAGE_SIZE);
      this.#bytes.set(pfn, b);
    }
    this.#bytesMemoPfn[slot] = pfn;
    this.#bytesMemo[slot] = b;
    return b;
  }

  #rangePopulated(pa: number, len: number): boolean {
    if (len === 0) return pa >= 0 && pa <= this.#limit;
    const first = Math.floor(pa / PAGE_SIZE);
    const last = Math.floor((pa + len - 1) / PAGE_SIZE);
    for (let p = first; p <= last; p++) if (!this.isPopulated(p * PAGE_SIZE)) return false;
    return true;
  }
}

const ZERO_FRAME = new Uint32Array(PAGE_SIZE / 4);

function hex(n: number): string {
  return "0x" + n.toString(16);
}

