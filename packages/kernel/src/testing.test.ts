import { describe, expect, it } from "vitest";
import { Errno } from "./errno.js";
import { KernelBug, KernelError } from "./error.js";
import { FaultInjector, declareFaultPoints } from "./fault-inject.js";
import { FaultCoverage, errnoOf, injectedPointLiterals, tolerate } from "./testing.js";

describe("errnoOf: a call's outcome as the kernel reports it", () => {
  it("is 0 when the call returns, and the errno when it throws a KernelError", () => {
    expect(errnoOf(() => 42)).toBe(0);
    expect(errnoOf(() => {
      throw new KernelError(Errno.EBUSY, "busy");
    })).toBe(Errno.EBUSY);
  });

  it("lets anything else through: a crash or a kernel bug is never mistaken for an errno", () => {
    expect(() => errnoOf(() => {
      throw new TypeError("x is undefined");
    })).toThrow(TypeError);
    expect(() => errnoOf(() => {
      throw new KernelBug("refcount underflow");
    })).toThrow(KernelBug);
  });
});

describe("tolerate: an injected failure's acceptable outcome", () => {
  it("is the value when the call returns, null when it fails with a KernelError, and rethrows anything else", () => {
    expect(tolerate(() => 7)).toBe(7);
    expect(tolerate(() => {
      throw new KernelError(Errno.ENOMEM, "injected");
    })).toBeNull();
    expect(() => tolerate(() => {
      throw new TypeError("x is undefined");
    })).toThrow(TypeError);
  });
});

describe("fault point registries and fail-nth coverage", () => {
  const own = declareFaultPoints("@vsva/x", ["x.alloc", "x.map", "x.never"]);
  const other = declareFaultPoints("@vsva/y", ["y.alloc"]);

  it("refuses an empty or repeated point name with EINVAL", () => {
    expect(errnoOf(() => declareFaultPoints("@vsva/x", ["a", "a"]))).toBe(Errno.EINVAL);
    expect(errnoOf(() => declareFaultPoints("@vsva/x", [""]))).toBe(Errno.EINVAL);
    expect(own.has("x.map")).toBe(true);
    expect(own.has("y.alloc")).toBe(false);
  });

  it("names the declared points no run failed, and the points met that nobody declared", () => {
    const path = (fi: FaultInjector): void => {
      fi.inject("x.alloc");
      fi.inject("y.alloc");
      fi.inject("x.map");
      fi.inject("z.stray");
    };
    const cov = new FaultCoverage(own, [other]);
    for (let n = 1; ; n++) {
      const fi = new FaultInjector();
      fi.failNth(n);
      errnoOf(() => path(fi));
      cov.record(fi);
      if (fi.injected.length === 0) break;
    }
    expect(cov.runs).toBe(5);
    expect(cov.missing()).toEqual(["x.never"]);
    expect(cov.undeclared()).toEqual(["z.stray"]);
  });

  it("finds the literal names a source passes to inject", () => {
    const src = `k.faults.inject("a.b");\nthis.#faults.inject( 'c.d', Errno.ENOSPC);\nfaults.inject(\`t.\${x}\`);\ntrace.emit("a.b");\nif (!f.shouldFail("e.f")) {}`;
    expect(injectedPointLiterals(src)).toEqual(["a.b", "c.d", "e.f"]);
  });
});
