// AccountService: a read-only view of the configured users. Like a Redfish user without the
// ConfigureUsers privilege, each user sees only its own account; passwords are never shown.
import { notFound } from "../errors";
import { collection, envelope, link, sendJson, SERVICE_ROOT } from "../odata";
import { resource, type RedfishContext, type ResourceRoutes } from "./context";
import { registerRoles, roleUri, ROLES_URI, USER_ROLE } from "./roles";

const ACCOUNTS_URI = `${SERVICE_ROOT}/AccountService/Accounts`;
const accountUri = (username: string) => `${ACCOUNTS_URI}/${encodeURIComponent(username)}`;

export function registerAccountService(routes: ResourceRoutes): void {
  resource(routes, `${SERVICE_ROOT}/AccountService`, {
    GET: c => {
      const { lockout } = c.get("settings");
      return sendJson(
        c,
        {
          ...envelope("AccountService", `${SERVICE_ROOT}/AccountService`),
          Id: "AccountService",
          Name: "Account Service",
          Description: "Users from the module configuration (read-only)",
          ServiceEnabled: true,
          LocalAccountAuth: "Enabled",
          // Failed logins back off exponentially from baseDelaySeconds up to maxDelaySeconds.
          AccountLockoutThreshold: lockout.maxFailures,
          AccountLockoutDuration: Math.ceil(lockout.maxDelaySeconds),
          AccountLockoutCounterResetAfter: Math.ceil(lockout.maxDelaySeconds),
          Accounts: link(ACCOUNTS_URI),
          Roles: link(ROLES_URI),
          Status: { State: "Enabled", Health: "OK" },
        },
        { conditional: true },
      );
    },
  });

  resource(routes, ACCOUNTS_URI, {
    GET: c =>
      sendJson(c, collection("ManagerAccountCollection", ACCOUNTS_URI, "Accounts Collection", [accountUri(c.get("principal").account.username)]), {
        conditional: true,
      }),
  });

  const ownAccount = (c: RedfishContext) => {
    const id = c.req.param("id") ?? "";
    const { account } = c.get("principal");
    if (id !== account.username) throw notFound("ManagerAccount", id);
    return account;
  };
  resource(routes, `${ACCOUNTS_URI}/:id`, {
    GET: c => {
      const account = ownAccount(c);
      return sendJson(
        c,
        {
          ...envelope("ManagerAccount", accountUri(account.username)),
          Id: account.username,
          Name: "User Account",
          Description: `Chassis: ${account.chassis.join(", ")}`,
          UserName: account.username,
          RoleId: USER_ROLE,
          Enabled: true,
          // Back-off refuses a username only at the address that failed (redfish/auth/backoff.ts): never the account.
          Locked: false,
          Password: null,
          AccountTypes: ["Redfish"],
          Links: { Role: link(roleUri(USER_ROLE)) },
        },
        { conditional: true },
      );
    },
  }, ownAccount);

  registerRoles(routes);
}
