// A collection below a ComputerSystem whose members are derived from the system's record (Processors,
// Memory, Storage, SimpleStorage): GET of the collection, GET of a member, 404 for an unknown member id and
// 405 for other methods, all tenant-scoped through resolveSystem.
import { notFound } from "../errors";
import { collection, SERVICE_ROOT, sendJson, type CollectionType } from "../odata";
import { resolveSystem, resource, systemUri, type RedfishContext, type ServiceDeps, type VisibleSystem, type ResourceRoutes } from "./context";

export interface SystemCollection<M> {
  /** Path segment below the system, e.g. "Processors". */
  segment: string;
  type: CollectionType;
  name: string;
  /** Redfish type named in the 404 of an unknown member. */
  memberType: string;
  /** The members of this system, in order, by id. */
  members(system: VisibleSystem): ReadonlyArray<readonly [id: string, member: M]>;
  render(system: VisibleSystem, id: string, member: M): Record<string, unknown>;
}

/** A member of a system collection, resolved for the request (for resources nested below it). */
export interface ResolvedMember<M> {
  system: VisibleSystem;
  id: string;
  member: M;
}

export const systemCollectionUri = (systemId: string, segment: string) => `${systemUri(systemId)}/${segment}`;

/** Registers the collection and its members; returns the member resolver for resources nested below a member. */
export function registerSystemCollection<M>(routes: ResourceRoutes, deps: ServiceDeps, spec: SystemCollection<M>): (c: RedfishContext) => ResolvedMember<M> {
  const system = (c: RedfishContext) => resolveSystem(c, deps.cache, c.req.param("id") ?? "");
  const path = `${SERVICE_ROOT}/Systems/:id/${spec.segment}`;
  resource(routes, path, {
    GET: c => {
      const target = system(c);
      const uri = systemCollectionUri(target.id, spec.segment);
      const ids = spec.members(target).map(([id]) => `${uri}/${encodeURIComponent(id)}`);
      return sendJson(c, collection(spec.type, uri, spec.name, ids), { conditional: true });
    },
  }, system);

  const resolve = (c: RedfishContext): ResolvedMember<M> => {
    const target = system(c);
    const id = c.req.param("member") ?? "";
    const found = spec.members(target).find(([memberId]) => memberId === id);
    if (!found) throw notFound(spec.memberType, id);
    return { system: target, id, member: found[1] };
  };
  const render = (c: RedfishContext) => {
    const { system: target, id, member } = resolve(c);
    return spec.render(target, id, member);
  };
  resource(routes, `${path}/:member`, { GET: c => sendJson(c, render(c), { conditional: true }) }, render);
  return resolve;
}
