// Model classes for the CRD-backed kinds the module binds to. Pepr/kubernetes-fluent-client need a
// class registered with its GroupVersionKind to build API paths for Watch, Mutate/Validate and K8s().
import { RegisterKind, kind } from "pepr";

const { GenericKind } = kind;

export class VirtualMachine extends GenericKind {}
export class VirtualMachineInstance extends GenericKind {}
export class DataVolume extends GenericKind {}

export const VirtualMachineGVK = { group: "kubevirt.io", version: "v1", kind: "VirtualMachine", plural: "virtualmachines" };
export const VirtualMachineInstanceGVK = {
  group: "kubevirt.io",
  version: "v1",
  kind: "VirtualMachineInstance",
  plural: "virtualmachineinstances",
};
export const DataVolumeGVK = { group: "cdi.kubevirt.io", version: "v1beta1", kind: "DataVolume", plural: "datavolumes" };

RegisterKind(VirtualMachine, VirtualMachineGVK);
RegisterKind(VirtualMachineInstance, VirtualMachineInstanceGVK);
RegisterKind(DataVolume, DataVolumeGVK);
