import { asIoasid, asSpid, Errno, Kernel, KernelError, NOTIFY_OK, TraceRecorder } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { describe, expect, it } from "vitest";
import { AllocatorRegistry } from "./allocators.js";
import { INVALID_IOASID, IoasidCore, type IoasidCoreOptions } from "./core.js";
import { IdTable } from "./id-table.js";
import type { IoasidAllocatorOps, IoasidNotifierBlock, IoasidSet } from "./types.js";

function host(opts: Partial<IoasidCoreOptions> = {}) {
  const kernel = new Kernel();
  const core = new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults, ...opts });
  return { kernel, core };
}

function refused(core: IoasidCore, errno: Errno, fn: () => unknown): void {
  const before = core.snapshot();
  expect(errnoOf(fn)).toBe(errno);
  expect(core.snapshot()).toEqual(before);
}

const block = (log: string[] = [], name = "nb", priority = 1): IoasidNotifierBlock => ({
  priority,
  call: (event, data) => {
    log.push(`${name}:${event}:${data.id}`);
    return NOTIFY_OK;
  },
});

describe("input checks return errnos, never a TypeError", () => {
  it("set handles that are not objects, or objects this core never made", () => {
    const { core } = host();
    core.allocSet(null, 4, "none");
    for (const bad of [null, undefined, 1, "set", { id: 1 }, { id: "1" }]) {
      refused(core, Errno.EINVAL, () => core.alloc(bad as unknown as IoasidSet, 1, 10));
    }
  });

  it("notifier blocks: not an object, no call function, or a non-integer priority", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const callable = Object.assign(() => NOTIFY_OK, { priority: 1 });
    for (const bad of [callable, { priority: 1 }, { priority: 1, call: "x" }, { priority: 1.5, call: () => NOTIFY_OK }, { call: () => NOTIFY_OK }]) {
      const nb = bad as unknown as IoasidNotifierBlock;
      refused(core, Errno.EINVAL, () => core.registerNotifier(null, nb));
      refused(core, Errno.EINVAL, () => core.registerNotifier(set, nb));
      refused(core, Errno.EINVAL, () => core.registerNotifierMm({}, nb));
    }
    refused(core, Errno.EINVAL, () => core.registerNotifierMm(undefined, block()));
  });

  it("allocator ops: a function with alloc and free properties is not an ops object", () => {
    const { core } = host();
    const fnOps = Object.assign(() => 0, { alloc: () => 1, free: () => undefined });
    refused(core, Errno.EINVAL, () => core.registerAllocator(fnOps));
    expect(core.customAllocatorActive).toBe(false);
  });

  it("quota adjustments to 0 or past 32 bits, SPID INVALID_IOASID lookups, and capacity 1", () => {
    const { core } = host({ capacity: 1 });
    expect(core.capacity).toBe(1);
    const set = core.allocSet(null, 1, "none");
    expect(set.id).toBe(1);
    refused(core, Errno.EINVAL, () => core.adjustSet(set, 0));
    refused(core, Errno.EINVAL, () => core.adjustSet(set, 0x1_0000_0000));
    refused(core, Errno.EINVAL, () => core.adjustSet(set, 0.5));
    refused(core, Errno.EINVAL, () => core.findBySpid(set, INVALID_IOASID as never));
    expect(core.alloc(set, 0, 0xffff_ffff)).toBe(1);
    refused(core, Errno.ENOSPC, () => core.alloc(set, 0, 1));
  });
});

describe("edges of the ID life cycle", () => {
  it("reclaiming an ID without an SPID leaves another ID's SPID 0 in place", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const a = core.alloc(set, 1, 10);
    const b = core.alloc(set, 1, 10);
    core.attachSpid(set, a, asSpid(0));
    expect(core.free(set, b)).toBe(true);
    expect(core.findBySpid(set, asSpid(0), false)).toBe(a);
    expect(core.free(set, a)).toBe(true);
    expect(errnoOf(() => core.findBySpid(set, asSpid(0), false))).toBe(Errno.ENOENT);
  });

  it("data may be attached to an ID allocated with null private data", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const id = core.alloc(set, 1, 10, null);
    core.attachData(set, id, "mine");
    expect(core.find(set, id)).toBe("mine");
  });

  it("an ID of a dying set takes no SPID (EINVAL: the set is being destroyed)", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const id = core.alloc(set, 1, 10);
    core.get(set, id);
    core.setPut(set);
    refused(core, Errno.EINVAL, () => core.attachSpid(set, id, asSpid(3)));
    core.put(null, id);
  });

  it("setForEachIoasid skips an ID the callback reclaimed before its turn", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const a = core.alloc(set, 1, 10);
    const b = core.alloc(set, 1, 10);
    const seen: number[] = [];
    core.setForEachIoasid(set, (id) => {
      seen.push(id);
      if (id === a) core.free(set, b);
    });
    expect(seen).toEqual([a]);
  });

  it("a set with a none token never releases an mm set that shares the token object", () => {
    const { core } = host();
    const token = { vm: 1 };
    const mmSet = core.allocSet(token, 4, "mm");
    const none = core.allocSet(token, 4, "none");
    core.setPut(none);
    expect(core.findSetByToken(token, "mm")).toBe(mmSet);
    expect(errnoOf(() => core.allocSet(token, 4, "mm"))).toBe(Errno.EEXIST);
  });

  it("a custom allocator's failed free is only logged: a core without a log keeps going", () => {
    const { core } = host();
    const ops: IoasidAllocatorOps = {
      alloc: (min) => min,
      free: () => {
        throw new KernelError(Errno.EIO, "no");
      },
    };
    core.registerAllocator(ops);
    const set = core.allocSet(null, 4, "none");
    const id = core.alloc(set, 5, 10);
    expect(core.free(set, id)).toBe(true);
    expect(core.state(asIoasid(5))).toBe("IDLE");
  });
});

describe("notifier registration edges", () => {
  it("a set that dies takes its mm registrations off its chain: the dead set counts no notifiers", () => {
    const { core } = host();
    const mm = {};
    core.registerNotifierMm(mm, block());
    const set = core.allocSet(mm, 4, "mm");
    const id = core.alloc(set, 1, 10);
    core.get(set, id);
    expect(core.snapshot().sets[0]?.notifiers).toBe(1);
    core.setPut(set);
    expect(core.snapshot().sets).toEqual([expect.objectContaining({ alive: false, notifiers: 0 })]);
    core.put(null, id);
  });

  it("a block registered by mm token on one set may be registered and unregistered directly on another", () => {
    const { core } = host();
    const mm = {};
    const nb = block();
    const direct = block([], "direct");
    const mmSet = core.allocSet(mm, 4, "mm");
    core.registerNotifierMm(mm, nb);
    const other = core.allocSet("vm", 4, "none");
    core.registerNotifier(other, nb);
    core.unregisterNotifier(other, nb);
    // On the mm set itself, only the block registered by token is refused.
    core.registerNotifier(mmSet, direct);
    core.unregisterNotifier(mmSet, direct);
    expect(errnoOf(() => core.unregisterNotifier(mmSet, nb))).toBe(Errno.EINVAL);
  });

  it("nothing is traced for a notification nobody is registered for, and set allocation without pending mm blocks traces no move", () => {
    const { core, kernel } = host();
    const rec = new TraceRecorder(kernel.trace);
    const mm = {};
    const set = core.allocSet(mm, 4, "mm");
    const id = core.alloc(set, 1, 10);
    core.free(set, id);
    core.setPut(set);
    expect(rec.ofKind("ioasid.notify")).toEqual([]);
    expect(rec.ofKind("ioasid.notifier.mm")).toEqual([]);
  });

  it("counts the blocks of both scopes in the notify trace", () => {
    const { core, kernel } = host();
    const rec = new TraceRecorder(kernel.trace);
    const set = core.allocSet(null, 4, "none");
    core.registerNotifier(null, block());
    core.registerNotifier(set, block());
    core.registerNotifier(set, block([], "b2", 2));
    core.alloc(set, 1, 10);
    expect(rec.ofKind("ioasid.notify").map((e) => e.payload.blocks)).toEqual([3]);
  });
});

describe("custom allocator groups", () => {
  it("ops sharing only alloc or only free are different groups; a member joining a waiting group is not active", () => {
    const { core, kernel } = host();
    const rec = new TraceRecorder(kernel.trace);
    const alloc = (min: number) => min;
    const free = () => undefined;
    const first: IoasidAllocatorOps = { alloc, free };
    const otherFree = () => undefined;
    const sameAlloc: IoasidAllocatorOps = { alloc, free: otherFree };
    const sameFree: IoasidAllocatorOps = { alloc: (min) => min, free };
    const joinsFirst: IoasidAllocatorOps = { alloc, free };
    const joinsSameAlloc: IoasidAllocatorOps = { alloc, free: otherFree };
    core.registerAllocator(first);
    core.registerAllocator(sameAlloc);
    core.registerAllocator(sameFree);
    core.registerAllocator(joinsFirst);
    core.registerAllocator(joinsSameAlloc);
    expect(rec.ofKind("ioasid.allocator.register").map((e) => e.payload)).toEqual([
      { active: true, shared: false },
      { active: false, shared: false },
      { active: false, shared: false },
      { active: true, shared: true },
      { active: false, shared: true },
    ]);
    // Registered in a later group: still refused as a duplicate.
    refused(core, Errno.EEXIST, () => core.registerAllocator(sameFree));
    refused(core, Errno.EEXIST, () => core.registerAllocator(joinsSameAlloc));
  });
});

describe("observability", () => {
  it("snapshot lists every allocated ID of every set, in ID order, with its state, refcount, set, SPID and data", () => {
    const { core } = host();
    const a = core.allocSet(null, 4, "none");
    const b = core.allocSet(null, 4, "none");
    const x = core.alloc(a, 7, 10, "x");
    const y = core.alloc(b, 1, 10);
    const z = core.alloc(a, 2, 10);
    core.attachSpid(a, z, asSpid(40));
    core.get(a, x);
    core.free(a, x);
    expect(core.snapshot().ids).toEqual([
      { id: y, state: "ACTIVE", refcount: 1, set: b.id, spid: null, private: undefined },
      { id: z, state: "ACTIVE", refcount: 1, set: a.id, spid: 40, private: undefined },
      { id: x, state: "FREE_PENDING", refcount: 1, set: a.id, spid: null, private: "x" },
    ]);
    expect(core.snapshot().allocated).toBe(3);
  });

  it("names its workqueue after the core", () => {
    expect(host().core.workqueue.name).toBe("ioasid_wq");
    expect(host({ name: "guest1" }).core.workqueue.name).toBe("guest1_wq");
  });

  it("refuses an mm set without an mm (null or undefined token)", () => {
    const { core } = host();
    refused(core, Errno.EINVAL, () => core.allocSet(null, 4, "mm"));
    refused(core, Errno.EINVAL, () => core.allocSet(undefined, 4, "mm"));
  });

  it("keeps a set's ID list whole when an ID in the middle is reclaimed and another appended", () => {
    const { core } = host();
    const set = core.allocSet(null, 8, "none");
    const [a, b, c] = [core.alloc(set, 1, 10), core.alloc(set, 1, 10), core.alloc(set, 1, 10)];
    core.free(set, b);
    const d = core.alloc(set, 5, 10);
    const seen: number[] = [];
    core.setForEachIoasid(set, (id) => seen.push(id));
    expect(seen).toEqual([a, c, d]);
    expect(core.freeSet(set)).toBe(3);
    expect(core.allocated).toBe(0);
  });

  it("counts a live ID's table bytes as the sum of its typed slots plus one pointer", () => {
    const t = new IdTable(16);
    const typed = [t.state, t.refs, t.set, t.spid, t.next, t.prev].reduce((n, a) => n + a.BYTES_PER_ELEMENT, 0);
    expect(IdTable.bytesPerId).toBe(typed + 8);
  });

  it("the allocator registry counts its members across groups", () => {
    const r = new AllocatorRegistry();
    const alloc = () => 1;
    const free = () => undefined;
    expect(r.registered).toBe(0);
    r.add({ alloc, free });
    r.add({ alloc, free });
    r.add({ alloc: () => 2, free });
    expect(r.registered).toBe(3);
  });
});
