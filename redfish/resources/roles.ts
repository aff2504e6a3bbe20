// AccountService/Roles: the three Redfish predefined roles with the privileges they carry here. Every configured
// user is an Operator: it logs in, manages its own sessions and acts on the systems of its chassis (power, boot,
// virtual media = ConfigureComponents); users and the service itself are configured in the module configuration.
import { notFound } from "../errors";
import { collection, envelope, sendJson, SERVICE_ROOT } from "../odata";
import { resource, type RedfishContext, type ResourceRoutes } from "./context";

export const ROLES_URI = `${SERVICE_ROOT}/AccountService/Roles`;
export const roleUri = (id: string) => `${ROLES_URI}/${encodeURIComponent(id)}`;

/** The role of every configured user. */
export const USER_ROLE = "Operator";

const ROLES: Record<string, { privileges: string[]; description: string }> = {
  Administrator: {
    privileges: ["Login", "ConfigureManager", "ConfigureUsers", "ConfigureSelf", "ConfigureComponents"],
    description: "Predefined Administrator role; not assigned here: users and the service are configured in the module configuration",
  },
  Operator: {
    privileges: ["Login", "ConfigureSelf", "ConfigureComponents"],
    description: "Predefined Operator role, held by every configured user: power, boot override and virtual media of the systems in the user's chassis",
  },
  ReadOnly: {
    privileges: ["Login", "ConfigureSelf"],
    description: "Predefined ReadOnly role; not assigned here",
  },
};

export function registerRoles(routes: ResourceRoutes): void {
  resource(routes, ROLES_URI, {
    GET: c => sendJson(c, collection("RoleCollection", ROLES_URI, "Roles Collection", Object.keys(ROLES).map(roleUri)), { conditional: true }),
  });

  const role = (c: RedfishContext) => {
    const id = c.req.param("role") ?? "";
    const found = Object.hasOwn(ROLES, id) ? ROLES[id] : undefined;
    if (!found) throw notFound("Role", id);
    return { id, ...found };
  };
  resource(routes, `${ROLES_URI}/:role`, {
    GET: c => {
      const { id, privileges, description } = role(c);
      return sendJson(
        c,
        {
          ...envelope("Role", roleUri(id)),
          Id: id,
          Name: `${id} Role`,
          Description: description,
          RoleId: id,
          IsPredefined: true,
          AssignedPrivileges: privileges,
        },
        { conditional: true },
      );
    },
  }, role);
}
