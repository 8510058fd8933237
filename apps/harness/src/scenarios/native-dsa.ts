import { Prot } from "@vsva/iommu-core";
import { DescFlag, DsaOpcode, DsaStatus, encodeDescriptor } from "@vsva/dsa";
import { type IdxdUserFile, UserThread, openUserWq } from "@vsva/idxd";
import { hostScenario } from "../world/host-scenario.js";
import { hexBytes, mmResolver } from "./sva-common.js";

const CR_FLAGS = DescFlag.CRAV | DescFlag.RCR;
/** Layout of P's buffer: source, destination, a page left untouched (demand paged), completion records. */
const SRC = 0x0000;
const DST = 0x2000;
const LAZY = 0x5000;
const RECORDS = 0x7000;
const BUF_SIZE = 0x8000;

/**
 * The accelerator's native SVA users, as Linux's idxd char device serves
 * them (drivers/dma/idxd/cdev.c): the host driver probes the device and
 * configures a dedicated and a shared user WQ (both block-on-fault); a
 * process opens each (iommu_sva_bind_device: one PASID for its mm; the
 * dedicated WQ gets it in WQCFG), submits MEMMOVE with MOVDIR64B and MEMFILL
 * with ENQCMD (the PASID from the thread's IA32_PASID), and polls the
 * completion records with CPU reads. A descriptor touching a page the
 * process never faulted in blocks on a PRI page request, which the IOMMU's
 * fault path answers after faulting the page in; the descriptor then
 * completes. Close drains, clears the dedicated WQ's PASID, unbinds.
 */
export const nativeDsa = hostScenario({
  name: "native-dsa",
  summary: "idxd probes the accelerator; a process opens a dedicated and a shared WQ, MEMMOVE by MOVDIR64B, MEMFILL by ENQCMD, a block-on-fault page request; close drains and unbinds",
  title: "Native SVA through the accelerator's work queues",
  platforms: ["vtd"],
  body(ctx) {
    const h = ctx.host;
    const devNo = ctx.choose.int("dsa0's slot", 1, 31, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const size = ctx.choose.int("each WQ's size", 4, 32);
    const idxd = ctx.step("idxd probes dsa0: reset, capabilities, a dedicated and a shared user WQ (block on fault), device and WQs enabled", () =>
      h.addAccelerator("dsa0", devNo, {
        wqs: [
          { mode: "dedicated", size, type: "user", bof: true },
          { mode: "shared", size, type: "user", bof: true },
        ],
      }),
    );
    ctx.defer("idxd is removed: WQs and device disabled, device reset", () => idxd.remove());

    const va = ctx.choose.int("P's buffer", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
    const { mm, thread } = ctx.step("process P maps 32 KiB (all but one page touched)", () => {
      const mm = h.newMm("P");
      mm.mmap(va, BUF_SIZE, Prot.READ | Prot.WRITE);
      for (let off = 0; off < BUF_SIZE; off += 0x1000) if (off !== LAZY) mm.write(va + off, Uint8Array.of(0));
      return { mm, thread: new UserThread(mm) };
    });

    const open = (wq: number, label: string): IdxdUserFile =>
      ctx.step(label, () => {
        const f = openUserWq(idxd, wq, thread);
        ctx.bindSpace(f.pasid, mmResolver(mm));
        ctx.defer(`P closes ${f.wq.name} (if still open)`, () => f.close());
        return f;
      });
    const dwq = open(0, "P opens the dedicated WQ: its mm is bound, the PASID written to WQCFG");
    ctx.expect(idxd.wq(0).pasid === dwq.pasid, "WQCFG of the dedicated WQ holds P's PASID");
    const swq = open(1, "P opens the shared WQ: the same PASID, nothing written to the WQ");
    ctx.expect(swq.pasid === dwq.pasid, "one PASID for the mm, whichever WQ");

    const len = ctx.choose.int("MEMMOVE length", 1, 0x2000);
    ctx.step(`MEMMOVE of ${len} bytes by MOVDIR64B to the dedicated WQ; P polls the completion record`, () => {
      const data = Uint8Array.from({ length: len }, (_, i) => (i * 13 + len) & 0xff);
      mm.write(va + SRC, data);
      const r = dwq.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS, completionAddr: va + RECORDS, src: va + SRC, dst: va + DST, size: len }));
      h.settle();
      const rec = dwq.readCompletion(va + RECORDS);
      ctx.expect(r === "posted" && rec.status === DsaStatus.SUCCESS && rec.bytesCompleted === len, `the move completes (status 0x${rec.status.toString(16)}, ${rec.bytesCompleted} bytes)`);
      ctx.expect(hexBytes(mm.read(va + DST, len)) === hexBytes(data), "the destination holds the source bytes");
    });

    const pattern = BigInt(ctx.choose.int("MEMFILL pattern (low 32 bits)", 1, 0xffff_ffff)) | (0xa5c3n << 48n);
    ctx.step("MEMFILL by ENQCMD to the shared WQ: IA32_PASID is loaded from P's PASID (the #GP fix-up) and put in the payload", () => {
      const r = swq.submit(encodeDescriptor({ opcode: DsaOpcode.MEMFILL, flags: CR_FLAGS, completionAddr: va + RECORDS + 32, pattern, dst: va + DST, size: 0x1000 }));
      h.settle();
      const rec = swq.readCompletion(va + RECORDS + 32);
      ctx.expect(r === "accepted" && rec.status === DsaStatus.SUCCESS, `the fill is accepted and completes (${r}, status 0x${rec.status.toString(16)})`);
      ctx.expect(thread.ia32Pasid === (0x8000_0000 | swq.pasid) >>> 0, "IA32_PASID holds P's PASID, valid");
      const want = new Uint8Array(8);
      new DataView(want.buffer).setBigUint64(0, pattern, true);
      ctx.expect(hexBytes(mm.read(va + DST + 0xff8, 8)) === hexBytes(want), "the last 8 bytes of the page hold the pattern");
    });

    ctx.step("MEMMOVE into the page P never touched, block on fault: ATS fails, PRI page request, the IOMMU faults the page in and responds, the move completes", () => {
      ctx.expect(mm.lookup(va + LAZY) === null, "the page is not present before the move");
      const before = idxd.hw.stats.pageRequests;
      dwq.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: CR_FLAGS | DescFlag.BOF, completionAddr: va + RECORDS + 64, src: va + SRC, dst: va + LAZY + 0x10, size: 0x100 }));
      ctx.expect(idxd.hw.blocked, "the descriptor waits on its page request");
      h.settle();
      const rec = dwq.readCompletion(va + RECORDS + 64);
      ctx.expect(idxd.hw.stats.pageRequests > before, "a page request was issued");
      ctx.expect(rec.status === DsaStatus.SUCCESS && rec.bytesCompleted === 0x100, `the move completes after the response (status 0x${rec.status.toString(16)})`);
      ctx.expect(hexBytes(mm.read(va + LAZY + 0x10, 0x100)) === hexBytes(mm.read(va + SRC, 0x100)), "the faulted-in page holds the moved bytes");
    });

    ctx.step("P closes both WQs: the dedicated WQ is drained and its PASID cleared, the shared WQ drains P's PASID; then unbind", () => {
      dwq.close();
      ctx.require(idxd.wq(0).pasid === null, "no PASID is left in the dedicated WQ after close");
      swq.close();
      ctx.unbindSpace(dwq.pasid);
      ctx.require(h.core.sva.bondOf(idxd.iommuDev, mm) === null, "P's mm is no longer bound to dsa0");
    });

    ctx.step("P exits: the last mmdrop frees its PASID", () => {
      mm.exit();
      h.settle();
      ctx.expect(mm.state === "freed", "the mm is freed");
      ctx.expect(h.ioasid.snapshot().ids.length === 0, "the PASID went back to the pool");
    });
  },
});
