// TokenReview and SubjectAccessReview, as kube-apiserver answers them (authentication.k8s.io/v1,
// authorization.k8s.io/v1; create only, nothing stored). Tokens are the sandbox's static tokens (its "token file":
// the ServiceAccount tokens it issues), which like kube's static tokens are valid for the API server's own
// audiences; access is decided by the sandbox's RBAC evaluator (./rbac.ts). The caller's own `create` right on the
// review is checked before this runs, by the server's authorization of the request.
import { z } from "zod";
import { badRequest } from "./errors";
import type { RbacAuthorizer } from "./rbac";
import type { UserInfo } from "./types";

export const TOKEN_REVIEWS_PATH = "/apis/authentication.k8s.io/v1/tokenreviews";
export const ACCESS_REVIEWS_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/** kube-apiserver's default --api-audiences (the service account issuer). */
export const API_AUDIENCES = ["https://kubernetes.default.svc.cluster.local"];

const tokenReviewSchema = z
  .object({
    apiVersion: z.string().optional(),
    kind: z.string().optional(),
    spec: z.object({ token: z.string().optional(), audiences: z.array(z.string()).nullish() }).passthrough(),
  })
  .passthrough();

const accessReviewSchema = z
  .object({
    apiVersion: z.string().optional(),
    kind: z.string().optional(),
    spec: z
      .object({
        user: z.string().optional(),
        uid: z.string().optional(),
        groups: z.array(z.string()).nullish(),
        extra: z.record(z.string(), z.array(z.string())).nullish(),
        resourceAttributes: z
          .object({
            namespace: z.string().optional(),
            verb: z.string().optional(),
            group: z.string().optional(),
            resource: z.string().optional(),
            subresource: z.string().optional(),
            name: z.string().optional(),
          })
          .passthrough()
          .nullish(),
        nonResourceAttributes: z.object({ path: z.string().optional(), verb: z.string().optional() }).passthrough().nullish(),
      })
      .passthrough(),
  })
  .passthrough();

function parse<T>(schema: z.ZodType<T>, body: unknown, kind: string): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw badRequest(`${kind} in version "v1" cannot be handled as a ${kind}: ${parsed.error.issues[0]?.message ?? "invalid body"}`);
  return parsed.data;
}

/** POST tokenreviews: who the token is (the review echoed with its status). */
export function reviewToken(body: unknown, tokens: ReadonlyMap<string, UserInfo>): Record<string, unknown> {
  const review = parse(tokenReviewSchema, body, "TokenReview");
  const token = review.spec.token ?? "";
  if (token === "") throw badRequest("token is required for TokenReview in authentication");
  const wanted = review.spec.audiences ?? [];
  const user = tokens.get(token);
  const audiences = wanted.length === 0 ? API_AUDIENCES : wanted.filter(a => API_AUDIENCES.includes(a));
  const spec = { token, ...(wanted.length > 0 ? { audiences: wanted } : {}) };
  const base = { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", metadata: { creationTimestamp: null }, spec };
  if (!user) return { ...base, status: { user: {} } };
  if (audiences.length === 0) {
    return { ...base, status: { user: {}, error: `token audiences ${JSON.stringify(API_AUDIENCES)} is invalid for the target audiences ${JSON.stringify(wanted)}` } };
  }
  return {
    ...base,
    status: {
      authenticated: true,
      user: { username: user.username, ...(user.uid ? { uid: user.uid } : {}), groups: user.groups },
      audiences,
    },
  };
}

/** POST subjectaccessreviews: whether the described user may do the described request (resource requests only). */
export function reviewAccess(body: unknown, rbac: RbacAuthorizer): Record<string, unknown> {
  const review = parse(accessReviewSchema, body, "SubjectAccessReview");
  const { spec } = review;
  const groups = spec.groups ?? [];
  if (!spec.user && groups.length === 0) throw badRequest("SubjectAccessReview.authorization.k8s.io is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified");
  if (Boolean(spec.resourceAttributes) === Boolean(spec.nonResourceAttributes)) {
    throw badRequest('SubjectAccessReview.authorization.k8s.io is invalid: spec.resourceAttributes: Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified');
  }
  const user: UserInfo = { username: spec.user ?? "", ...(spec.uid ? { uid: spec.uid } : {}), groups };
  let allowed: boolean;
  if (spec.resourceAttributes) {
    const a = spec.resourceAttributes;
    allowed = rbac.allows(user, {
      verb: a.verb ?? "",
      group: a.group ?? "",
      resource: a.resource ?? "",
      subresource: a.subresource ?? "",
      namespace: a.namespace ?? "",
      name: a.name ?? "",
    });
  } else {
    allowed = rbac.allowsPath(user, spec.nonResourceAttributes?.path ?? "");
  }
  return {
    apiVersion: "authorization.k8s.io/v1",
    kind: "SubjectAccessReview",
    metadata: { creationTimestamp: null },
    spec,
    status: { allowed, ...(allowed ? { reason: "RBAC: allowed by the sandbox's RBAC evaluator" } : {}) },
  };
}

export const REVIEW_PATHS = new Set([TOKEN_REVIEWS_PATH, ACCESS_REVIEWS_PATH]);

/** The answer to a POST on one of REVIEW_PATHS. */
export function review(path: string, body: unknown, tokens: ReadonlyMap<string, UserInfo>, rbac: RbacAuthorizer): Record<string, unknown> {
  return path === TOKEN_REVIEWS_PATH ? reviewToken(body, tokens) : reviewAccess(body, rbac);
}
