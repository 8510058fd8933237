import { describe, expect, it } from "vitest";
import { Errno, KernelError, errnoName, isKernelError } from "./index.js";

describe("KernelError", () => {
  it("carries the errno, a kernel-style message and the return convention", () => {
    const cause = new Error("inner");
    const e = new KernelError(Errno.EINVAL, "PASID 0 is reserved", { cause });
    expect(e.errno).toBe(22);
    expect(e.ret).toBe(-22);
    expect(e.message).toBe("-EINVAL: PASID 0 is reserved");
    expect(e.cause).toBe(cause);
    expect(isKernelError(e, Errno.EINVAL)).toBe(true);
    expect(isKernelError(e, Errno.ENOENT)).toBe(false);
  });

  it("names errno values the way the kernel headers do", () => {
    expect(errnoName(Errno.EOVERFLOW)).toBe("EOVERFLOW");
    expect(errnoName(Errno.ENOTTY)).toBe("ENOTTY");
    expect(errnoName(4242)).toBe("E4242");
  });
});
