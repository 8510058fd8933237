import { Errno, KernelError } from "@vsva/kernel";
import { ConfigSpace, type Register } from "./config-space.js";
import {
  ATS_CAP_SIZEOF,
  AtsCapCtl,
  ExtCapHeader,
  PASID_CAP_SIZEOF,
  PCI_CAP_ID_EXP,
  PRI_CAP_SIZEOF,
  PasidCapCtl,
  PciCapPtr,
  PciClass,
  PciCommandStatus,
  PciExtCapId,
  PciExpType,
  PciHeader,
  PciId,
  PciInterrupt,
  PciMisc,
  PciSubsystem,
  PcieCapHeader,
  PcieCapOffset,
  PcieDevCap,
  PcieDevCap2,
  PcieDevCtl2,
  PcieDevCtlSta,
  PriCtlSta,
  PriOutstanding,
} from "./regs.js";

/**
 * Builds an endpoint's configuration space from options: the type 0 header,
 * the PCI Express capability in the standard list, and the extended
 * capabilities the device has (PASID, ATS, PRI) chained from 0x100.
 */

export interface PciIdentity {
  readonly vendorId: number;
  readonly deviceId: number;
  /** 24-bit class code (base, sub, prog-if); default 0x088000 (other system peripheral). */
  readonly classCode?: number;
  readonly revision?: number;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
}

export interface PasidCapOptions {
  /** Max PASID Width, 1..20 bits. */
  readonly maxWidth: number;
  /** Execute Permission Supported. */
  readonly exec?: boolean;
  /** Privileged Mode Supported. */
  readonly priv?: boolean;
}

export interface AtsCapOptions {
  /** Invalidate Queue Depth, 1..32 (encoded 0 for 32). Default 32. */
  readonly invalidateQueueDepth?: number;
  readonly globalInvalidate?: boolean;
}

export interface PriCapOptions {
  /** Outstanding Page Request Capacity (requests the function can have in flight). */
  readonly outstandingCapacity: number;
  /** PRG Response PASID Required: responses to PASID requests must carry the PASID. Default true. */
  readonly responsePasidRequired?: boolean;
}

export interface EndpointConfigOptions {
  readonly id: PciIdentity;
  /** Default "rcEndpoint" (a Root Complex Integrated Endpoint, like on-die accelerators). */
  readonly portType?: "endpoint" | "rcEndpoint";
  readonly multiFunction?: boolean;
  /** Function Level Reset capable (Device Capabilities.FLR). Default true. */
  readonly flr?: boolean;
  /** Absent: no PASID capability. */
  readonly pasid?: PasidCapOptions;
  readonly ats?: AtsCapOptions;
  /** Absent: no PRI capability. PRI requires ATS. */
  readonly pri?: PriCapOptions;
}

/** The field-name union of a layout. */
type FieldOf<L> = L extends { fieldNames: readonly (infer F)[] } ? F & string : never;

export type CommandField = FieldOf<typeof PciCommandStatus>;
export type DevCtlField = FieldOf<typeof PcieDevCtlSta>;
export type PasidField = FieldOf<typeof PasidCapCtl>;
export type AtsField = FieldOf<typeof AtsCapCtl>;
export type PriCtlField = FieldOf<typeof PriCtlSta>;
export type PriOutstandingField = FieldOf<typeof PriOutstanding>;

/** Typed handles on the registers the device model reacts to, and where each capability sits. */
export interface EndpointConfig {
  readonly space: ConfigSpace;
  readonly command: Register<CommandField>;
  readonly devCtl: Register<DevCtlField>;
  readonly pasid?: Register<PasidField>;
  readonly ats?: Register<AtsField>;
  readonly pri?: { readonly ctl: Register<PriCtlField>; readonly outstanding: Register<PriOutstandingField> };
  /** Capability offsets (0 when absent), as software finds them by walking the lists. */
  readonly offsets: { readonly pcie: number; readonly pasid: number; readonly ats: number; readonly pri: number };
}

function checkInt(v: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new KernelError(Errno.EINVAL, `${what} must be an integer in ${min}..${max}, got ${v}`);
  }
  return v;
}

export function buildEndpointConfig(opts: EndpointConfigOptions): EndpointConfig {
  const { id } = opts;
  checkInt(id.vendorId, 0, 0xfffe, "vendor ID"); // 0xffff means "no function here"
  checkInt(id.deviceId, 0, 0xffff, "device ID");
  const classCode = checkInt(id.classCode ?? 0x08_80_00, 0, 0xff_ffff, "class code");
  if (opts.pri !== undefined && opts.ats === undefined) {
    throw new KernelError(Errno.EINVAL, "a PRI capability needs an ATS capability: page requests are an ATS extension");
  }
  if (opts.pasid !== undefined) checkInt(opts.pasid.maxWidth, 1, 20, "PASID max width");
  const iqd = opts.ats === undefined ? 0 : checkInt(opts.ats.invalidateQueueDepth ?? 32, 1, 32, "ATS invalidate queue depth");
  if (opts.pri !== undefined) checkInt(opts.pri.outstandingCapacity, 1, 0xffff_ffff, "PRI outstanding page request capacity");

  const space = new ConfigSpace();
  const pcieOff = PciHeader.END;

  space.place(PciHeader.ID, PciId, { init: { VENDOR_ID: id.vendorId, DEVICE_ID: id.deviceId } });
  const command = space.place(PciHeader.COMMAND_STATUS, PciCommandStatus, { init: { CAP_LIST: 1 } });
  space.place(PciHeader.CLASS, PciClass, {
    init: {
      REVISION_ID: checkInt(id.revision ?? 0, 0, 0xff, "revision ID"),
      PROG_IF: classCode & 0xff,
      SUBCLASS: (classCode >>> 8) & 0xff,
      BASE_CLASS: classCode >>> 16,
    },
  });
  space.place(PciHeader.MISC, PciMisc, { init: { HEADER_LAYOUT: 0, MULTI_FUNCTION: opts.multiFunction === true ? 1 : 0 } });
  space.place(PciHeader.SUBSYSTEM, PciSubsystem, {
    init: {
      SUBSYSTEM_VENDOR_ID: checkInt(id.subsystemVendorId ?? id.vendorId, 0, 0xffff, "subsystem vendor ID"),
      SUBSYSTEM_ID: checkInt(id.subsystemId ?? 0, 0, 0xffff, "subsystem ID"),
    },
  });
  space.place(PciHeader.CAP_PTR, PciCapPtr, { init: { CAP_PTR: pcieOff } });
  space.place(PciHeader.INTERRUPT, PciInterrupt);

  // PCI Express capability, the only entry of the standard list. Link, slot
  // and root registers are not modelled and read 0 (an RCiEP has no link).
  space.place(pcieOff + PcieCapOffset.HEADER, PcieCapHeader, {
    init: {
      CAP_ID: PCI_CAP_ID_EXP,
      NEXT: 0,
      VERSION: 2,
      PORT_TYPE: opts.portType === "endpoint" ? PciExpType.ENDPOINT : PciExpType.RC_ENDPOINT,
    },
  });
  const flr = opts.flr ?? true;
  space.place(pcieOff + PcieCapOffset.DEVCAP, PcieDevCap, { init: { MAX_PAYLOAD: 1, EXT_TAG: 1, ROLE_BASED_ERROR_REPORTING: 1, FLR: flr ? 1 : 0 } });
  const devCtl = space.place(pcieOff + PcieCapOffset.DEVCTL, PcieDevCtlSta, {
    // Reset values from the PCIe base spec: 128-byte payload, 512-byte read requests, relaxed ordering and no-snoop enabled.
    init: { RELAXED_ORDERING: 1, NO_SNOOP: 1, MAX_READ_REQUEST: 2 },
    hardwire: flr ? [] : ["INITIATE_FLR"],
  });
  space.place(pcieOff + PcieCapOffset.DEVCAP2, PcieDevCap2, { init: { COMPLETION_TIMEOUT_RANGES: 0xf, COMPLETION_TIMEOUT_DISABLE_SUPPORTED: 1 } });
  space.place(pcieOff + PcieCapOffset.DEVCTL2, PcieDevCtl2);

  // Extended capabilities, chained from 0x100 in a fixed order (PASID, ATS,
  // PRI). With none, the header at 0x100 stays 0: "no extended capabilities".
  const pasidOpts = opts.pasid;
  const atsOpts = opts.ats;
  const priOpts = opts.pri;
  const chain: { id: number; size: number }[] = [];
  if (pasidOpts !== undefined) chain.push({ id: PciExtCapId.PASID, size: PASID_CAP_SIZEOF });
  if (atsOpts !== undefined) chain.push({ id: PciExtCapId.ATS, size: ATS_CAP_SIZEOF });
  if (priOpts !== undefined) chain.push({ id: PciExtCapId.PRI, size: PRI_CAP_SIZEOF });
  const at = new Map<number, number>();
  let off: number = PciHeader.EXT_START;
  chain.forEach((cap, i) => {
    const next = i + 1 < chain.length ? off + cap.size : 0;
    space.place(off, ExtCapHeader, { init: { ID: cap.id, VERSION: 1, NEXT: next } });
    at.set(cap.id, off);
    off = next;
  });
  const offsets = { pcie: pcieOff, pasid: at.get(PciExtCapId.PASID) ?? 0, ats: at.get(PciExtCapId.ATS) ?? 0, pri: at.get(PciExtCapId.PRI) ?? 0 };

  const pasid =
    pasidOpts === undefined
      ? undefined
      : space.place(offsets.pasid + 4, PasidCapCtl, {
          init: { EXEC_SUPPORTED: pasidOpts.exec === true ? 1 : 0, PRIV_SUPPORTED: pasidOpts.priv === true ? 1 : 0, MAX_PASID_WIDTH: pasidOpts.maxWidth },
          // An enable bit for an unsupported feature is hardwired to 0.
          hardwire: [...(pasidOpts.exec === true ? [] : ["EXEC_ENABLE" as const]), ...(pasidOpts.priv === true ? [] : ["PRIV_ENABLE" as const])],
        });
  const ats =
    atsOpts === undefined
      ? undefined
      : space.place(offsets.ats + 4, AtsCapCtl, {
          init: { INVALIDATE_QUEUE_DEPTH: iqd & 0x1f, PAGE_ALIGNED_REQUEST: 1, GLOBAL_INVALIDATE_SUPPORTED: atsOpts.globalInvalidate === false ? 0 : 1 },
        });
  const pri =
    priOpts === undefined
      ? undefined
      : {
          ctl: space.place(offsets.pri + 4, PriCtlSta, {
            // Stopped is 1 at reset: disabled with nothing outstanding.
            init: { STOPPED: 1, PRG_RESPONSE_PASID_REQUIRED: priOpts.responsePasidRequired === false || pasidOpts === undefined ? 0 : 1 },
          }),
          outstanding: space.place(offsets.pri + 8, PriOutstanding, { init: { CAPACITY: priOpts.outstandingCapacity } }),
        };

  const cfg: EndpointConfig = {
    space,
    command,
    devCtl,
    offsets,
    ...(pasid === undefined ? {} : { pasid }),
    ...(ats === undefined ? {} : { ats }),
    ...(pri === undefined ? {} : { pri }),
  };
  return cfg;
}
