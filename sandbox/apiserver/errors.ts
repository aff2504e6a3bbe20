// Constructors for the errors kube-apiserver returns, with its exact reasons and message shapes, and the
// metav1.Status body they become on the wire.
import { ApiError, type ResourceType, type StatusCause } from "./types";

/** "configmaps" for core, "virtualmachines.kubevirt.io" otherwise: how kube names a resource in messages. */
export function qualifiedResource(type: Pick<ResourceType, "resource" | "group">): string {
  return type.group ? `${type.resource}.${type.group}` : type.resource;
}

/** "ConfigMap" for core, "VirtualMachine.kubevirt.io" otherwise: how kube names a kind in Invalid messages. */
export function qualifiedKind(type: Pick<ResourceType, "kind" | "group">): string {
  return type.group ? `${type.kind}.${type.group}` : type.kind;
}

export function notFound(type: Pick<ResourceType, "resource" | "group">, name: string): ApiError {
  return new ApiError(404, "NotFound", `${qualifiedResource(type)} "${name}" not found`, {
    name,
    group: type.group || undefined,
    kind: type.resource,
  });
}

export function alreadyExists(type: ResourceType, name: string): ApiError {
  return new ApiError(409, "AlreadyExists", `${qualifiedResource(type)} "${name}" already exists`, {
    name,
    group: type.group || undefined,
    kind: type.resource,
  });
}

export function conflict(type: ResourceType, name: string, why?: string): ApiError {
  return new ApiError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualifiedResource(type)} "${name}": ${
      why ?? "the object has been modified; please apply your changes to the latest version and try again"
    }`,
    { name, group: type.group || undefined, kind: type.resource },
  );
}

export interface FieldError {
  field: string;
  /** kube's cause types: FieldValueInvalid, FieldValueRequired, FieldValueForbidden, FieldValueNotSupported... */
  type:
    | "FieldValueInvalid"
    | "FieldValueRequired"
    | "FieldValueForbidden"
    | "FieldValueNotSupported"
    | "FieldValueDuplicate"
    | "FieldValueTooLong"
    | "FieldValueTooMany";
  message: string;
}

const fieldErrorPhrase: Record<FieldError["type"], string> = {
  FieldValueInvalid: "Invalid value",
  FieldValueRequired: "Required value",
  FieldValueForbidden: "Forbidden",
  FieldValueNotSupported: "Unsupported value",
  FieldValueDuplicate: "Duplicate value",
  FieldValueTooLong: "Too long",
  FieldValueTooMany: "Too many",
};

/** kube's field.Error text: `Required value` alone, `Invalid value: "x": why` with a detail. */
function fieldErrorText(e: FieldError): string {
  return e.message ? `${fieldErrorPhrase[e.type]}: ${e.message}` : fieldErrorPhrase[e.type];
}

/** 422 Invalid: `ConfigMap "x" is invalid: metadata.name: Invalid value: "X": ...`. */
export function invalid(type: Pick<ResourceType, "kind" | "group">, name: string, errors: FieldError[]): ApiError {
  const parts = errors.map(e => `${e.field}: ${fieldErrorText(e)}`);
  const summary = parts.length === 1 ? parts[0] : `[${parts.join(", ")}]`;
  const causes: StatusCause[] = errors.map(e => ({ reason: e.type, message: fieldErrorText(e), field: e.field }));
  return new ApiError(422, "Invalid", `${qualifiedKind(type)} "${name}" is invalid: ${summary}`, {
    name,
    group: type.group || undefined,
    kind: type.kind,
    causes,
  });
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, "BadRequest", message);
}

export function forbidden(type: ResourceType, name: string, why: string): ApiError {
  return new ApiError(403, "Forbidden", `${qualifiedResource(type)} "${name}" is forbidden: ${why}`, {
    name,
    group: type.group || undefined,
    kind: type.resource,
  });
}

export function methodNotAllowed(): ApiError {
  return new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
}

export function resourceNotFound(): ApiError {
  return new ApiError(404, "NotFound", "the server could not find the requested resource");
}

export function unsupportedMediaType(contentType: string, supported: string[]): ApiError {
  return new ApiError(415, "UnsupportedMediaType", `the body of the request was in an unknown format - accepted media types include: ${supported.join(", ")}`, {
    causes: [{ reason: "UnsupportedMediaType", message: `unsupported media type ${JSON.stringify(contentType)}` }],
  });
}

export function unauthorized(): ApiError {
  return new ApiError(401, "Unauthorized", "Unauthorized");
}

export function gone(requested: string, oldest: number): ApiError {
  return new ApiError(410, "Expired", `too old resource version: ${requested} (${oldest})`);
}

export function internalError(message: string): ApiError {
  return new ApiError(500, "InternalError", `Internal error occurred: ${message}`, { causes: [{ message }] });
}

/** kube-apiserver's answer for a path whose handler is not installed yet (CRDs, aggregated APIs) while it starts. */
export function servicePathsNotInstalled(): ApiError {
  return new ApiError(503, "ServiceUnavailable", "the request has been made before all known HTTP paths have been installed, please try again", {
    retryAfterSeconds: 5,
  });
}

export function requestEntityTooLarge(limit: number): ApiError {
  return new ApiError(413, "RequestEntityTooLarge", `Request entity too large: limit is ${limit}`);
}

export interface StatusBody {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure" | "Success";
  message?: string;
  reason?: string;
  details?: ApiError["details"];
  code: number;
}

export function statusBody(err: ApiError): StatusBody {
  const body: StatusBody = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: err.message, reason: err.reason, code: err.code };
  if (err.details) body.details = err.details;
  if (!err.reason) delete body.reason;
  return body;
}

export function successStatus(details: ApiError["details"]): object {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", details };
}
