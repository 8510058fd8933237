import { asSpid, asVmId, Kernel } from "@vsva/kernel";
import { IoasidCore } from "@vsva/ioasid";
import { PagePool, SparseMemory } from "@vsva/pgtable";
import { expect, it } from "vitest";
import { KvmPasid } from "./index.js";

// The example of README.md, line for line (imports from "./index.js" instead of "@vsva/kvm-pasid").
it("runs the README example", () => {
  const k = new Kernel();
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 8 << 20 }] });
  const ioasid = new IoasidCore({ scheduler: k.scheduler, trace: k.trace, faults: k.faults });
  const mm = { name: "VM 1" }; // the token VFIO will give the VM's IOASID set
  // KVM starts with the VM, before VFIO has created the set: its notifier waits for it.
  const pages = new PagePool(mem, 0x10_0000, 1 << 20);
  const kvm = new KvmPasid({ vm: asVmId(1), mm, ioasid, mem, pages, trace: k.trace, faults: k.faults });
  const set = ioasid.allocSet(mm, 16, "mm"); // VFIO: the VM's set
  const hpasid = ioasid.alloc(set, 1, ioasid.capacity); // VFIO: a host PASID for the guest
  ioasid.attachSpid(set, hpasid, asSpid(101)); // bind_gpasid: BIND reaches KVM, which installs 101 -> hpasid
  expect(kvm.enqcmd(0x8000_0000 + 101)).toEqual({ ok: true, guestPasid: 101, hostPasid: hpasid, reads: 2 });
  ioasid.detachSpid(set, hpasid); // unbind_gpasid: UNBIND, KVM removes it and puts its reference
  expect(kvm.enqcmd(0x8000_0000 + 101)).toMatchObject({ ok: false, fault: { kind: "VMEXIT", exitReason: 72 } });
  kvm.destroy(); // VM teardown: every reference KVM held is dropped, every page freed
  expect(pages.inUse).toBe(0);
});
