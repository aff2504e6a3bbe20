// Redfish virtual media: the virtual CD drive of a VM as a CDI DataVolume attached as a CD-ROM.
//   model.ts       names, labels, and what the cluster objects say about the drive (Inserted, Image)
//   request.ts     InsertMedia / EjectMedia parameters (zod + Redfish messages)
//   plan.ts        the DataVolume, its credentials Secret and the VM patches of an insert or eject
//   service.ts     insert / eject against the cluster (per-VM lock, resourceVersion-guarded patches)
//   controller.ts  deletes DataVolumes of ours that no VM drive uses (interrupted inserts and ejects)
export { startMediaController } from "./controller";
export { MediaService, type InsertOutcome, type MediaServiceDeps } from "./service";
export { mediaView, type MediaView, CD_VOLUME, MEDIA_FOR_LABEL, MEDIA_DRIVE_LABEL, MANAGED_BY_LABEL } from "./model";
export { mediaSettings, mediaSettingsOf, type MediaSettings } from "./settings";
export { parseInsertMedia, type InsertRequest } from "./request";
