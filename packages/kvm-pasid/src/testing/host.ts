import { asVmId, Kernel, type VmId } from "@vsva/kernel";
import { IoasidCore } from "@vsva/ioasid";
import { PagePool, SparseMemory } from "@vsva/pgtable";
import { KvmPasid } from "../kvm-pasid.js";

/** Host memory, a page pool for KVM's structure, an IOASID core: what the package's tests run on. */
export interface KvmTestHost {
  readonly kernel: Kernel;
  readonly mem: SparseMemory;
  readonly pool: PagePool;
  readonly ioasid: IoasidCore;
}

export function kvmTestHost(kernel: Kernel = new Kernel(), capacity?: number): KvmTestHost {
  const mem = new SparseMemory({ addrBits: 46, regions: [{ base: 0, size: 8 << 20 }] });
  const pool = new PagePool(mem, 0x10_0000, 4 << 20);
  const ioasid = new IoasidCore({
    scheduler: kernel.scheduler,
    trace: kernel.trace,
    faults: kernel.faults,
    log: kernel.log,
    ...(capacity === undefined ? {} : { capacity }),
  });
  return { kernel, mem, pool, ioasid };
}

/** A VM's KVM on `host`, registered by `mm`. */
export function startKvm(host: KvmTestHost, mm: object, vm: VmId = asVmId(1)): KvmPasid {
  const { kernel, mem, pool, ioasid } = host;
  return new KvmPasid({ vm, mm, ioasid, mem, pages: pool, trace: kernel.trace, faults: kernel.faults, log: kernel.log });
}
