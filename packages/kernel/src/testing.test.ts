import { describe, expect, it } from "vitest";
import { Errno } from "./errno.js";
import { KernelBug, KernelError } from "./error.js";
import { errnoOf } from "./testing.js";

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
