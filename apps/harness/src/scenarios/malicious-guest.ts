import { Errno, asHostPasid, errnoName, isKernelError } from "@vsva/kernel";
import { Prot } from "@vsva/iommu-core";
import { hostScenario } from "../world/host-scenario.js";
import { guestProcess, startGuestVm } from "./guest-common.js";
import { PATTERN, hexBytes } from "./sva-common.js";
import { PAGE, vfioOn } from "./vfio-common.js";

/**
 * The errno of a NESTING_OP bind of a PASID outside the VM's IOASID set:
 * the lookup of the PASID in the caller's set fails as
 * drivers/iommu/ioasid.c: ioasid_find() does for an ID of another set.
 */
const BIND_ERRNO = "EACCES";

/** The errno a call failed with, or "ok". */
function outcome(fn: () => void): string {
  try {
    fn();
    return "ok";
  } catch (e) {
    if (!isKernelError(e)) throw e;
    return errnoName(e.errno);
  }
}

/**
 * A hostile guest kernel (VM 1) beside a victim VM (VM 2) whose process has
 * dsa1 bound and keeps doing DMA. VM 1's kernel is the same code, used as an
 * attacker would: it stamps its process with VM 2's PASID and binds (its
 * driver writes the PASID entry and flushes the PASID cache, so the VMM asks
 * the host to bind a PASID VM 1 never allocated), floods its invalidation queue, and answers a page request it was never sent. Each is
 * refused where Linux refuses it; the host, VM 2 and every invariant stay
 * untouched. Not here: programming VM 2's guest PASID into an mdev of VM
 * 1 (needs guest mdevs), and a double unbind (the guest's IOMMU core treats
 * it as its own bug, a KernelBug, before anything reaches the host).
 */
export const maliciousGuest = hostScenario({
  name: "malicious-guest",
  summary: "a hostile guest binds a PASID it does not own, floods invalidations, answers a fault it never got: each refused with the upstream errno, the host and the other VM untouched",
  title: "A hostile guest beside a victim VM",
  platforms: ["vtd"],
  body(ctx) {
    const devA = ctx.choose.int("dsa0's slot (VM 1, hostile)", 1, 15, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const devB = ctx.choose.int("dsa1's slot (VM 2, victim)", 16, 31, { show: (d) => `00:${d.toString(16).padStart(2, "0")}.0` });
    const VA = ctx.choose.int("the processes' buffers", 0x1_0000_0000, 0x3fff_ffff_0000, { align: 0x1_0000 });
    const vfio = vfioOn(ctx.host);
    const victim = startGuestVm(ctx, vfio, { id: 2, dev: devB, device: "dsa1" });
    const v = ctx.step("victim process V in VM 2 binds dsa1 with SVA", () => guestProcess(ctx, victim, "V", VA, 1));
    let round = 0;
    const victimDma = (): void => {
      round++;
      const bytes = PATTERN.map((b) => b ^ round);
      ctx.expect(victim.guest.dma({ pasid: v.bond.pasid, addr: VA + 0x10, length: bytes.length, direction: "write", pattern: bytes }) === "ok", "VM 2's DMA completes");
      ctx.expect(hexBytes(v.mm.read(VA + 0x10, bytes.length)) === hexBytes(bytes), "VM 2 reads its own bytes");
    };
    ctx.step("VM 2's V: dsa1 writes to V's page", victimDma);
    const evil = startGuestVm(ctx, vfio, { id: 1, dev: devA, device: "dsa0" });
    const a = ctx.step("VM 1's own process A binds dsa0 with SVA (its own PASID, allocated by virtual command)", () => guestProcess(ctx, evil, "A", VA, 1));
    const viommu = evil.vm.viommu;
    const refused = viommu.stats.refused;

    // What the VMM logs when the host refuses a call on the guest's behalf, with the errno.
    const refusals: string[] = [];
    const unsubscribe = ctx.host.kernel.trace.subscribeSystem((e) => {
      if (e.context === evil.vm.name && e.kind === "kernel.log" && e.payload.message.includes("the host refused")) refusals.push(e.payload.message);
    });
    ctx.defer("stop watching VM 1's refusals", unsubscribe);
    ctx.step("VM 1 binds VM 2's PASID: its kernel stamps process M with it, its driver writes the PASID entry and flushes; the host refuses the VMM's NESTING_OP bind", () => {
      const m = evil.guest.newProcess("M");
      m.mmap(VA, PAGE, Prot.READ | Prot.WRITE, { populate: true });
      m.setPasid(asHostPasid(v.bond.pasid), () => undefined);
      refusals.length = 0;
      // The guest's own bind may look done to it (its flush completes, failed): the host is what refuses.
      outcome(() => evil.guest.core.sva.bindDevice(evil.guest.device, m));
      ctx.expect(viommu.stats.refused > refused, "the host refused the VMM's NESTING_OP bind");
      ctx.expect(refusals.some((r) => r.includes(`(-${BIND_ERRNO})`)), `the host refused it with -${BIND_ERRNO} (got: ${refusals.join("; ") || "nothing"})`);
      ctx.require(!viommu.bound.has(v.bond.pasid), "nothing is bound on the host for VM 1 with VM 2's PASID");
      ctx.expect(victim.vm.viommu.bound.has(v.bond.pasid), "VM 2's bind is untouched");
      m.exit();
    });
    ctx.step("VM 2's V: dsa1 writes to V's page", victimDma);

    ctx.step("VM 1 floods its invalidation queue: 64 unmaps and maps of A's page, each a PASID-based IOTLB flush the VMM forwards", () => {
      const before = viommu.stats.exits;
      for (let i = 0; i < 64; i++) {
        a.mm.munmap(VA, PAGE);
        a.mm.mmap(VA, PAGE, Prot.READ | Prot.WRITE, { populate: true });
      }
      ctx.expect(viommu.stats.exits > before, "the flushes reached the VMM");
    });
    ctx.step("VM 2's V: dsa1 writes to V's page", victimDma);

    ctx.step("VM 1 answers a page request it was never sent: refused (EINVAL, iommu_page_response() finds no pending group)", () => {
      const r = outcome(() => evil.guest.core.pageResponse(evil.guest.device, { pasid: asHostPasid(a.bond.pasid), grpid: 77, code: "success" }));
      ctx.expect(r === errnoName(Errno.EINVAL), `iommu_page_response() of nothing pending: EINVAL (got ${r})`);
    });
    ctx.step("VM 1 unbinds A", () => {
      evil.guest.core.sva.unbindDevice(a.bond);
      ctx.unbindSpace(a.bond.pasid);
    });
    ctx.step("VM 2's V: dsa1 writes to V's page", victimDma);
    ctx.step("VM 2's V unbinds dsa1", () => {
      victim.guest.core.sva.unbindDevice(v.bond);
      ctx.unbindSpace(v.bond.pasid);
    });
  },
});
