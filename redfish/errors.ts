// Redfish error bodies (DSP0266 "Error responses") with Base message registry MessageIds.

/** The Base registry version whose MessageIds this service emits. */
export const BASE_REGISTRY = "Base.1.18.1";

/** Message templates of the Base registry (1.18.1) that this service uses; %1.. are MessageArgs. */
const BASE_MESSAGES = {
  Success: "The request completed successfully.",
  Created: "The resource was created successfully.",
  GeneralError:
    "A general error has occurred.  See Resolution for information on how to resolve the error, or @Message.ExtendedInfo if Resolution is not provided.",
  InternalError: "The request failed due to an internal service error.  The service is still operational.",
  ResourceNotFound: "The requested resource of type %1 named '%2' was not found.",
  ResourceMissingAtURI: "The resource at the URI '%1' was not found.",
  PropertyUnknown: "The property %1 is not in the list of valid properties for the resource.",
  PropertyValueNotInList: "The value '%1' for the property %2 is not in the list of acceptable values.",
  PropertyValueTypeError: "The value '%1' for the property %2 is not a type that the property can accept.",
  PropertyValueFormatError: "The value '%1' for the property %2 is not a format that the property can accept.",
  PropertyMissing: "The property %1 is a required property and must be included in the request.",
  PropertyNotWritable: "The property %1 is a read-only property and cannot be assigned a value.",
  MalformedJSON: "The request body submitted was malformed JSON and could not be parsed by the receiving service.",
  EmptyJSON: "The request body submitted contained an empty JSON object and the service is unable to process it.",
  ActionNotSupported: "The action %1 is not supported by the resource.",
  ActionParameterMissing: "The action %1 requires the parameter %2 to be present in the request body.",
  ActionParameterUnknown: "The action %1 was submitted with the invalid parameter %2.",
  ActionParameterValueTypeError:
    "The value '%1' for the parameter %2 in the action %3 is not a type that the parameter can accept.",
  ActionParameterValueNotInList:
    "The value '%1' for the parameter %2 in the action %3 is not in the list of acceptable values.",
  ActionParameterNotSupported: "The parameter %1 for the action %2 is not supported on the target resource.",
  InsufficientPrivilege:
    "There are insufficient privileges for the account or credentials associated with the current session to perform the requested operation.",
  NoValidSession: "There is no valid session established with the implementation.",
  PreconditionFailed: "The ETag supplied did not match the ETag required to change this resource.",
  OperationNotAllowed: "The HTTP method is not allowed on this resource.",
  QueryNotSupported: "Querying is not supported by the implementation.",
  ServiceTemporarilyUnavailable: "The service is temporarily unavailable.  Retry in %1 seconds.",
  SessionLimitExceeded:
    "The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.",
} as const;

export type BaseMessageKey = keyof typeof BASE_MESSAGES;

/** Full MessageIds, e.g. `MessageId.ResourceNotFound === "Base.1.18.1.ResourceNotFound"`. */
export const MessageId = Object.fromEntries(
  Object.keys(BASE_MESSAGES).map(key => [key, `${BASE_REGISTRY}.${key}`]),
) as { readonly [K in BaseMessageKey]: `${typeof BASE_REGISTRY}.${K}` };

/** The registry text of a Base message with its arguments substituted. */
export function baseMessage(key: BaseMessageKey, args: readonly string[] = []): string {
  return BASE_MESSAGES[key].replace(/%(\d+)/g, (whole, n: string) => args[Number(n) - 1] ?? whole);
}

export interface RedfishErrorOptions {
  /** Extra response headers (e.g. Allow for 405, WWW-Authenticate for 401). */
  headers?: Record<string, string>;
  resolution?: string;
  relatedProperties?: string[];
}

/**
 * Thrown anywhere under a request handler; the app turns it into the Redfish error body with this status.
 * `messageId` is a full registry id (use `MessageId.*`).
 */
export class RedfishError extends Error {
  readonly messageArgs: string[];
  readonly headers: Record<string, string>;
  readonly resolution?: string;
  readonly relatedProperties?: string[];

  constructor(
    readonly status: number,
    readonly messageId: string,
    message: string,
    messageArgs: string[] = [],
    options: RedfishErrorOptions = {},
  ) {
    super(message);
    this.name = "RedfishError";
    this.messageArgs = messageArgs;
    this.headers = options.headers ?? {};
    this.resolution = options.resolution;
    this.relatedProperties = options.relatedProperties;
  }
}

/** A RedfishError whose message is the registry text of `key` with `args`. */
export function baseError(
  status: number,
  key: BaseMessageKey,
  args: string[] = [],
  options: RedfishErrorOptions = {},
): RedfishError {
  return new RedfishError(status, MessageId[key], baseMessage(key, args), args, options);
}

/** Severity per DSP0266: client errors are "Warning", service faults "Critical". */
function severityFor(status: number): "OK" | "Warning" | "Critical" {
  if (status < 400) return "OK";
  return status >= 500 ? "Critical" : "Warning";
}

export interface RedfishMessage {
  "@odata.type": string;
  MessageId: string;
  Message: string;
  MessageArgs: string[];
  MessageSeverity: string;
  /** Deprecated in Message v1_1 but still what sushy reads to pick the most severe message. */
  Severity: string;
  Resolution?: string;
  RelatedProperties?: string[];
}

export interface RedfishErrorBody {
  error: {
    code: string;
    message: string;
    "@Message.ExtendedInfo": RedfishMessage[];
  };
}

/** The JSON error body. `error.code` is the MessageId, as the DMTF mockups and sushy expect. */
export function errorBody(err: RedfishError): RedfishErrorBody {
  const severity = severityFor(err.status);
  const info: RedfishMessage = {
    "@odata.type": "#Message.v1_1_1.Message",
    MessageId: err.messageId,
    Message: err.message,
    MessageArgs: err.messageArgs,
    MessageSeverity: severity,
    Severity: severity,
  };
  if (err.resolution) info.Resolution = err.resolution;
  if (err.relatedProperties) info.RelatedProperties = err.relatedProperties;
  return { error: { code: err.messageId, message: err.message, "@Message.ExtendedInfo": [info] } };
}

/**
 * The one 404 for "does not exist" and "outside your chassis": same status, body and headers, so a
 * client cannot tell them apart.
 */
export function notFound(resourceType: string, name: string): RedfishError {
  return baseError(404, "ResourceNotFound", [resourceType, name]);
}
