/** Trace events of the VMM, added to the kernel's registry by declaration merging. */
declare module "@vsva/kernel" {
  interface TraceEventRegistry {
    /**
     * The VMM process of a VM is exiting (killed or quit), on the host's bus
     * before any of its files close: what the host sees of the VM from then
     * on is its teardown, and no DMA of it may follow.
     */
    "vmm.exit": { actor: "VMM"; payload: { readonly name: string; readonly ramPages: number } };
  }
}

export {};
