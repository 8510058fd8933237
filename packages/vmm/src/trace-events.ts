/** Trace events of the VMM, added to the kernel's registry by declaration merging. */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    /**
     * The VMM process of a VM is exiting (killed or quit), on the host's bus
     * before any of its files close: what the host sees of the VM from then
     * on is its teardown, and no DMA of it may follow.
     */
    "vmm.exit": { actor: "VMM"; payload: { readonly name: string; readonly ramPages: number } };
    /**
     * The VMM is about to make a VFIO ioctl on its guest's behalf (a virtual
     * command, or a PASID-cache sync of the guest's PASID entry), on the
     * host's bus before the call, so what the host does for it follows it in
     * the trace; `ioasid` is the host PASID the call is about (none for an
     * allocation). QEMU has a trace point at each of these.
     */
    "vmm.vfio-ioctl": { actor: "VMM"; payload: { readonly name: string; readonly op: "PASID_REQUEST alloc" | "PASID_REQUEST free" | "NESTING_OP bind" | "NESTING_OP unbind" } };
  }
}

export {};
