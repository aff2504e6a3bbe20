// KubeVirt and CDI controller simulators for the sandbox cluster (see kubevirt/ and cdi/).
export { startKubeVirtSimulator, type KubeVirtSimulator, type KubeVirtSimulatorOptions, type RegisterSubresource } from "./kubevirt";
export { startCdiSimulator, type CdiSimulator, type CdiSimulatorOptions, WFFC_STORAGE_CLASS, BIND_IMMEDIATE_ANNOTATION } from "./cdi";
export { ANNOTATION as SANDBOX_ANNOTATIONS } from "./kubevirt/model";
