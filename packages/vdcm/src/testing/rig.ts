import { asVmId, type Kernel, type VmId } from "@vsva/kernel";
import type { IoasidCore } from "@vsva/ioasid";
import type { IommuCore, IommuDevice } from "@vsva/iommu-core";
import { type MockHost, mockHost } from "@vsva/iommu-core/testing";
import type { DsaDevice, DsaOptions } from "@vsva/dsa";
import { bringUp, makeDsaRig, type WqSetup } from "@vsva/dsa/testing";
import type { SparseMemory } from "@vsva/pgtable";
import type { FakeIommu } from "@vsva/iommu-hw/testing";
import { Vfio, type VfioContainerFile, VfioDeviceFile, VfioExtension, type VfioGroupFile, VfioIoctl, VfioUser } from "@vsva/vfio-type1";
import { FakeUserPages, vfioUapi as U } from "@vsva/vfio-type1/testing";
import type { HostWq } from "../host-wq.js";
import type { VdcmMdev } from "../mdev.js";
import { Vdcm } from "../vdcm.js";
import { DsaHostWq } from "./dsa-host-wq.js";
import { MdevGuest } from "./guest.js";

/** The WQs the rig's host driver sets up: two dedicated, one shared, none with a PASID. */
export const RIG_WQS: readonly WqSetup[] = [
  { mode: "dedicated", size: 8 },
  { mode: "dedicated", size: 8 },
  { mode: "shared", size: 16 },
];

export interface VdcmRig {
  readonly kernel: Kernel;
  readonly host: MockHost;
  readonly core: IommuCore;
  readonly ioasid: IoasidCore;
  readonly vfio: Vfio;
  /** The accelerator (below a fake IOMMU for its DMA) and its memory. */
  readonly dsa: DsaDevice;
  readonly mem: SparseMemory;
  /** What translates the accelerator's DMA in this rig (per PASID maps). */
  readonly fake: FakeIommu;
  /** The accelerator in the IOMMU core: the mdevs' parent. */
  readonly parent: IommuDevice;
  readonly vdcm: Vdcm;
  /** The host driver's handles on its WQs, over the device's registers. */
  readonly wqs: readonly HostWq[];
  /** WQ `i`'s handle; throws when there is none. */
  wq(i: number): HostWq;
}

/** What a host driver finds when it sets the accelerator up for the rig. */
export interface HostDriverContext {
  readonly kernel: Kernel;
  readonly core: IommuCore;
  /** The accelerator as the IOMMU core knows it. */
  readonly parent: IommuDevice;
  readonly dsa: DsaDevice;
  /** The WQs to configure and enable, to be lent to the VDCM. */
  readonly wqs: readonly WqSetup[];
}

export interface VdcmRigOptions {
  readonly wqs?: readonly WqSetup[];
  /** The accelerator's build (e.g. `mode: "stepwise"`: descriptors run only when the device is stepped or drained). */
  readonly dsa?: Partial<Omit<DsaOptions, "mem" | "bus" | "dev" | "fn">>;
  /**
   * The host driver: configures and enables the WQs and returns its handles
   * on them. Default: the WQs brought up through the registers and
   * {@link DsaHostWq} handles; the idxd driver's probe and WQ handles plug in here.
   */
  readonly hostDriver?: (ctx: HostDriverContext) => readonly HostWq[];
}

/** The default host driver: bring-up through the registers, a {@link DsaHostWq} per WQ. */
export function registerHostDriver(ctx: HostDriverContext): readonly HostWq[] {
  const errs = bringUp(ctx.dsa, ctx.wqs);
  if (errs.length > 0) throw new Error(`rig: DSA bring-up failed: ${errs.join(", ")}`);
  return ctx.wqs.map((_, i) => new DsaHostWq(ctx.dsa, i, ctx.kernel.faults));
}

/**
 * A host for the VDCM's tests: an IOMMU core with the mock driver, VFIO over
 * it, a DSA device whose WQs the host driver configured and enabled through
 * its registers, the accelerator probed in the IOMMU core, and the VDCM on it.
 */
export function vdcmRig(o: VdcmRigOptions = {}): VdcmRig {
  const host = mockHost({ defaultDomain: "dma" });
  const { kernel, core } = host;
  const { dev: dsa, mem, iommu: fake } = makeDsaRig(o.dsa ?? {});
  const setups = o.wqs ?? RIG_WQS;
  const parent = core.probeDevice(host.iommu, { name: "dsa0", sid: dsa.ep.sid, pasidWidth: 20 });
  const vfio = new Vfio({ kernel, core, ioasid: core.ioasid });
  const vdcm = new Vdcm({ kernel, ioasid: core.ioasid, core, vfio, parent });
  const wqs = (o.hostDriver ?? registerHostDriver)({ kernel, core, parent, dsa, wqs: setups });
  const wq = (i: number): HostWq => {
    const w = wqs[i];
    if (w === undefined) throw new Error(`rig: no WQ ${i}`);
    return w;
  };
  return { kernel, host, core, ioasid: core.ioasid, vfio, dsa, mem, fake, parent, vdcm, wqs, wq };
}

/** One VM's VMM as VFIO sees it: its process (the mm its IOASID set is made for), its container, and the mdev's files. */
export interface VmOnMdev {
  readonly vm: VmId;
  readonly user: VfioUser;
  readonly container: VfioContainerFile;
  readonly group: VfioGroupFile;
  readonly device: VfioDeviceFile;
  readonly guest: MdevGuest;
}

const MiB = 1 << 20;

/** A VMM process for VM `vm` (its mm is the token to give createMdev). */
export function vmmUser(name: string, hostBase = 0x3_0000_0000): VfioUser {
  const pages = new FakeUserPages({ base: 0x7f00_0000_0000, size: 4 * MiB, hostBase });
  return new VfioUser({ name, mm: { name }, pages, memlockLimit: 64 * MiB });
}

/**
 * The VMM opens the mdev: a nesting container (which creates the VM's IOASID
 * set and aux-attaches the mdev to the container's domain), the mdev's group,
 * its device file, and a guest driver over it.
 */
export function openMdev(vfio: Vfio, user: VfioUser, mdev: VdcmMdev, vm: VmId = asVmId(1)): VmOnMdev {
  const groupId = mdev.vfioDevice?.group?.id ?? -1;
  const container = vfio.openContainer(user);
  const group = vfio.openGroup(user, groupId);
  group.ioctl(VfioIoctl.GROUP_SET_CONTAINER, U.fdArg(container.fd));
  container.ioctl(VfioIoctl.SET_IOMMU, VfioExtension.TYPE1_NESTING_IOMMU);
  const fd = group.ioctl(VfioIoctl.GROUP_GET_DEVICE_FD, U.cString(mdev.name));
  const device = user.file(fd);
  if (!(device instanceof VfioDeviceFile)) throw new Error(`fd ${fd} is not a device file`);
  return { vm, user, container, group, device, guest: new MdevGuest(device) };
}

/** VFIO_IOMMU_PASID_REQUEST(ALLOC) in [1, max]: a host PASID from the VM's set. */
export function allocPasid(c: VfioContainerFile, max = 1000): number {
  return c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ alloc: true, min: 1, max }));
}

/** VFIO_IOMMU_PASID_REQUEST(FREE) of one PASID. */
export function freePasid(c: VfioContainerFile, pasid: number): void {
  c.ioctl(VfioIoctl.IOMMU_PASID_REQUEST, U.pasidRequest({ free: true, min: pasid, max: pasid }));
}

