// SessionService and Sessions: POST login (201, X-Auth-Token, Location), GET, DELETE logout.
// A user sees and deletes only its own sessions; another user's session is the same 404 as none.
import { z } from "zod";
import type { Session } from "../auth/sessions";
import { notFound } from "../errors";
import { checkIfMatch, collection, envelope, link, parseBody, readJsonObject, requestHeader, sendJson, SERVICE_ROOT } from "../odata";
import { clientAddressOf, resource, resourceHandler, type RedfishContext, type ServiceDeps, type ResourceRoutes } from "./context";

export const SESSIONS_URI = `${SERVICE_ROOT}/SessionService/Sessions`;
/** The collection's `Members` path: some clients (the DMTF Protocol Validator) POST logins there. */
export const SESSION_MEMBERS_URI = `${SESSIONS_URI}/Members`;
const sessionUri = (id: string) => `${SESSIONS_URI}/${encodeURIComponent(id)}`;

const loginBody = z.strictObject({
  UserName: z.string(),
  Password: z.string(),
  Context: z.string().max(256).optional(),
});

function renderSession(session: Session): Record<string, unknown> {
  return {
    ...envelope("Session", sessionUri(session.id)),
    Id: session.id,
    Name: "User Session",
    Description: `Redfish session of user ${session.username}`,
    UserName: session.username,
    SessionType: "Redfish",
    CreatedTime: new Date(session.createdAt).toISOString(),
    ...(session.context !== undefined ? { Context: session.context } : {}),
  };
}

export function registerSessionService(routes: ResourceRoutes, deps: ServiceDeps): void {
  const { auth } = deps;
  const sessionsCollection = (username: string) =>
    collection("SessionCollection", SESSIONS_URI, "Session Collection", auth.sessionsOf(username).map(s => sessionUri(s.id)));
  const ownSession = (c: RedfishContext): Session => {
    const id = c.req.param("id") ?? "";
    const session = auth.sessions.get(id);
    if (!session || session.username !== c.get("principal").account.username) throw notFound("Session", id);
    return session;
  };

  resource(routes, `${SERVICE_ROOT}/SessionService`, {
    GET: c =>
      sendJson(
        c,
        {
          ...envelope("SessionService", `${SERVICE_ROOT}/SessionService`),
          Id: "SessionService",
          Name: "Session Service",
          Description: "Redfish sessions (X-Auth-Token)",
          ServiceEnabled: true,
          SessionTimeout: c.get("settings").sessionTimeoutSeconds,
          Sessions: link(SESSIONS_URI),
          Status: { State: "Enabled", Health: "OK" },
        },
        { conditional: true },
      ),
  });

  // Login: the app lets this one request through without credentials; the body carries them.
  const login = async (c: RedfishContext) => {
    const body = parseBody(loginBody, readJsonObject(c));
    const address = clientAddressOf(c);
    const account = await auth.verifyPassword(body.UserName, body.Password, address);
    checkIfMatch(requestHeader(c, "if-match"), sessionsCollection(account.username));
    const { session, token } = auth.openSession(account, address, body.Context);
    return sendJson(c, renderSession(session), {
      status: 201,
      headers: { "X-Auth-Token": token, Location: sessionUri(session.id), "Cache-Control": "no-store" },
    });
  };
  resource(routes, SESSIONS_URI, {
    GET: c => sendJson(c, sessionsCollection(c.get("principal").account.username), { conditional: true }),
    POST: login,
  });
  // `Members` is the collection's login path, not a session id. One route serves both: Hono's fastest router
  // (RegExpRouter) cannot hold a static segment beside a parameter at one level, and one such pair makes every
  // request of the service fall back to the slower TrieRouter.
  const membersLogin = resourceHandler({ POST: login });
  const session = resourceHandler(
    {
      GET: c => sendJson(c, renderSession(ownSession(c)), { conditional: true }),
      DELETE: c => {
        auth.sessions.delete(ownSession(c).id);
        return new Response(null, { status: 204 });
      },
    },
    ownSession,
  );
  routes.app.all(`${SESSIONS_URI}/:id`, routes.admit(c => (c.req.param("id") === "Members" ? membersLogin(c) : session(c))));
}
