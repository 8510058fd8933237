import { describe, expect, it } from "vitest";
import { Errno } from "@vsva/kernel";
import { errnoOf } from "@vsva/kernel/testing";
import { CmdOp, CmdTlbiNhAsid, type SmmuTrap } from "@vsva/iommu-hw";
import { tlbiNhAsid } from "./commands.js";
import { SmmuTestHost } from "./testing.js";

/**
 * Waiting for room in the command queue (arm_smmu_cmdq_issue_cmdlist's
 * queue_has_space loop). The queue only holds unconsumed entries when a
 * submission timed out while the unit was stuck; the next submission must
 * then wait until the unit has made room for its commands and its CMD_SYNC,
 * never writing over an entry the unit has not read. A four-slot queue is
 * filled by a batch whose first command a trap holds (as a VMM would while
 * the host acts); the next batch waits, and the trap lets the first go
 * while it polls.
 */
describe("a full command queue", () => {
  for (const [first, second] of [
    [3, 1],
    [3, 3],
    [1, 2],
    [2, 2],
  ] as const) {
    it(`a batch of ${second} after a stuck batch of ${first} waits for room and overwrites nothing (the unit runs every command once, in order)`, () => {
      const ran: number[] = [];
      let held: number | null = null;
      let heldAt = { addr: 0, lo: 0 };
      let overwritten = false;
      let release = false;
      const trap: SmmuTrap = (e) => {
        if (e.kind !== "command") return "pass";
        if (e.type === CmdOp.TLBI_NH_ASID && CmdTlbiNhAsid.get(e.dwords, "ASID") === 1 && held === null && !release) {
          held = e.seq;
          heldAt = { addr: e.addr, lo: e.dwords[0] ?? 0 };
          return "defer";
        }
        ran.push(e.type === CmdOp.SYNC ? 0 : CmdTlbiNhAsid.get(e.dwords, "ASID"));
        return "pass";
      };
      let polls = 0;
      const h: SmmuTestHost = new SmmuTestHost({
        unit: { cmdqBits: 2, trap },
        cmdqPollLimit: 40,
        onPoll: () => {
          // The host acts after a while, during the second batch's wait.
          if (release && held !== null && ++polls === 5) {
            // Until the unit moves past it, the held entry is the unit's: the driver must not have written over it.
            overwritten = h.mem.read32(heldAt.addr) !== heldAt.lo;
            const seq = held;
            held = null;
            h.unit.completeDeferred(seq, "pass");
          }
        },
      });
      const q = h.drv.hw.cmdq;
      ran.length = 0; // the driver's bring-up syncs
      const batch = (from: number, n: number) => Array.from({ length: n }, (_, i) => tlbiNhAsid(from + i));
      // The unit is stuck at the first command: the wait for its CMD_SYNC gives up.
      expect(errnoOf(() => q.submit(batch(1, first)))).toBe(Errno.ETIMEDOUT);
      expect(ran).toEqual([]);
      release = true;
      q.submit(batch(10, second));
      // The first batch (after its held command, which the trap already saw), then the second: nothing lost, nothing run twice.
      const firstIds = Array.from({ length: first - 1 }, (_, i) => 2 + i);
      expect(ran).toEqual([...firstIds, 0, ...Array.from({ length: second }, (_, i) => 10 + i), 0]);
      expect(polls).toBeGreaterThanOrEqual(5);
      expect(overwritten).toBe(false);
    });
  }
});
