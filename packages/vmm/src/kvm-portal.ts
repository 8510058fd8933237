import { Errno, KernelError } from "@vsva/kernel";
import { Ia32Pasid } from "@vsva/kvm-pasid";
import type { Vm } from "./vm.js";

/** ENQCMD moves 64 bytes (Intel SDM, ENQCMD). */
const ENQCMD_BYTES = 64;

/**
 * A shared WQ's portal page mapped straight into the guest (QEMU maps the
 * portal region into guest-physical space; no exit on a store), as a guest
 * thread's ENQCMD reaches it: the CPU takes the PASID from the thread's
 * IA32_PASID (the guest's number), translates it through KVM's PASID
 * translation for the VM (`KvmPasid.enqcmd`) and puts the host PASID in the
 * payload before the store reaches the device (Intel SDM, ENQCMD; the PASID
 * translation of VMX, programmed by KVM). A guest PASID without a
 * translation is the VM exit KVM reflects as #GP: EFAULT to the thread.
 */
export class KvmEnqcmdPortal {
  readonly #vm: Vm;
  readonly #portal: { enqcmd(desc: Uint8Array): "accepted" | "retry" };

  constructor(vm: Vm, portal: { enqcmd(desc: Uint8Array): "accepted" | "retry" }) {
    this.#vm = vm;
    this.#portal = portal;
  }

  enqcmd(payload: Uint8Array): "accepted" | "retry" {
    this.#vm.checkRunning();
    if (payload.length !== ENQCMD_BYTES) throw new KernelError(Errno.EINVAL, `ENQCMD moves ${ENQCMD_BYTES} bytes`);
    const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    // Dword 0 of the payload carries IA32_PASID's bits 19:0, where the MSR has them.
    const guest = Ia32Pasid.get(Uint32Array.of(v.getUint32(0, true), 0), "PASID");
    const msr = Ia32Pasid.encode({ PASID: guest, VALID: 1 });
    const r = this.#vm.kvm.enqcmd(BigInt(msr[0] ?? 0) | (BigInt(msr[1] ?? 0) << 32n));
    if (!r.ok) throw new KernelError(Errno.EFAULT, `${this.#vm.name}: ENQCMD with guest PASID ${guest}: no translation (#GP)`);
    const out = payload.slice();
    const dw = Uint32Array.of(new DataView(out.buffer).getUint32(0, true), 0);
    Ia32Pasid.set(dw, "PASID", r.hostPasid);
    new DataView(out.buffer).setUint32(0, dw[0] ?? 0, true);
    return this.#portal.enqcmd(out);
  }
}
