/**
 * KVM's PASID-translation trace events: actor "KVM", ids {vm, gpasid, hpasid}
 * and, for install and remove, the host PASID's IOASID refcount after the
 * event (after KVM's get, after KVM's put).
 */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    /** A translation became valid (first BIND); KVM holds a reference from here. */
    "kvm.pasid.install": { actor: "KVM"; payload: Readonly<Record<string, never>> };
    /** A translation was invalidated and KVM's reference put: on the last UNBIND, on FREE, or at VM teardown. */
    "kvm.pasid.remove": { actor: "KVM"; payload: { readonly cause: "UNBIND" | "FREE" | "TEARDOWN" } };
    /** A notification KVM could not act on; nothing changed (e.g. UNBIND after FREE, no page for a table). */
    "kvm.pasid.ignored": { actor: "KVM"; payload: { readonly event: string; readonly errno: number; readonly reason: string } };
    /** A guest ENQCMD/ENQCMDS or IA32_PASID write faulted; the fault goes to the guest or its VMM, never the host. */
    "kvm.pasid.translate-fault": {
      actor: "KVM";
      payload: {
        readonly instruction: "ENQCMD" | "ENQCMDS" | "WRMSR";
        readonly fault: "GP" | "VMEXIT";
        readonly exitReason: number | null;
        readonly reason: string;
      };
    };
  }
}

export {};
