import { expect, it } from "vitest";
import { Prot } from "./index.js";
import { svaHost } from "./testing/index.js";

it("runs the README's SVA example", () => {
  const h = svaHost();
  const dev = h.svaDevice("dsa", 0, { maxPasid: 64 });
  const mm = h.newMm("proc");
  const buf = mm.mmap(null, 0x4000, Prot.READ | Prot.WRITE);
  const stopped: number[] = [];
  const bond = h.core.sva.bindDevice(dev, mm, { stop: (b) => stopped.push(b.pasid) });
  h.core.reportPageRequest(dev, { pasid: bond.pasid, addr: buf, read: true, write: true, exec: false, priv: false, grpid: 0, last: true });
  h.kernel.scheduler.runUntilIdle();
  expect(h.mock.responses.map((r) => r.response.code)).toEqual(["success"]);
  expect(mm.lookup(buf)?.prot.write).toBe(true);
  mm.exit();
  expect(stopped).toEqual([bond.pasid]);
  h.core.sva.unbindDevice(bond);
  expect(h.ioasid.allocated).toBe(0);
});
