import { describe, expect, it } from "vitest";
import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { Prot } from "@vsva/iommu-core";
import { DescFlag, DsaCommand, DsaOpcode, DsaReg, DsaStatus, encodeDescriptor } from "@vsva/dsa";
import { IA32_PASID_VALID, UserThread, openUserWq, plugIdxd } from "./index.js";
import { svaMockBoard } from "./testing/index.js";

const BUF = 0x7000_0000;
const SRC = BUF;
const DST = BUF + 0x4000;
const CR = BUF + 0x8000;
const CR_FLAGS = DescFlag.CRAV | DescFlag.RCR;

function rig(mode: "immediate" | "stepwise" = "immediate") {
  const board = svaMockBoard();
  const idxd = plugIdxd(board, {
    dev: 4,
    hw: { mode },
    config: {
      wqs: [
        { mode: "dedicated", size: 16, type: "user" },
        { mode: "shared", size: 16, type: "user" },
        { mode: "dedicated", size: 4, type: "kernel" },
      ],
    },
  });
  const mm = board.newMm("P");
  mm.mmap(BUF, 0x10000, Prot.READ | Prot.WRITE, { populate: true });
  return { board, idxd, mm, thread: new UserThread(mm) };
}

const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

describe("a user WQ's char device", () => {
  it("open of a dedicated WQ binds the mm and programs its PASID; MEMMOVE through MOVDIR64B; the CPU polls the record", () => {
    const { idxd, mm, thread, board } = rig();
    const f = openUserWq(idxd, 0, thread);
    expect(f.pasid).toBe(mm.pasid);
    expect(idxd.wq(0).pasid).toBe(mm.pasid);
    expect(board.core.sva.bondOf(idxd.iommuDev, mm)).not.toBeNull();
    mm.write(SRC + 0xff0, bytes(0x1800, 3));
    // The descriptor's PASID field is ignored on a dedicated WQ: WQCFG's is used.
    expect(f.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS, pasid: 0x777, completionAddr: CR, src: SRC + 0xff0, dst: DST + 8, size: 0x1800 }))).toBe("posted");
    expect(f.readCompletion(CR)).toMatchObject({ status: DsaStatus.SUCCESS, bytesCompleted: 0x1800 });
    expect(mm.read(DST + 8, 0x1800)).toEqual(bytes(0x1800, 3));
  });

  it("a shared WQ: ENQCMD carries IA32_PASID, loaded from the mm's PASID by the #GP fix-up; MEMFILL completes", () => {
    const { idxd, mm, thread } = rig();
    const f = openUserWq(idxd, 1, thread);
    expect(idxd.wq(1).pasid).toBe(0); // a shared WQ holds no one's PASID (PASID_EN with 0)
    expect(thread.ia32Pasid).toBe(0);
    const d = encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: CR_FLAGS, pasid: 0x5_5555, priv: true, completionAddr: CR, pattern: 0x0102_0304_0506_0708n, dst: DST, size: 24 });
    expect(f.submit(d)).toBe("accepted");
    expect(thread.ia32Pasid).toBe((IA32_PASID_VALID | (mm.pasid ?? -1)) >>> 0);
    expect(f.readCompletion(CR).status).toBe(DsaStatus.SUCCESS);
    expect([...mm.read(DST, 10)]).toEqual([8, 7, 6, 5, 4, 3, 2, 1, 8, 7]);
  });

  it("a full shared WQ answers retry (ZF = 1) to the process's ENQCMD, and accepts again once the engine has run", () => {
    const { idxd, thread } = rig("stepwise");
    const f = openUserWq(idxd, 1, thread);
    const noop = encodeDescriptor({ opcode: DsaOpcode.NOOP });
    const answers = Array.from({ length: 17 }, () => f.submit(noop));
    expect(answers.filter((a) => a === "accepted")).toHaveLength(16);
    expect(answers[16]).toBe("retry");
    idxd.hw.run();
    expect(f.submit(noop)).toBe("accepted");
  });

  it("ENQCMD by a thread whose mm has no PASID is the #GP the thread dies of (EFAULT)", () => {
    const { idxd, board } = rig();
    const other = board.newMm("Q");
    expect(errnoOf(() => new UserThread(other).enqcmd(idxd.wq(1), encodeDescriptor({ opcode: DsaOpcode.NOOP })))).toBe(Errno.EFAULT);
  });

  it("a dedicated WQ takes one opener (EBUSY); a kernel WQ has no char device (ENODEV); an unknown WQ is ENODEV", () => {
    const { idxd, thread, board, mm } = rig();
    openUserWq(idxd, 0, thread);
    expect(errnoOf(() => openUserWq(idxd, 0, new UserThread(board.newMm("Q"))))).toBe(Errno.EBUSY);
    expect(errnoOf(() => openUserWq(idxd, 2, thread))).toBe(Errno.ENODEV);
    expect(errnoOf(() => openUserWq(idxd, 7, thread))).toBe(Errno.ENODEV);
    // A shared WQ takes many.
    openUserWq(idxd, 1, thread);
    openUserWq(idxd, 1, thread);
    expect(board.core.sva.bondOf(idxd.iommuDev, mm)?.users).toBe(3);
  });

  it("close of a dedicated WQ drains it, clears the PASID and unbinds: the last descriptor completed first", () => {
    const { idxd, thread, mm, board } = rig("stepwise");
    const f = openUserWq(idxd, 0, thread);
    mm.write(SRC, bytes(64, 9));
    f.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS, completionAddr: CR, src: SRC, dst: DST, size: 64 }));
    expect(f.readCompletion(CR).status).toBe(DsaStatus.NONE);
    f.close();
    expect(f.readCompletion(CR).status).toBe(DsaStatus.SUCCESS);
    expect(idxd.wq(0).pasid).toBeNull();
    expect(idxd.wq(0).enabled).toBe(true);
    expect(board.core.sva.bondOf(idxd.iommuDev, mm)).toBeNull();
    expect(errnoOf(() => f.submit(encodeDescriptor({ opcode: DsaOpcode.NOOP })))).toBe(Errno.EBADF);
    f.close();
    // The WQ can be opened again.
    expect(openUserWq(idxd, 0, thread).pasid).toBe(mm.pasid);
  });

  it("close of a shared WQ drains the PASID (DRAIN_PASID) before unbinding", () => {
    const { idxd, thread, mm, board } = rig("stepwise");
    const f = openUserWq(idxd, 1, thread);
    f.submit(encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: CR_FLAGS, completionAddr: CR, pattern: 0xffn, dst: DST, size: 0x3000 }));
    f.close();
    expect(f.readCompletion(CR)).toMatchObject({ status: DsaStatus.SUCCESS, bytesCompleted: 0x3000 });
    expect(board.core.sva.bondOf(idxd.iommuDev, mm)).toBeNull();
  });

  it("remove closes the files still open and unbinds them", () => {
    const { idxd, thread, mm, board } = rig();
    const a = openUserWq(idxd, 0, thread);
    const b = openUserWq(idxd, 1, thread);
    idxd.remove();
    expect([a.isOpen, b.isOpen]).toEqual([false, false]);
    expect(board.core.sva.bondOf(idxd.iommuDev, mm)).toBeNull();
  });

  it("a failed open leaves nothing bound or programmed (the device refuses to enable the WQ again: ENXIO)", () => {
    const { idxd, thread, mm, board } = rig();
    const hw = idxd.hw;
    const orig = hw.mmioWrite32.bind(hw);
    // ENABLE_WQ (command 6) becomes an invalid command (31): CMDSTS says INVAL_CMD.
    hw.mmioWrite32 = (off, v) => orig(off, off === DsaReg.CMD && ((v >>> 20) & 0x1f) === DsaCommand.ENABLE_WQ ? (v | (0x1f << 20)) >>> 0 : v);
    expect(errnoOf(() => openUserWq(idxd, 0, thread))).toBe(Errno.ENXIO);
    expect(board.core.sva.bondOf(idxd.iommuDev, mm)).toBeNull();
    expect(idxd.wq(0).pasid).toBeNull();
    hw.mmioWrite32 = orig;
  });
});
