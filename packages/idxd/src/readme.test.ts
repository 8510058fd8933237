import { expect, it } from "vitest";
import { Prot } from "@vsva/iommu-core";
import { DescFlag, DsaOpcode, DsaStatus, encodeDescriptor } from "@vsva/dsa";
import { UserThread, openUserWq, plugIdxd } from "./index.js";
import { svaMockBoard } from "./testing/index.js";

// The example of README.md, line for line (imports from "./index.js" instead of "@vsva/idxd").
it("runs the README example", () => {
  const board = svaMockBoard(); // a board whose IOMMU translates a PASID by the bound mm's page tables
  const idxd = plugIdxd(board, { dev: 4, config: { wqs: [{ mode: "shared", size: 16, type: "user" }] } });
  const mm = board.newMm("P");
  const buf = mm.mmap(0x7000_0000, 0x3000, Prot.READ | Prot.WRITE, { populate: true });
  mm.write(buf, new TextEncoder().encode("hello, idxd"));
  const file = openUserWq(idxd, 0, new UserThread(mm)); // binds P's mm: one PASID for it
  const answer = file.submit(encodeDescriptor({ opcode: DsaOpcode.MEMMOVE, flags: DescFlag.CRAV | DescFlag.RCR, completionAddr: buf + 0x2000, src: buf, dst: buf + 0x1000, size: 11 }));
  const done = file.readCompletion(buf + 0x2000).status === DsaStatus.SUCCESS;
  expect([answer, done, new TextDecoder().decode(mm.read(buf + 0x1000, 11))]).toEqual(["accepted", true, "hello, idxd"]);
  file.close();
  idxd.remove();
});
