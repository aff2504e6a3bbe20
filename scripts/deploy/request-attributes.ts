// What kube-apiserver's authorizer sees for a request (k8s.io/apiserver RequestInfoFactory): verb, API group,
// resource, subresource, namespace, name. Used by the RBAC test's recording proxy to compare the calls the
// module really makes with the rules the build generates; usable by the sandbox API server the same way.

export interface RequestAttributes {
  verb: string;
  group: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
}

const APPLY_PATCH = "application/apply-patch+yaml";

/**
 * Attributes of one resource request, or undefined for non-resource paths (/version, /openapi, discovery).
 * Server-side apply yields "patch" plus "create" (the API server also authorizes create, by name, when the
 * object does not exist yet; an RBAC rule must allow both for apply to work on first use).
 */
export function requestAttributes(method: string, rawUrl: string, contentType = ""): RequestAttributes[] | undefined {
  const url = new URL(rawUrl, "http://x");
  const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  let rest: string[];
  let group: string;
  if (parts[0] === "api" && parts.length >= 2) {
    group = "";
    rest = parts.slice(2);
  } else if (parts[0] === "apis" && parts.length >= 3) {
    group = parts[1];
    rest = parts.slice(3);
  } else {
    return undefined;
  }
  if (rest.length === 0) return undefined; // discovery of a group version

  let namespace = "";
  if (rest[0] === "namespaces" && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  } else if (rest[0] === "namespaces" && rest.length === 2) {
    // GET /api/v1/namespaces/{name}: the namespace object itself
    return [{ verb: methodVerb(method, true, url, contentType)[0], group, resource: "namespaces", subresource: "", namespace: rest[1], name: rest[1] }];
  }
  const [resource, name = "", subresource = ""] = rest;
  let effectiveName = name;
  if (!effectiveName && (method === "GET" || method === "HEAD")) {
    // A list/watch with a metadata.name field selector is authorized against that name.
    const selector = url.searchParams.get("fieldSelector") ?? "";
    const match = /^metadata\.name=([^,]+)$/.exec(selector);
    if (match) effectiveName = match[1];
  }
  return methodVerb(method, name !== "", url, contentType).map(verb => ({
    verb,
    group,
    resource,
    subresource,
    namespace,
    name: effectiveName,
  }));
}

function methodVerb(method: string, named: boolean, url: URL, contentType: string): string[] {
  switch (method) {
    case "GET":
    case "HEAD":
      if (url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1") return ["watch"];
      return [named ? "get" : "list"];
    case "POST":
      return ["create"];
    case "PUT":
      return ["update"];
    case "PATCH":
      return contentType.split(";")[0].trim() === APPLY_PATCH ? ["patch", "create"] : ["patch"];
    case "DELETE":
      return [named ? "delete" : "deletecollection"];
    default:
      return [method.toLowerCase()];
  }
}

/** The RBAC resource string: "virtualmachines" or "virtualmachines/start". */
export function rbacResource(a: RequestAttributes): string {
  return a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
}
