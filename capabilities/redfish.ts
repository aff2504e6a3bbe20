import { Capability } from "pepr";
import { VirtualMachine } from "./common/kinds";

export const Redfish = new Capability({
  name: "redfish",
  description: "Redfish BMC for KubeVirt VMs, served from the watch cache",
});

const { When } = Redfish;
When(VirtualMachine).IsCreatedOrUpdated().Watch(() => {});
