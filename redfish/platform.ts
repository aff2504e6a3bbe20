// The one adapter between redfish/ and the platform it runs on: Pepr's logger today. redfish/ imports
// neither `pepr` nor the sandbox nor config internals directly (ESLint no-restricted-imports holds this).
export { Log } from "pepr";
