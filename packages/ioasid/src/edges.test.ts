import { asIoasid, asSpid, Errno, type Ioasid, Kernel, KernelError, NOTIFY_OK, TraceRecorder } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import { INVALID_IOASID, IoasidCore, type IoasidCoreOptions } from "./core.js";
import { type IoasidAllocatorOps, type IoasidEvent, type IoasidNotifierBlock, IoasidPriority } from "./types.js";

function host(opts: Partial<IoasidCoreOptions> = {}) {
  const kernel = new Kernel();
  const core = new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults, ...opts });
  return { kernel, core };
}

/** Expects a KernelError with `errno` and no observable change. */
function refused(core: IoasidCore, errno: Errno, fn: () => unknown): void {
  const before = core.snapshot();
  expect(errnoOf(fn)).toBe(errno);
  expect(core.snapshot()).toEqual(before);
}

function listener(name: string, log: string[], priority: number = IoasidPriority.CPU): IoasidNotifierBlock {
  return {
    priority,
    call(event: IoasidEvent, data) {
      log.push(`${name}:${event}:${data.id}`);
      return NOTIFY_OK;
    },
  };
}

describe("freeing a set over FREE_PENDING IDs that still have references", () => {
  it("freeSet frees only the ACTIVE IDs: a FREE_PENDING ID keeps its holder's reference and gets no second FREE", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const log: string[] = [];
    core.registerNotifier(set, listener("kvm", log));
    const held = core.alloc(set, 1, 10);
    const other = core.alloc(set, 1, 10);
    core.get(set, held);
    expect(core.free(set, held)).toBe(false);
    log.length = 0;
    expect(core.freeSet(set)).toBe(1);
    expect(log).toEqual([`kvm:FREE:${other}`]);
    expect(core.state(held)).toBe("FREE_PENDING");
    expect(core.refcount(held)).toBe(1);
    expect(core.state(other)).toBe("IDLE");
    expect(set.count).toBe(1);
    // The holder lets go: that reclaims it, once.
    expect(core.put(set, held)).toBe(true);
    expect(core.state(held)).toBe("IDLE");
    expect(set.count).toBe(0);
    expect(core.freeSet(set)).toBe(0);
  });

  it("setPut keeps a dead set's storage and quota until its last FREE_PENDING ID's last reference is put", () => {
    const { core } = host({ capacity: 100 });
    const set = core.allocSet(null, 10, "none");
    const held = core.alloc(set, 1, 10);
    const plain = core.alloc(set, 1, 10);
    core.get(set, held);
    core.get(set, held);
    core.free(set, held);
    expect(core.refcount(held)).toBe(2);
    core.setPut(set);
    expect(set.alive).toBe(false);
    expect(core.state(plain)).toBe("IDLE");
    expect(core.state(held)).toBe("FREE_PENDING");
    expect(core.refcount(held)).toBe(2);
    expect(core.available).toBe(90);
    expect(core.snapshot().sets).toEqual([expect.objectContaining({ id: set.id, alive: false, count: 1 })]);
    // A dead set takes no new reference, ID or set reference.
    refused(core, Errno.EINVAL, () => core.setGet(set));
    refused(core, Errno.EINVAL, () => core.alloc(set, 1, 10));
    refused(core, Errno.EINVAL, () => core.setPut(set));
    expect(core.put(set, held)).toBe(false);
    expect(core.available).toBe(90);
    expect(core.put(null, held)).toBe(true);
    expect(core.available).toBe(100);
    expect(core.snapshot().sets).toEqual([]);
    expect(core.allocated).toBe(0);
    // The set's id is handed out again.
    expect(core.allocSet(null, 1, "none").id).toBe(set.id);
  });

  it("setPut drops one reference at a time and destroys the set only at the last", () => {
    const { core } = host({ capacity: 50 });
    const set = core.allocSet(null, 5, "none");
    const id = core.alloc(set, 1, 10);
    core.setGet(set);
    expect(set.refcount).toBe(2);
    core.setPut(set);
    expect(set.refcount).toBe(1);
    expect(set.alive).toBe(true);
    expect(core.state(id)).toBe("ACTIVE");
    core.setPut(set);
    expect(set.alive).toBe(false);
    expect(core.state(id)).toBe("IDLE");
    expect(core.available).toBe(50);
  });
});

describe("private data on FREE_PENDING IDs", () => {
  it("refuses attaching data once freed but lets a FREE handler clear it", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const id = core.alloc(set, 1, 10, "vdcm");
    refused(core, Errno.EBUSY, () => core.attachData(set, id, "other"));
    core.get(set, id);
    core.free(set, id);
    refused(core, Errno.ENOENT, () => core.attachData(set, id, "late"));
    expect(core.info(id)?.private).toBe("vdcm");
    core.attachData(set, id, null);
    expect(core.info(id)?.private).toBeUndefined();
    // Clearing is idempotent, and setting stays refused.
    core.attachData(set, id, undefined);
    refused(core, Errno.ENOENT, () => core.attachData(set, id, "late"));
    expect(core.put(set, id)).toBe(true);
  });

  it("attaches data after it was cleared, and find returns it", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const id = core.alloc(set, 1, 10);
    expect(core.find(set, id)).toBeUndefined();
    core.attachData(set, id, { mdev: 1 });
    expect(core.find(set, id)).toEqual({ mdev: 1 });
    core.attachData(set, id, null);
    core.attachData(set, id, { mdev: 2 });
    expect(core.find(null, id)).toEqual({ mdev: 2 });
    expect(core.find(set, id, () => false)).toBeNull();
  });
});

describe("mm notifier registration", () => {
  it("registers straight onto an existing empty mm set (nothing pending) and receives its events", () => {
    const { core } = host();
    const mm = { pid: 7 };
    const set = core.allocSet(mm, 4, "mm");
    const log: string[] = [];
    core.registerNotifierMm(mm, listener("kvm", log));
    expect(core.pendingNotifiers(mm)).toBe(0);
    expect(core.snapshot().sets[0]?.notifiers).toBe(1);
    const id = core.alloc(set, 1, 10);
    core.free(set, id);
    expect(log).toEqual([`kvm:ALLOC:${id}`, `kvm:FREE:${id}`]);
  });

  it("keeps several mms apart: each block hears only its own mm's set, and one set dying leaves the others registered", () => {
    const { core } = host();
    const mmA = { pid: 1 };
    const mmB = { pid: 2 };
    const log: string[] = [];
    core.registerNotifierMm(mmA, listener("a", log));
    const setB = core.allocSet(mmB, 4, "mm");
    core.registerNotifierMm(mmB, listener("b", log));
    const setA = core.allocSet(mmA, 4, "mm");
    expect(core.pendingNotifiers(mmA)).toBe(0);
    expect(core.pendingNotifiers(mmB)).toBe(0);
    const a = core.alloc(setA, 1, 10);
    const b = core.alloc(setB, 1, 10);
    expect(log).toEqual([`a:ALLOC:${a}`, `b:ALLOC:${b}`]);
    log.length = 0;
    core.setPut(setA);
    expect(log).toEqual([`a:FREE:${a}`]);
    expect(core.pendingNotifiers(mmA)).toBe(1);
    expect(core.pendingNotifiers(mmB)).toBe(0);
    expect(core.findSetByToken(mmA)).toBeNull();
    expect(core.findSetByToken(mmB)).toBe(setB);
    log.length = 0;
    const b2 = core.alloc(setB, 1, 10);
    expect(log).toEqual([`b:ALLOC:${b2}`]);
    // mmA's next set picks its block up again.
    const setA2 = core.allocSet(mmA, 4, "mm");
    const a2 = core.alloc(setA2, 1, 10);
    expect(log).toEqual([`b:ALLOC:${b2}`, `a:ALLOC:${a2}`]);
  });

  it("a set dying sends back to pending only the registrations made for its token", () => {
    const { core } = host();
    const mm = {};
    const log: string[] = [];
    const set = core.allocSet(mm, 4, "mm");
    const byToken = listener("token", log);
    const direct = listener("direct", log, IoasidPriority.DEVICE);
    core.registerNotifierMm(mm, byToken);
    core.registerNotifier(set, direct);
    core.setPut(set);
    expect(core.pendingNotifiers(mm)).toBe(1);
    const next = core.allocSet(mm, 4, "mm");
    const id = core.alloc(next, 1, 10);
    expect(log).toEqual([`token:ALLOC:${id}`]);
  });

  it("unregisters exactly the named registration: the same block on another mm, and another block on the same mm, stay", () => {
    const { core } = host();
    const mmA = { pid: 1 };
    const mmB = { pid: 2 };
    const log: string[] = [];
    const shared = listener("shared", log);
    const other = listener("other", log, IoasidPriority.DEVICE);
    core.registerNotifierMm(mmA, shared);
    core.registerNotifierMm(mmB, shared);
    core.registerNotifierMm(mmA, other);
    const setA = core.allocSet(mmA, 4, "mm");
    const setB = core.allocSet(mmB, 4, "mm");
    core.unregisterNotifierMm(mmB, shared);
    expect(errnoOf(() => core.unregisterNotifierMm(mmB, shared))).toBe(Errno.ENOENT);
    const a = core.alloc(setA, 1, 10);
    core.alloc(setB, 1, 10);
    expect(log).toEqual([`shared:ALLOC:${a}`, `other:ALLOC:${a}`]);
    log.length = 0;
    core.setPut(setA);
    core.unregisterNotifierMm(mmA, other);
    expect(core.pendingNotifiers(mmA)).toBe(1);
    const setA2 = core.allocSet(mmA, 4, "mm");
    const a2 = core.alloc(setA2, 1, 10);
    expect(log).toEqual([`shared:FREE:${a}`, `other:FREE:${a}`, `shared:ALLOC:${a2}`]);
  });

  it("unregisters a pending registration without touching the set registrations of other tokens", () => {
    const { core } = host();
    const mm = {};
    const nb = listener("kvm", []);
    core.registerNotifierMm(mm, nb);
    expect(core.pendingNotifiers(mm)).toBe(1);
    core.unregisterNotifierMm(mm, nb);
    expect(core.pendingNotifiers(mm)).toBe(0);
    core.allocSet(mm, 4, "mm");
    expect(core.snapshot().sets[0]?.notifiers).toBe(0);
    expect(errnoOf(() => core.registerNotifierMm(null, nb))).toBe(Errno.EINVAL);
    expect(errnoOf(() => core.registerNotifierMm(mm, { priority: 1.5, call: () => NOTIFY_OK }))).toBe(Errno.EINVAL);
  });

  it("unregisters a directly registered set block, and refuses one never registered", () => {
    const { core } = host();
    const set = core.allocSet("vm", 4, "none");
    const log: string[] = [];
    const nb = listener("vdcm", log);
    core.registerNotifier(set, nb);
    core.unregisterNotifier(set, nb);
    refused(core, Errno.ENOENT, () => core.unregisterNotifier(set, nb));
    refused(core, Errno.ENOENT, () => core.unregisterNotifier(null, nb));
    core.alloc(set, 1, 10);
    expect(log).toEqual([]);
  });
});

describe("findSetByToken", () => {
  it("tells two live sets apart by token and type, prefers the oldest none set, and skips dead ones", () => {
    const { core } = host();
    const mmA = { pid: 1 };
    const mmB = { pid: 2 };
    const a = core.allocSet(mmA, 4, "mm");
    const b = core.allocSet(mmB, 4, "mm");
    expect(core.findSetByToken(mmA)).toBe(a);
    expect(core.findSetByToken(mmB, "mm")).toBe(b);
    expect(core.findSetByToken(mmA, "none")).toBeNull();
    const n1 = core.allocSet("vm", 4, "none");
    const n2 = core.allocSet("vm", 4, "none");
    const n3 = core.allocSet("other", 4, "none");
    expect(core.findSetByToken("vm", "none")).toBe(n1);
    expect(core.findSetByToken("other", "none")).toBe(n3);
    expect(core.findSetByToken("vm")).toBeNull();
    // n1 dies with an ID still referenced: it is kept (dead) until that ID is reclaimed, but never found.
    const held = core.alloc(n1, 1, 10);
    core.get(n1, held);
    core.setPut(n1);
    expect(n1.alive).toBe(false);
    expect(core.findSetByToken("vm", "none")).toBe(n2);
    core.put(null, held);
    core.setPut(n2);
    expect(core.findSetByToken("vm", "none")).toBeNull();
    core.setPut(a);
    expect(core.findSetByToken(mmA)).toBeNull();
    expect(core.findSetByToken(mmB)).toBe(b);
  });
});

describe("custom allocators", () => {
  /** Hands out IDs from `next` up; records frees. Instances share functions, hence one group. */
  class Pool implements IoasidAllocatorOps {
    readonly freed: number[] = [];
    readonly calls: [number, number][] = [];
    constructor(public next: number) {}
    alloc(min: number, max: number): number {
      this.calls.push([min, max]);
      return this.next++;
    }
    free(id: number): void {
      this.freed.push(id);
    }
  }

  it("refuses an answer below or above the range, not an integer, or INVALID_IOASID with EIO, handing back only real u32 IDs", () => {
    const { core } = host({ capacity: 100 });
    const set = core.allocSet(null, 10, "none");
    let answer = 0;
    const freed: number[] = [];
    const ops: IoasidAllocatorOps = { alloc: () => answer, free: (id) => void freed.push(id) };
    core.registerAllocator(ops);
    for (const [bad, handedBack] of [
      [4, [4]],
      [21, [21]],
      [0, [0]],
      [101, [101]],
      [7.5, []],
      [-1, []],
      [INVALID_IOASID, []],
      [0x1_0000_0000, []],
    ] as const) {
      answer = bad;
      freed.length = 0;
      refused(core, Errno.EIO, () => core.alloc(set, 5, 20));
      expect(freed).toEqual(handedBack);
    }
    answer = 5;
    expect(core.alloc(set, 5, 20)).toBe(5);
    answer = 20;
    expect(core.alloc(set, 5, 20)).toBe(20);
    expect(freed).toEqual([]);
  });

  it("asks the allocator with the range clamped to the namespace", () => {
    const { core } = host({ capacity: 100 });
    const set = core.allocSet(null, 10, "none");
    const pool = new Pool(50);
    core.registerAllocator(pool);
    core.alloc(set, 0, 0xffff_ffff);
    expect(pool.calls).toEqual([[1, 100]]);
  });

  it("keeps later groups waiting in registration order and activates the next group when the active one empties", () => {
    const { core, kernel } = host();
    const rec = new TraceRecorder(kernel.trace);
    const set = core.allocSet(null, 10, "none");
    const a0 = new Pool(100);
    const a1 = new Pool(100);
    const other: IoasidAllocatorOps & { freed: number[] } = {
      freed: [],
      alloc: () => 700,
      free(id: number) {
        this.freed.push(id);
      },
    };
    const third: IoasidAllocatorOps = { alloc: () => 900, free: () => undefined };
    core.registerAllocator(a0);
    core.registerAllocator(other);
    core.registerAllocator(a1);
    core.registerAllocator(third);
    expect(rec.ofKind("ioasid.allocator.register").map((e) => e.payload)).toEqual([
      { active: true, shared: false },
      { active: false, shared: false },
      { active: true, shared: true },
      { active: false, shared: false },
    ]);
    const id = core.alloc(set, 1, 1000);
    expect(id).toBe(100);
    // Removing a waiting group, even with IDs outstanding in the active one, is fine.
    core.unregisterAllocator(third);
    // The active group cannot go while its ID is outstanding; one of its members can.
    core.unregisterAllocator(a0);
    refused(core, Errno.EBUSY, () => core.unregisterAllocator(a1));
    // The remaining member of the group now serves its space.
    core.free(set, id);
    expect(a0.freed).toEqual([]);
    expect(a1.freed).toEqual([100]);
    core.unregisterAllocator(a1);
    expect(core.customAllocatorActive).toBe(true);
    expect(core.alloc(set, 1, 1000)).toBe(700);
    expect(a0.calls).toEqual([[1, 1000]]);
    expect(a1.calls).toEqual([]);
    core.free(set, asIoasid(700));
    expect(other.freed).toEqual([700]);
    core.unregisterAllocator(other);
    expect(core.customAllocatorActive).toBe(false);
    expect(rec.ofKind("ioasid.allocator.unregister").map((e) => e.payload.fallback)).toEqual(["none", "none", "custom", "default"]);
    expect(core.alloc(set, 1, 1000)).toBe(1);
  });

  it("refuses ops without alloc or free", () => {
    const { core } = host();
    refused(core, Errno.EINVAL, () => core.registerAllocator({ alloc: () => 1 } as unknown as IoasidAllocatorOps));
    refused(core, Errno.EINVAL, () => core.registerAllocator({ free: () => undefined } as unknown as IoasidAllocatorOps));
    refused(core, Errno.ENOENT, () => core.unregisterAllocator(new Pool(1)));
  });

  it("logs but does not propagate a custom allocator that refuses to free; a non-kernel error is a bug and propagates", () => {
    const kernel = new Kernel();
    const core = new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults, log: kernel.log });
    const rec = new TraceRecorder(kernel.trace);
    const set = core.allocSet(null, 10, "none");
    let err: Error = new KernelError(Errno.EIO, "host said no");
    const ops: IoasidAllocatorOps = {
      alloc: (min) => min,
      free: () => {
        throw err;
      },
    };
    core.registerAllocator(ops);
    const id = core.alloc(set, 3, 10);
    expect(core.free(set, id)).toBe(true);
    expect(core.state(id)).toBe("IDLE");
    expect(rec.ofKind("kernel.log").map((e) => e.payload.message)).toEqual([expect.stringContaining("host said no")]);
    err = new TypeError("bug");
    const id2 = core.alloc(set, 3, 10);
    expect(() => core.free(set, id2)).toThrow(TypeError);
  });
});

describe("ID table growth", () => {
  it("keeps every field of IDs below 1024 when IDs past it are allocated, and frees them all with the set", () => {
    const { core } = host({ capacity: 5000 });
    const set = core.allocSet(null, 0, "none");
    const low: Ioasid[] = [];
    for (let i = 0; i < 3; i++) low.push(core.alloc(set, 1020, 5000, `low${i}`));
    expect(low).toEqual([1020, 1021, 1022]);
    core.attachSpid(set, asIoasid(1021), asSpid(42));
    core.get(set, asIoasid(1022));
    const high = core.alloc(set, 1023, 5000, "high");
    const far = core.alloc(set, 4500, 5000, "far");
    const top = core.alloc(set, 5000, 5000, "top");
    expect([high, far, top]).toEqual([1023, 4500, 5000]);
    const next = core.alloc(set, 1023, 5000, "next");
    expect(next).toBe(1024);
    expect(core.info(asIoasid(1020))).toMatchObject({ state: "ACTIVE", refcount: 1, private: "low0", spid: null });
    expect(core.info(asIoasid(1021))).toMatchObject({ state: "ACTIVE", refcount: 1, private: "low1", spid: 42 });
    expect(core.info(asIoasid(1022))).toMatchObject({ state: "ACTIVE", refcount: 2, private: "low2" });
    expect(core.info(far)).toMatchObject({ state: "ACTIVE", refcount: 1, private: "far", spid: null });
    expect(core.findBySpid(set, asSpid(42), false)).toBe(1021);
    const seen: number[] = [];
    core.setForEachIoasid(set, (id) => seen.push(id));
    expect(seen).toEqual([1020, 1021, 1022, 1023, 1024, 4500, 5000]);
    expect(core.freeSet(set)).toBe(7);
    expect(core.allocated).toBe(1);
    expect(core.state(asIoasid(1022))).toBe("FREE_PENDING");
    expect(core.state(far)).toBe("IDLE");
    expect(core.info(asIoasid(4999))).toBeNull();
  });

  it("grows a list-linked set past 1024 IDs one by one and unlinks from the middle", () => {
    const { core } = host({ capacity: 3000 });
    const set = core.allocSet(null, 0, "none");
    for (let i = 1; i <= 2100; i++) core.alloc(set, 1, 3000);
    expect(set.count).toBe(2100);
    core.free(set, asIoasid(1500));
    core.free(set, asIoasid(1));
    core.free(set, asIoasid(2100));
    let n = 0;
    let last = 0;
    core.setForEachIoasid(set, (id) => {
      n++;
      expect(id).toBeGreaterThan(last);
      last = id;
    });
    expect(n).toBe(2097);
    expect(core.alloc(set, 1, 3000)).toBe(1);
    expect(core.alloc(set, 1, 3000)).toBe(1500);
    expect(core.alloc(set, 1, 3000)).toBe(2100);
    expect(core.freeSet(set)).toBe(2100);
    expect(core.allocated).toBe(0);
  });
});

describe("trace events", () => {
  it("name every step of a life cycle with its ids, payload and refcount", () => {
    const { core, kernel } = host({ capacity: 100 });
    const rec = new TraceRecorder(kernel.trace);
    const mm = { pid: 9 };
    const nb = listener("kvm", []);
    core.registerNotifierMm(mm, nb);
    const set = core.allocSet(mm, 10, "mm");
    core.adjustSet(set, 20);
    core.setGet(set);
    const id = core.alloc(set, 2, 50, "p");
    core.get(set, id);
    core.attachSpid(set, id, asSpid(77));
    expect(core.findBySpid(set, asSpid(77))).toBe(id);
    core.put(set, id);
    core.attachData(set, id, null);
    core.detachSpid(set, id);
    core.put(null, id);
    core.free(set, id);
    core.setPut(set);
    core.setPut(set);
    core.unregisterNotifierMm(mm, nb);
    const s = set.id;
    const got = rec.events.map((e) => ({ kind: e.kind, actor: e.actor, ids: e.ids, payload: e.payload, refcount: e.refcount }));
    expect(got).toEqual([
      { kind: "ioasid.notifier.register", actor: "IOASID", ids: {}, payload: { priority: IoasidPriority.CPU, scope: "mm-pending" }, refcount: undefined },
      { kind: "ioasid.set.alloc", actor: "IOASID", ids: { set: s }, payload: { type: "mm", quota: 10, available: 90 }, refcount: undefined },
      { kind: "ioasid.notifier.mm", actor: "IOASID", ids: { set: s }, payload: { active: true, count: 1 }, refcount: undefined },
      { kind: "ioasid.set.adjust", actor: "IOASID", ids: { set: s }, payload: { from: 10, to: 20, available: 80 }, refcount: undefined },
      { kind: "ioasid.set.get", actor: "IOASID", ids: { set: s }, payload: {}, refcount: 2 },
      { kind: "ioasid.alloc", actor: "IOASID", ids: { ioasid: id, set: s }, payload: { min: 2, max: 50, custom: false }, refcount: 1 },
      { kind: "ioasid.notify", actor: "IOASID", ids: { ioasid: id, set: s }, payload: { event: "ALLOC", blocks: 1 }, refcount: 1 },
      { kind: "ioasid.get", actor: "IOASID", ids: { ioasid: id, set: s }, payload: { bySpid: false }, refcount: 2 },
      { kind: "ioasid.spid.attach", actor: "IOASID", ids: { ioasid: id, set: s, gpasid: 77 }, payload: {}, refcount: 2 },
      { kind: "ioasid.notify", actor: "IOASID", ids: { ioasid: id, set: s, gpasid: 77 }, payload: { event: "BIND", blocks: 1 }, refcount: 2 },
      { kind: "ioasid.get", actor: "IOASID", ids: { ioasid: id, set: s, gpasid: 77 }, payload: { bySpid: true }, refcount: 3 },
      { kind: "ioasid.put", actor: "IOASID", ids: { ioasid: id, set: s }, payload: {}, refcount: 2 },
      { kind: "ioasid.data.attach", actor: "IOASID", ids: { ioasid: id, set: s }, payload: { cleared: true }, refcount: 2 },
      { kind: "ioasid.notify", actor: "IOASID", ids: { ioasid: id, set: s, gpasid: 77 }, payload: { event: "UNBIND", blocks: 1 }, refcount: 2 },
      { kind: "ioasid.spid.detach", actor: "IOASID", ids: { ioasid: id, set: s, gpasid: 77 }, payload: { notified: true }, refcount: 2 },
      { kind: "ioasid.put", actor: "IOASID", ids: { ioasid: id, set: s }, payload: {}, refcount: 1 },
      { kind: "ioasid.free", actor: "IOASID", ids: { ioasid: id, set: s }, payload: { pending: true }, refcount: 1 },
      { kind: "ioasid.notify", actor: "IOASID", ids: { ioasid: id, set: s }, payload: { event: "FREE", blocks: 1 }, refcount: 1 },
      { kind: "ioasid.put", actor: "IOASID", ids: { ioasid: id, set: s }, payload: {}, refcount: 0 },
      { kind: "ioasid.reclaim", actor: "IOASID", ids: { ioasid: id, set: s }, payload: {}, refcount: 0 },
      { kind: "ioasid.set.put", actor: "IOASID", ids: { set: s }, payload: {}, refcount: 1 },
      { kind: "ioasid.set.put", actor: "IOASID", ids: { set: s }, payload: {}, refcount: 0 },
      { kind: "ioasid.set.free", actor: "IOASID", ids: { set: s }, payload: { freed: 0 }, refcount: undefined },
      { kind: "ioasid.notifier.mm", actor: "IOASID", ids: { set: s }, payload: { active: false, count: 1 }, refcount: undefined },
      { kind: "ioasid.set.dead", actor: "IOASID", ids: { set: s }, payload: { remaining: 0 }, refcount: undefined },
      { kind: "ioasid.set.release", actor: "IOASID", ids: { set: s }, payload: { available: 100 }, refcount: undefined },
      { kind: "ioasid.notifier.unregister", actor: "IOASID", ids: {}, payload: { priority: IoasidPriority.CPU, scope: "mm-pending" }, refcount: undefined },
    ]);
    // Every event is numbered in order on the bus.
    expect(rec.events.map((e) => e.seq)).toEqual(rec.events.map((_, i) => (rec.events[0]?.seq ?? 0) + i));
  });

  it("names the scope of notifier registrations: system, set, and the mm set when it exists", () => {
    const { core, kernel } = host();
    const rec = new TraceRecorder(kernel.trace);
    const nb = listener("x", []);
    const set = core.allocSet("vm", 4, "none");
    const mm = {};
    const mmSet = core.allocSet(mm, 4, "mm");
    core.registerNotifier(null, nb);
    core.registerNotifier(set, nb);
    core.registerNotifierMm(mm, nb);
    core.unregisterNotifierMm(mm, nb);
    core.unregisterNotifier(set, nb);
    core.unregisterNotifier(null, nb);
    const reg = [...rec.ofKind("ioasid.notifier.register"), ...rec.ofKind("ioasid.notifier.unregister")];
    expect(reg.map((e) => [e.kind, e.ids, e.payload.scope])).toEqual([
      ["ioasid.notifier.register", {}, "system"],
      ["ioasid.notifier.register", { set: set.id }, "set"],
      ["ioasid.notifier.register", { set: mmSet.id }, "set"],
      ["ioasid.notifier.unregister", { set: mmSet.id }, "set"],
      ["ioasid.notifier.unregister", { set: set.id }, "set"],
      ["ioasid.notifier.unregister", {}, "system"],
    ]);
  });

  it("reports FREE_PENDING detach as not notified, and a free with references left as pending", () => {
    const { core, kernel } = host();
    const rec = new TraceRecorder(kernel.trace);
    const set = core.allocSet(null, 4, "none");
    const log: string[] = [];
    core.registerNotifier(null, listener("iommu", log, IoasidPriority.IOMMU));
    const id = core.alloc(set, 1, 10);
    core.attachSpid(set, id, asSpid(5));
    core.get(set, id);
    core.free(set, id);
    core.detachSpid(set, id);
    expect(log).toEqual([`iommu:ALLOC:${id}`, `iommu:BIND:${id}`, `iommu:FREE:${id}`]);
    expect(rec.ofKind("ioasid.spid.detach").map((e) => [e.payload.notified, e.refcount])).toEqual([[false, 1]]);
    expect(rec.ofKind("ioasid.free").map((e) => e.refcount)).toEqual([2]);
    expect(rec.ofKind("ioasid.reclaim")).toEqual([]);
    core.put(set, id);
    expect(rec.ofKind("ioasid.reclaim").map((e) => e.ids)).toEqual([{ ioasid: id, set: set.id }]);
  });
});
