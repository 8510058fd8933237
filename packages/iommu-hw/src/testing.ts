// Test doubles and rigs for packages above the hardware (subpath `@vsva/iommu-hw/testing`).
export { FakeIommu, type FakeMapping, FAKE_FAULT_NOT_PRESENT, FAKE_FAULT_PERMISSION } from "./pci/testing/fake-iommu.js";
export { makeRig, type RigOptions, type Rig } from "./pci/testing/rig.js";
export { FakeEndpoint } from "./pci/testing/fake-endpoint.js";
export { VtdRig, desc, R as VtdRegs } from "./vtd/testing/rig.js";
export { SmmuRig, SR as SmmuRegs, cmd as smmuCmd } from "./smmu/testing/rig.js";
// Submitting descriptors / commands at the unit's producer index, with wrap (stateless, any unit).
export { submitVtdDescriptors, submitSmmuCommands } from "./testing-queues.js";
