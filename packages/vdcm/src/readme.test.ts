import { asHostPasid, asIoasid, asSpid, asVmId } from "@vsva/kernel";
import { DsaCmdErr } from "@vsva/dsa";
import { expect, it } from "vitest";
import { allocPasid, openMdev, vdcmRig, vmmUser } from "./testing/index.js";

// The example of README.md, line for line (imports from "./testing/index.js" instead of "@vsva/vdcm/testing").
it("runs the README example", () => {
  const r = vdcmRig(); // IOMMU core (mock driver), VFIO, a DSA device with two dedicated WQs and one shared, the VDCM
  const qemu = vmmUser("vm1"); // the VMM process: its mm is the token of the VM's IOASID set
  const mdev = r.vdcm.createMdev("mdev0", r.wq(0), { vm: asVmId(1), mm: qemu.mm });
  const vm = openMdev(r.vfio, qemu, mdev); // nesting container, group, device file: the mdev is aux-attached
  const hpasid = asIoasid(allocPasid(vm.container)); // VFIO_IOMMU_PASID_REQUEST: a host PASID from the VM's set
  const set = r.ioasid.findSetByToken(qemu.mm);
  if (set !== null) r.ioasid.attachSpid(set, hpasid, asSpid(101)); // what bind_gpasid does: guest PASID 101 -> hpasid
  const err = vm.guest.programWq(101); // the guest writes 101 to WQCFG and enables the WQ: trapped, translated, programmed
  expect([err === DsaCmdErr.SUCCESS, r.wq(0).pasid === asHostPasid(hpasid), vm.guest.readbackPasid()]).toEqual([true, true, 101]);
  vm.guest.disableWq(); // the hardware WQ quiesced and cleared, then the VDCM's reference put
  qemu.exit(); // the VMM dies: VFIO lets go of the mdev
  r.vdcm.removeMdev(mdev);
  expect(r.ioasid.allocated).toBe(0);
});
