import { describe, expect, it } from "vitest";
import { Errno, type TraceEvent, TraceRecorder, asIoasid } from "@vsva/kernel";
import { RegOffset, VcmdCommand, VcmdReg, VcmdStatus, VcrspReg, readReg, writeReg } from "@vsva/iommu-hw";
import { Prot } from "@vsva/iommu-core";
import { Guest } from "./guest.js";
import { PAGE } from "./guest-ram.js";
import { vmTestHost } from "./test-host.js";
import { Vm } from "./vm.js";

const RAM = 4 << 20;
const VA = 0x7000_0000_0000;

/** A guest driver's own virtual command, written into the vIOMMU's registers (VT-d §10.4.43–44); VCRSP's status. */
function rawVcmd(vm: Vm, cmd: number, operand: number): number {
  writeReg(vm.viommu.unit, RegOffset.VCMD, VcmdReg.encode({ CMD: cmd, OPERAND: operand }));
  return VcrspReg.get(readReg(vm.viommu.unit, RegOffset.VCRSP, VcrspReg), "SC");
}

const vmmOp = (op: string) => (e: TraceEvent): boolean => e.kind === "vmm.vfio-ioctl" && e.payload.op === op;

describe("a guest that frees a PASID before it unbinds it", () => {
  it("has the host free it (FREE tears the binding down), and its later clear-and-flush of the entry still reaches the host as NESTING_OP unbind, refused with ENOENT; then the VMM holds nothing of it", () => {
    const h = vmTestHost();
    const vm = new Vm({ host: h.board, vfio: h.vfio, id: 1, ramBytes: RAM, device: h.device });
    const g = new Guest(vm);
    const p = g.newProcess("P");
    p.mmap(VA, 2 * PAGE, Prot.READ | Prot.WRITE, { populate: true });
    const bond = g.core.sva.bindDevice(g.device, p);
    const host = vm.viommu.hostPasid(bond.pasid) ?? -1;
    expect(vm.viommu.bound.has(bond.pasid)).toBe(true);
    const rec = new TraceRecorder(h.board.kernel.trace);

    expect(rawVcmd(vm, VcmdCommand.FREE_PASID, bond.pasid)).toBe(VcmdStatus.SUCCESS);
    h.board.settle();
    expect(h.board.ioasid.state(asIoasid(host))).toBe("IDLE");
    // Bound on the host no more: FREE's IOMMU handler tore it down.
    expect(vm.viommu.bound.size).toBe(0);
    expect(rec.events.filter(vmmOp("NESTING_OP unbind"))).toEqual([]);

    const refused = vm.viommu.stats.refused;
    g.core.sva.unbindDevice(bond);
    const unbinds = rec.events.filter(vmmOp("NESTING_OP unbind"));
    expect(unbinds.map((e) => e.ids.ioasid)).toEqual([host]);
    const refusal = rec.events.find((e) => e.kind === "iommu.uapi-refused");
    expect(refusal?.kind === "iommu.uapi-refused" ? refusal.payload.errno : null).toBe(Errno.ENOENT);
    expect(vm.viommu.stats.refused).toBe(refused + 1);

    // At mm drop the guest frees it again: the VMM no longer holds it, the host is not asked (the one free is the raw one).
    p.exit();
    h.board.settle();
    expect(rec.events.filter(vmmOp("PASID_REQUEST free")).map((e) => e.ids.ioasid)).toEqual([host]);
    expect(g.ioasid.allocated).toBe(0);
    vm.kill();
    h.board.settle();
    expect(h.board.ioasid.allocated).toBe(0);
  });
});
