import { asIoasid, asSpid, Errno, type Ioasid, Kernel, KernelError } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { IOASID_DEFAULT_CAPACITY, IoasidCore, type IoasidCoreOptions } from "./core.js";
import type { IoasidAllocatorOps } from "./types.js";

function host(opts: Partial<IoasidCoreOptions> = {}) {
  const kernel = new Kernel();
  const core = new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults, ...opts });
  return { kernel, core };
}

/** Runs `fn`, expects a KernelError with `errno`, and that nothing observable changed. */
function refused(core: IoasidCore, errno: Errno, fn: () => unknown): void {
  const before = core.snapshot();
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(KernelError);
  expect((caught as KernelError).errno).toBe(errno);
  expect(core.snapshot()).toEqual(before);
}

describe("namespace and capacity", () => {
  it("never hands out PASID 0 and allocates the lowest free ID", () => {
    const { core } = host();
    const set = core.allocSet(null, 10, "none");
    expect(core.alloc(set, 0, 100)).toBe(1);
    expect(core.alloc(set, 0, 100)).toBe(2);
    expect(core.alloc(set, 50, 100)).toBe(50);
  });

  it("defaults to 2^20 - 1 IDs and refuses a capacity beyond 20 bits", () => {
    expect(host().core.capacity).toBe(0xfffff);
    expect(() => host({ capacity: IOASID_DEFAULT_CAPACITY + 1 })).toThrow(KernelError);
    expect(() => host({ capacity: 0 })).toThrow(KernelError);
  });

  it("clamps the range to the namespace but refuses a range entirely outside it or reversed", () => {
    const { core } = host({ capacity: 16 });
    const set = core.allocSet(null, 0, "none");
    expect(core.alloc(set, 16, 0xffff_ffff)).toBe(16);
    refused(core, Errno.EINVAL, () => core.alloc(set, 17, 100));
    refused(core, Errno.EINVAL, () => core.alloc(set, 5, 4));
    refused(core, Errno.EINVAL, () => core.alloc(set, -1, 4));
    refused(core, Errno.EINVAL, () => core.alloc(set, 1.5, 4));
  });

  it("reports ENOSPC when the range is full though the quota is not", () => {
    const { core } = host();
    const set = core.allocSet(null, 100, "none");
    core.alloc(set, 7, 8);
    core.alloc(set, 7, 8);
    refused(core, Errno.ENOSPC, () => core.alloc(set, 7, 8));
  });
});

describe("sets and quotas", () => {
  it("take each quota out of the system capacity; quota 0 takes all that remains", () => {
    const { core } = host({ capacity: 100 });
    const a = core.allocSet(null, 30, "none");
    expect(core.available).toBe(70);
    const b = core.allocSet(null, 0, "none");
    expect(b.quota).toBe(70);
    expect(core.available).toBe(0);
    refused(core, Errno.ENOSPC, () => core.allocSet(null, 0, "none"));
    refused(core, Errno.ENOSPC, () => core.allocSet(null, 1, "none"));
    core.setPut(a);
    expect(core.available).toBe(30);
  });

  it("refuse a quota beyond the available capacity", () => {
    const { core } = host({ capacity: 10 });
    refused(core, Errno.ENOSPC, () => core.allocSet(null, 11, "none"));
    refused(core, Errno.EINVAL, () => core.allocSet(null, -1, "none"));
    refused(core, Errno.EINVAL, () => core.allocSet(null, 1, "bogus" as "none"));
  });

  it("keep mm tokens unique among live sets, but not none tokens", () => {
    const { core } = host();
    const mm = {};
    const s = core.allocSet(mm, 1, "mm");
    refused(core, Errno.EEXIST, () => core.allocSet(mm, 1, "mm"));
    refused(core, Errno.EINVAL, () => core.allocSet(null, 1, "mm"));
    const n1 = core.allocSet(42, 1, "none");
    core.allocSet(42, 1, "none");
    expect(core.findSetByToken(mm)).toBe(s);
    expect(core.findSetByToken(42, "none")).toBe(n1);
    core.setPut(s);
    expect(core.findSetByToken(mm)).toBeNull();
    expect(core.allocSet(mm, 1, "mm").token).toBe(mm);
  });

  it("exhaust one set's quota with ENOSPC while another set still allocates", () => {
    const { core } = host();
    const vmA = core.allocSet({ vm: "A" }, 2, "mm");
    const vmB = core.allocSet({ vm: "B" }, 2, "mm");
    core.alloc(vmA, 1, 1000);
    core.alloc(vmA, 1, 1000);
    refused(core, Errno.ENOSPC, () => core.alloc(vmA, 1, 1000));
    expect(core.alloc(vmB, 1, 1000)).toBe(3);
  });

  it("count FREE_PENDING IDs against the quota until they are reclaimed", () => {
    const { core } = host();
    const set = core.allocSet(null, 1, "none");
    const id = core.alloc(set, 1, 10);
    core.get(set, id);
    core.free(set, id);
    refused(core, Errno.ENOSPC, () => core.alloc(set, 1, 10));
    core.put(set, id);
    expect(core.alloc(set, 1, 10)).toBe(id);
  });

  it("adjust a quota within the outstanding IDs and the available capacity", () => {
    const { core } = host({ capacity: 10 });
    const set = core.allocSet(null, 5, "none");
    core.alloc(set, 1, 10);
    core.alloc(set, 1, 10);
    refused(core, Errno.EINVAL, () => core.adjustSet(set, 1));
    refused(core, Errno.EINVAL, () => core.adjustSet(set, 0));
    refused(core, Errno.ENOSPC, () => core.adjustSet(set, 11));
    core.adjustSet(set, 10);
    expect(core.available).toBe(0);
    core.adjustSet(set, 2);
    expect(core.available).toBe(8);
  });

  it("free every remaining ID when the last set reference drops, and release the quota once they are reclaimed", () => {
    const { core } = host({ capacity: 10 });
    const set = core.allocSet(null, 4, "none");
    const a = core.alloc(set, 1, 10);
    const b = core.alloc(set, 1, 10);
    core.get(set, b); // someone still holds b
    core.setGet(set);
    core.setPut(set);
    expect(set.alive).toBe(true);
    core.setPut(set);
    expect(set.alive).toBe(false);
    expect(core.state(a)).toBe("IDLE");
    expect(core.state(b)).toBe("FREE_PENDING");
    expect(core.available).toBe(6);
    refused(core, Errno.EINVAL, () => core.alloc(set, 1, 10));
    refused(core, Errno.EINVAL, () => core.setGet(set));
    expect(core.put(null, b)).toBe(true);
    expect(core.available).toBe(10);
    refused(core, Errno.EINVAL, () => core.freeSet(set));
  });

  it("release a dead set exactly once, so its quota and id are returned once", () => {
    const { core } = host({ capacity: 10 });
    const set = core.allocSet(null, 4, "none");
    core.alloc(set, 1, 10);
    core.setPut(set);
    expect(core.available).toBe(10);
    const a = core.allocSet(null, 1, "none");
    const b = core.allocSet(null, 1, "none");
    expect(a.id).not.toBe(b.id);
    expect(core.available).toBe(8);
  });

  it("freeSet frees every ID of the set and nothing else", () => {
    const { core } = host();
    const s1 = core.allocSet(null, 10, "none");
    const s2 = core.allocSet(null, 10, "none");
    const ids = [core.alloc(s1, 1, 99), core.alloc(s2, 1, 99), core.alloc(s1, 1, 99)];
    expect(core.freeSet(s1)).toBe(2);
    expect(ids.map((id) => core.state(id))).toEqual(["IDLE", "ACTIVE", "IDLE"]);
    expect(s1.count).toBe(0);
    expect(s1.alive).toBe(true);
  });

  it("setForEachIoasid visits the set's IDs in ascending order with their private data", () => {
    const { core } = host();
    const set = core.allocSet(null, 10, "none");
    const other = core.allocSet(null, 10, "none");
    core.alloc(set, 9, 99, "nine");
    core.alloc(other, 1, 99);
    core.alloc(set, 3, 99, "three");
    const seen: [number, unknown][] = [];
    core.setForEachIoasid(set, (id, p) => seen.push([id, p]));
    expect(seen).toEqual([
      [3, "three"],
      [9, "nine"],
    ]);
  });

  it("refuse handles of another core", () => {
    const a = host().core;
    const b = host().core;
    const set = a.allocSet(null, 1, "none");
    b.allocSet(null, 1, "none");
    refused(b, Errno.EINVAL, () => b.alloc(set, 1, 10));
  });
});

describe("references and FREE_PENDING", () => {
  it("free marks FREE_PENDING while references remain; get, find and findBySpid then fail with ENOENT", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const id = core.alloc(set, 1, 10, "priv");
    core.attachSpid(set, id, asSpid(5));
    core.get(set, id);
    expect(core.free(set, id)).toBe(false);
    expect(core.state(id)).toBe("FREE_PENDING");
    expect(core.refcount(id)).toBe(1);
    refused(core, Errno.ENOENT, () => core.get(set, id));
    refused(core, Errno.ENOENT, () => core.find(set, id));
    refused(core, Errno.ENOENT, () => core.findBySpid(set, asSpid(5)));
    refused(core, Errno.ENOENT, () => core.attachSpid(set, id, asSpid(6)));
  });

  it("free always succeeds for the owner, however often it is called", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const id = core.alloc(set, 1, 10);
    core.get(set, id);
    expect(core.free(set, id)).toBe(false);
    expect(core.free(set, id)).toBe(false);
    expect(core.refcount(id)).toBe(1);
    expect(core.put(set, id)).toBe(true);
    expect(core.state(id)).toBe("IDLE");
  });

  it("never hands out a FREE_PENDING ID again before its last reference drops", () => {
    const { core } = host({ capacity: 2 });
    const set = core.allocSet(null, 2, "none");
    const id = core.alloc(set, 1, 1);
    core.get(set, id);
    core.free(set, id);
    refused(core, Errno.ENOSPC, () => core.alloc(set, 1, 1));
    expect(core.alloc(set, 1, 2)).toBe(2);
    core.put(set, id);
    expect(core.alloc(set, 1, 1)).toBe(1);
  });

  it("refuse a put without a reference: the owner's reference is dropped only by free", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const id = core.alloc(set, 1, 10);
    refused(core, Errno.EINVAL, () => core.put(set, id));
    core.get(null, id);
    expect(core.put(null, id)).toBe(false);
    refused(core, Errno.EINVAL, () => core.put(set, id));
    expect(core.free(set, id)).toBe(true);
    refused(core, Errno.ENOENT, () => core.put(set, id));
  });

  it("refuse bad and unallocated IDs", () => {
    const { core } = host({ capacity: 100 });
    const set = core.allocSet(null, 4, "none");
    for (const bad of [0, 101, -1, 2.5, Number.NaN]) {
      refused(core, Errno.EINVAL, () => core.get(set, bad as Ioasid));
      refused(core, Errno.EINVAL, () => core.free(set, bad as Ioasid));
    }
    refused(core, Errno.ENOENT, () => core.get(set, asIoasid(7)));
    refused(core, Errno.ENOENT, () => core.free(set, asIoasid(7)));
    refused(core, Errno.ENOENT, () => core.find(set, asIoasid(7)));
  });
});

describe("ownership", () => {
  it("refuses, with EACCES and no change, every operation naming a set that does not own the ID", () => {
    const { core } = host();
    const mine = core.allocSet({ vm: 1 }, 4, "mm");
    const theirs = core.allocSet({ vm: 2 }, 4, "mm");
    const id = core.alloc(mine, 1, 10, "data");
    core.attachSpid(mine, id, asSpid(9));
    refused(core, Errno.EACCES, () => core.find(theirs, id));
    refused(core, Errno.EACCES, () => core.get(theirs, id));
    refused(core, Errno.EACCES, () => core.put(theirs, id));
    refused(core, Errno.EACCES, () => core.free(theirs, id));
    refused(core, Errno.EACCES, () => core.attachData(theirs, id, "x"));
    refused(core, Errno.EACCES, () => core.attachSpid(theirs, id, asSpid(10)));
    refused(core, Errno.EACCES, () => core.detachSpid(theirs, id));
    refused(core, Errno.ENOENT, () => core.findBySpid(theirs, asSpid(9)));
    expect(core.find(mine, id)).toBe("data");
    expect(core.find(null, id)).toBe("data");
  });

  it("find returns the private data, or null when the getter refuses it", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const id = core.alloc(set, 1, 10, { live: false });
    expect(core.find(set, id, (p) => (p as { live: boolean }).live)).toBeNull();
    core.attachData(set, id, null);
    core.attachData(set, id, "a");
    refused(core, Errno.EBUSY, () => core.attachData(set, id, "b"));
    expect(core.find(set, id)).toBe("a");
  });
});

describe("set-private IDs (SPIDs)", () => {
  it("let two sets both use SPID 101 for different IDs", () => {
    const { core } = host();
    const vm1 = core.allocSet({ vm: 1 }, 300, "mm");
    const vm2 = core.allocSet({ vm: 2 }, 300, "mm");
    const h1 = core.alloc(vm1, 201, 201);
    const h2 = core.alloc(vm2, 202, 202);
    core.attachSpid(vm1, h1, asSpid(101));
    core.attachSpid(vm2, h2, asSpid(101));
    expect(core.findBySpid(vm1, asSpid(101))).toBe(201);
    expect(core.findBySpid(vm2, asSpid(101))).toBe(202);
    expect(core.refcount(h1)).toBe(2);
    expect(core.findBySpid(vm1, asSpid(101), false)).toBe(201);
    expect(core.refcount(h1)).toBe(2);
  });

  it("keep an SPID unique within its set and an ID to one SPID", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const a = core.alloc(set, 1, 10);
    const b = core.alloc(set, 1, 10);
    core.attachSpid(set, a, asSpid(101));
    refused(core, Errno.EEXIST, () => core.attachSpid(set, b, asSpid(101)));
    refused(core, Errno.EEXIST, () => core.attachSpid(set, a, asSpid(101)));
    refused(core, Errno.EBUSY, () => core.attachSpid(set, a, asSpid(102)));
    refused(core, Errno.EINVAL, () => core.attachSpid(set, b, 0xffff_ffff as never));
  });

  it("refuse a double detach, and free the SPID for reuse on detach and on reclaim", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const a = core.alloc(set, 1, 10);
    core.attachSpid(set, a, asSpid(7));
    core.detachSpid(set, a);
    refused(core, Errno.EINVAL, () => core.detachSpid(set, a));
    core.attachSpid(set, a, asSpid(7));
    core.free(set, a);
    const b = core.alloc(set, 1, 10);
    core.attachSpid(set, b, asSpid(7));
    expect(core.findBySpid(set, asSpid(7), false)).toBe(b);
  });
});

describe("custom allocators", () => {
  /** A guest's virtual-command allocator: every vIOMMU unit asks the same host, so units share `live`. */
  class Vcmd implements IoasidAllocatorOps {
    constructor(readonly live = new Set<number>()) {}
    next = 500;
    fail: Errno | null = null;
    alloc(min: number, max: number): number {
      if (this.fail !== null) throw new KernelError(this.fail, "VCMD status: no PASID");
      let id = Math.max(min, this.next);
      while (this.live.has(id)) id++;
      if (id > max) throw new KernelError(Errno.ENOSPC, "VCMD: no PASID in range");
      this.live.add(id);
      return id;
    }
    free(id: number): void {
      this.live.delete(id);
    }
  }

  it("take over only while the default pool is empty (EAGAIN otherwise)", () => {
    const { core } = host();
    const set = core.allocSet(null, 10, "none");
    const id = core.alloc(set, 1, 1000);
    const vcmd = new Vcmd();
    refused(core, Errno.EAGAIN, () => core.registerAllocator(vcmd));
    core.free(set, id);
    core.registerAllocator(vcmd);
    expect(core.customAllocatorActive).toBe(true);
    expect(core.alloc(set, 1, 1000)).toBe(500);
    expect(vcmd.live.has(500)).toBe(true);
    core.free(set, asIoasid(500));
    expect(vcmd.live.has(500)).toBe(false);
  });

  it("refuse the same ops twice, share one ID space between ops with the same functions, fall back to the default", () => {
    const { core } = host();
    const set = core.allocSet(null, 10, "none");
    const unit0 = new Vcmd();
    const unit1 = new Vcmd(unit0.live);
    core.registerAllocator(unit0);
    refused(core, Errno.EEXIST, () => core.registerAllocator(unit0));
    core.registerAllocator(unit1);
    const a = core.alloc(set, 1, 1000);
    expect(unit0.live.has(a)).toBe(true);
    // unit0 leaves; unit1 serves the shared space and the outstanding ID survives.
    core.unregisterAllocator(unit0);
    expect(core.state(a)).toBe("ACTIVE");
    const b = core.alloc(set, 1, 1000);
    expect(unit1.live.has(b)).toBe(true);
    refused(core, Errno.EBUSY, () => core.unregisterAllocator(unit1));
    core.free(set, a);
    core.free(set, b);
    core.unregisterAllocator(unit1);
    refused(core, Errno.ENOENT, () => core.unregisterAllocator(unit1));
    expect(core.customAllocatorActive).toBe(false);
    expect(core.alloc(set, 1, 1000)).toBe(1);
  });

  it("pass a guest allocator's errno through and roll back a bogus answer", () => {
    const { core } = host();
    const set = core.allocSet(null, 10, "none");
    const vcmd = new Vcmd();
    core.registerAllocator(vcmd);
    vcmd.fail = Errno.ENOSPC;
    refused(core, Errno.ENOSPC, () => core.alloc(set, 1, 1000));
    expect(vcmd.live.size).toBe(0);
    core.unregisterAllocator(vcmd);
    const freed: number[] = [];
    const liar: IoasidAllocatorOps = { alloc: () => 500, free: (id) => void freed.push(id) };
    core.registerAllocator(liar);
    // An answer outside the asked range is handed back to the allocator and refused.
    refused(core, Errno.EIO, () => core.alloc(set, 1, 10));
    expect(freed).toEqual([500]);
    freed.length = 0;
    expect(core.alloc(set, 1, 1000)).toBe(500);
    // 500 again: in use here, so it is refused and not freed back from under its holder.
    refused(core, Errno.EIO, () => core.alloc(set, 1, 1000));
    expect(freed).toEqual([]);
    expect(core.state(asIoasid(500))).toBe("ACTIVE");
  });
});
