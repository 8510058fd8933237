import { expect, it } from "vitest";
import { DescFlag, DsaOpcode, DsaStatus, decodeCompletion, encodeDescriptor } from "./index.js";
import { bringUp, makeDsaRig } from "./testing/index.js";

// The example of README.md, line for line (imports from "./index.js" instead of "@vsva/dsa").
it("runs the README example", () => {
  const { dev, iommu, mem } = makeDsaRig(); // the device below a fake IOMMU, Bus Master/PASID/ATS/PRI on
  bringUp(dev, [{ mode: "shared", size: 16 }]); // WQCFG, ENABLE_DEVICE, ENABLE_WQ through MMIO
  for (const [va, pa] of [[0x10000, 0x100000], [0x20000, 0x200000], [0x30000, 0x300000]] as const) iommu.map(7, va, { pa });
  mem.writeBytes(0x100000, new TextEncoder().encode("hello, accelerator"));
  const desc = encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, pasid: 7, completionAddr: 0x30000, src: 0x10000, dst: 0x20000, size: 18 });
  const answer = dev.enqcmd(0, desc); // "accepted" (ZF = 0)
  const record = new Uint8Array(32);
  mem.readBytes(0x300000, record);
  const copied = new Uint8Array(18);
  mem.readBytes(0x200000, copied);
  expect([answer, decodeCompletion(record).status === DsaStatus.SUCCESS, new TextDecoder().decode(copied)]).toEqual(["accepted", true, "hello, accelerator"]);
});
