// What the Redfish service derives from one module configuration. Derived once per config object (the
// runtime hands out a new object on every change), so a config change replaces users, verification
// cache, chassis and proxy list at once, and requests in flight keep a consistent snapshot.
import { kubernetesIdentitiesSchema, trustedProxyMatcher, type ChassisConfig, type ModuleConfig } from "../capabilities/config/schema";
import type { LockoutPolicy } from "./auth/backoff";
import type { AuthSettings } from "./auth";
import { UserDirectory } from "./auth/users";
import type { ChassisDefinition } from "./cache/store";

export interface ServiceSettings extends AuthSettings {
  /** Configured chassis by name. */
  chassis: ReadonlyMap<string, ChassisConfig>;
  isTrustedProxy: (address: string) => boolean;
  /** redfish.serviceUUID when set. */
  serviceUUID?: string;
  /** redfish.powerOffStaysOff: after a Redfish On, a guest that powers itself off stays off. */
  powerOffStaysOff: boolean;
}

const DEFAULT_LOCKOUT: LockoutPolicy = { maxFailures: 5, baseDelaySeconds: 1, maxDelaySeconds: 300 };

const EMPTY: ServiceSettings = {
  users: new UserDirectory([]),
  sessionTimeoutSeconds: 1800,
  lockout: DEFAULT_LOCKOUT,
  chassis: new Map(),
  isTrustedProxy: () => false,
  powerOffStaysOff: true,
  kubernetesIdentities: kubernetesIdentitiesSchema.parse({}),
};

const derived = new WeakMap<ModuleConfig, ServiceSettings>();

export function serviceSettings(config: ModuleConfig | undefined): ServiceSettings {
  if (!config) return EMPTY;
  let settings = derived.get(config);
  if (!settings) {
    const auth = config.authentication;
    settings = {
      users: new UserDirectory(auth.users),
      sessionTimeoutSeconds: auth.sessionTimeoutSeconds,
      lockout: auth.lockout,
      chassis: new Map(config.chassis.map(c => [c.name, c])),
      isTrustedProxy: trustedProxyMatcher(auth.trustedProxies),
      powerOffStaysOff: config.redfish.powerOffStaysOff,
      kubernetesIdentities: config.redfish.kubernetesIdentities,
      ...(config.redfish.serviceUUID ? { serviceUUID: config.redfish.serviceUUID } : {}),
    };
    derived.set(config, settings);
  }
  return settings;
}

/** The chassis definitions the watch cache indexes by. */
export function chassisDefinitions(config: ModuleConfig | undefined): ChassisDefinition[] {
  return (config?.chassis ?? []).map(c => ({
    name: c.name,
    namespace: c.namespace,
    ...(c.vmSelector ? { vmSelector: c.vmSelector } : {}),
  }));
}
