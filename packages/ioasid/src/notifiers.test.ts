import { asSpid, Errno, Kernel, KernelBug, KernelError, NOTIFY_OK, NOTIFY_STOP, TraceRecorder, Work } from "@vsva/kernel";
import { describe, expect, it } from "vitest";
import { IoasidCore } from "./core.js";
import { type IoasidEvent, type IoasidNotifierBlock, type IoasidNotifyData, IoasidPriority } from "./types.js";

function host() {
  const kernel = new Kernel();
  const core = new IoasidCore({ scheduler: kernel.scheduler, trace: kernel.trace, faults: kernel.faults });
  return { kernel, core };
}

/** A subscriber that writes "name:EVENT" for each notification it gets. */
function listener(name: string, priority: number, log: string[], ret = NOTIFY_OK): IoasidNotifierBlock & { seen: IoasidNotifyData[] } {
  const seen: IoasidNotifyData[] = [];
  return {
    priority,
    seen,
    call(event: IoasidEvent, data: IoasidNotifyData) {
      log.push(`${name}:${event}`);
      seen.push(data);
      return ret;
    },
  };
}

describe("notifier priority and scope", () => {
  it("call CPU, DEVICE, IOMMU, LAST in that order across the set and system-wide scopes", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const log: string[] = [];
    core.registerNotifier(null, listener("iommu(system)", IoasidPriority.IOMMU, log));
    core.registerNotifier(null, listener("last(system)", IoasidPriority.LAST, log));
    core.registerNotifier(set, listener("vdcm(set)", IoasidPriority.DEVICE, log));
    core.registerNotifier(set, listener("kvm(set)", IoasidPriority.CPU, log));
    const id = core.alloc(set, 1, 10);
    log.length = 0;
    core.free(set, id);
    expect(log).toEqual(["kvm(set):FREE", "vdcm(set):FREE", "iommu(system):FREE", "last(system):FREE"]);
  });

  it("run the set scope before the system scope at equal priority, and stop the whole walk at NOTIFY_STOP", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const log: string[] = [];
    core.registerNotifier(null, listener("system", IoasidPriority.DEVICE, log));
    core.registerNotifier(set, listener("set", IoasidPriority.DEVICE, log));
    core.alloc(set, 1, 10);
    expect(log).toEqual(["set:ALLOC", "system:ALLOC"]);
    log.length = 0;
    core.registerNotifier(null, listener("stopper", IoasidPriority.CPU, log, NOTIFY_STOP));
    core.alloc(set, 1, 10);
    expect(log).toEqual(["stopper:ALLOC"]);
  });

  it("deliver a set's events only to that set's subscribers and the system-wide ones", () => {
    const { core } = host();
    const vm1 = core.allocSet(null, 4, "none");
    const vm2 = core.allocSet(null, 4, "none");
    const log: string[] = [];
    core.registerNotifier(vm1, listener("kvm1", IoasidPriority.CPU, log));
    core.registerNotifier(vm2, listener("kvm2", IoasidPriority.CPU, log));
    core.registerNotifier(null, listener("iommu", IoasidPriority.IOMMU, log));
    core.alloc(vm2, 1, 10);
    expect(log).toEqual(["kvm2:ALLOC", "iommu:ALLOC"]);
  });

  it("refuse double registration and unknown unregistration", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const nb = listener("x", 0, []);
    core.registerNotifier(set, nb);
    expect(() => core.registerNotifier(set, nb)).toThrow(expect.objectContaining({ errno: Errno.EEXIST }));
    core.unregisterNotifier(set, nb);
    expect(() => core.unregisterNotifier(set, nb)).toThrow(expect.objectContaining({ errno: Errno.ENOENT }));
    expect(() => core.unregisterNotifier(null, nb)).toThrow(expect.objectContaining({ errno: Errno.ENOENT }));
    expect(() => core.registerNotifier(null, { priority: 1.5, call: () => 0 })).toThrow(KernelError);
  });

  it("give handlers the ID, SPID, set, private data and refcount", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const nb = listener("x", 0, []);
    core.registerNotifier(set, nb);
    const id = core.alloc(set, 1, 10, "svm");
    core.get(set, id);
    core.attachSpid(set, id, asSpid(101));
    expect(nb.seen.at(-1)).toEqual({ id, spid: 101, set, private: "svm", refcount: 2 });
  });

  it("run handlers in atomic context: one that sleeps is a kernel bug, one that queues work is fine", () => {
    const { core, kernel } = host();
    const set = core.allocSet(null, 4, "none");
    let ranInThread = false;
    core.registerNotifier(set, {
      priority: IoasidPriority.DEVICE,
      call: (event) => {
        if (event === "FREE") core.queueWork(new Work("cleanup", () => (ranInThread = kernel.scheduler.atomic.depth === 0)));
        return NOTIFY_OK;
      },
    });
    core.free(set, core.alloc(set, 1, 10));
    expect(kernel.scheduler.drain()).toBe(1);
    expect(ranInThread).toBe(true);
    core.registerNotifier(null, { priority: 0, call: () => (kernel.scheduler.atomic.mightSleep("mutex_lock"), NOTIFY_OK) });
    expect(() => core.alloc(set, 1, 10)).toThrow(KernelBug);
  });

  it("cannot be sent by users: the core has no public notify", () => {
    const { core } = host();
    expect("notify" in core).toBe(false);
  });
});

describe("level sensitivity", () => {
  it("sends one FREE however often free is called, one BIND per attach and one UNBIND per detach", () => {
    const { core } = host();
    const set = core.allocSet(null, 4, "none");
    const log: string[] = [];
    core.registerNotifier(set, listener("sub", 0, log));
    const id = core.alloc(set, 1, 10);
    core.attachSpid(set, id, asSpid(1));
    expect(() => core.attachSpid(set, id, asSpid(1))).toThrow(KernelError);
    core.detachSpid(set, id);
    expect(() => core.detachSpid(set, id)).toThrow(KernelError);
    core.attachSpid(set, id, asSpid(1));
    core.get(set, id);
    core.free(set, id);
    core.free(set, id);
    core.free(set, id);
    expect(log).toEqual(["sub:ALLOC", "sub:BIND", "sub:UNBIND", "sub:BIND", "sub:FREE"]);
  });

  it("does not send UNBIND after FREE: detaching from a FREE_PENDING ID is silent", () => {
    const { core, kernel } = host();
    const rec = new TraceRecorder(kernel.trace);
    const set = core.allocSet(null, 4, "none");
    const log: string[] = [];
    core.registerNotifier(set, listener("kvm", IoasidPriority.CPU, log));
    const id = core.alloc(set, 1, 10);
    core.attachSpid(set, id, asSpid(1));
    core.get(set, id);
    core.free(set, id);
    core.detachSpid(set, id);
    expect(log).toEqual(["kvm:ALLOC", "kvm:BIND", "kvm:FREE"]);
    expect(rec.ofKind("ioasid.spid.detach").map((e) => e.payload.notified)).toEqual([false]);
  });
});

describe("registration by mm token", () => {
  it("waits on the pending list until a set with the token exists, then receives its events", () => {
    const { core } = host();
    const mm = { pid: 1 };
    const log: string[] = [];
    core.registerNotifierMm(mm, listener("kvm", IoasidPriority.CPU, log));
    expect(core.pendingNotifiers(mm)).toBe(1);
    core.allocSet({ pid: 2 }, 4, "mm");
    expect(core.pendingNotifiers(mm)).toBe(1);
    const set = core.allocSet(mm, 4, "mm");
    expect(core.pendingNotifiers(mm)).toBe(0);
    core.alloc(set, 1, 10);
    expect(log).toEqual(["kvm:ALLOC"]);
  });

  it("goes back to pending when the set dies and joins the token's next set", () => {
    const { core } = host();
    const mm = {};
    const log: string[] = [];
    const kvm = listener("kvm", IoasidPriority.CPU, log);
    core.registerNotifierMm(mm, kvm);
    const first = core.allocSet(mm, 4, "mm");
    core.alloc(first, 1, 10);
    core.setPut(first);
    expect(log).toEqual(["kvm:ALLOC", "kvm:FREE"]);
    expect(core.pendingNotifiers(mm)).toBe(1);
    const second = core.allocSet(mm, 4, "mm");
    core.alloc(second, 1, 10);
    expect(log.at(-1)).toBe("kvm:ALLOC");
    expect(() => core.unregisterNotifier(second, kvm)).toThrow(expect.objectContaining({ errno: Errno.EINVAL }));
    core.unregisterNotifierMm(mm, kvm);
    expect(() => core.unregisterNotifierMm(mm, kvm)).toThrow(expect.objectContaining({ errno: Errno.ENOENT }));
    core.alloc(second, 1, 10);
    expect(log).toEqual(["kvm:ALLOC", "kvm:FREE", "kvm:ALLOC"]);
  });

  it("accepts registrations on an mm set only while it owns no IDs, so no event is lost", () => {
    const { core } = host();
    const mm = {};
    const set = core.allocSet(mm, 4, "mm");
    core.alloc(set, 1, 10);
    expect(() => core.registerNotifierMm(mm, listener("late", 0, []))).toThrow(expect.objectContaining({ errno: Errno.EBUSY }));
    expect(() => core.registerNotifier(set, listener("late", 0, []))).toThrow(expect.objectContaining({ errno: Errno.EBUSY }));
    expect(core.pendingNotifiers(mm)).toBe(0);
    const none = core.allocSet("vm", 4, "none");
    core.alloc(none, 1, 10);
    core.registerNotifier(none, listener("fine", 0, []));
  });

  it("refuses the same block twice for one token", () => {
    const { core } = host();
    const nb = listener("kvm", 0, []);
    core.registerNotifierMm("mm", nb);
    expect(() => core.registerNotifierMm("mm", nb)).toThrow(expect.objectContaining({ errno: Errno.EEXIST }));
  });
});
