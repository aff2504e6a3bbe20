import { Capability } from "pepr";
import { DataVolume } from "../common/kinds";

export const DataVolumePolicy = new Capability({
  name: "datavolume-policy",
  description: "Tenant labels and storage-class rules for KubeVirt CSI DataVolumes",
});

const { When } = DataVolumePolicy;
When(DataVolume).IsCreatedOrUpdated().Validate(req => req.Approve());
