// InsertMedia parameters: zod for shape and types (Base messages through parseBody), then the checks a zod
// type cannot express with the right Redfish message. The URL is handed to CDI as data (a DataVolume field),
// never to a shell; the character rules keep it identical for every URL parser on the way (WHATWG here, Go in CDI).
import { z } from "zod";
import { BASE_REGISTRY, baseError, RedfishError } from "../errors";
import { parseBody } from "../odata";

export const INSERT_ACTION = "VirtualMedia.InsertMedia";
export const EJECT_ACTION = "VirtualMedia.EjectMedia";

export const MAX_IMAGE_LENGTH = 2048;
export const MAX_USERNAME_LENGTH = 256;
export const MAX_PASSWORD_LENGTH = 1024;

export const TRANSFER_PROTOCOLS = ["HTTP", "HTTPS"] as const;
export const TRANSFER_METHODS = ["Stream", "Upload"] as const;
export const MEDIA_TYPES = ["CD", "DVD"] as const;

const insertMediaSchema = z.strictObject({
  Image: z.string(),
  Inserted: z.boolean().optional(),
  WriteProtected: z.boolean().optional(),
  TransferProtocolType: z.enum(TRANSFER_PROTOCOLS).optional(),
  TransferMethod: z.enum(TRANSFER_METHODS).optional(),
  MediaType: z.enum(MEDIA_TYPES).optional(),
  UserName: z.string().optional(),
  Password: z.string().optional(),
});

/** A validated InsertMedia request. `credentials` is secret: never log or echo it. */
export interface InsertRequest {
  image: string;
  protocol: (typeof TRANSFER_PROTOCOLS)[number];
  credentials?: { username: string; password: string };
}

/** RFC 3986 characters only (unreserved, reserved, '%'): no whitespace, control, quote, backslash or non-ASCII. */
const URI_CHARACTERS = /^[A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]+$/;
const CONTROL = /[\u0000-\u001f\u007f]/;

function shown(value: string): string {
  const printable = value.replace(/[^\x20-\x7e]/g, "?");
  return printable.length > 100 ? `${printable.slice(0, 100)}...` : printable;
}

function formatError(value: string, parameter: string, resolution: string): RedfishError {
  const args = [value, parameter, INSERT_ACTION];
  return new RedfishError(
    400,
    `${BASE_REGISTRY}.ActionParameterValueFormatError`,
    `The value '${args[0]}' for the parameter ${parameter} in the action ${INSERT_ACTION} is of a different format than the parameter can accept.`,
    args,
    { resolution },
  );
}

function notInList(value: string, parameter: string, resolution: string): RedfishError {
  return baseError(400, "ActionParameterValueNotInList", [value, parameter, INSERT_ACTION], { resolution });
}

/** Checks the Image URL; returns its transfer protocol. */
export function checkImage(image: string): InsertRequest["protocol"] {
  const bad = (why: string) => formatError(shown(image), "Image", why);
  if (image.length === 0) throw bad("Give the http:// or https:// URL of the image.");
  if (image.length > MAX_IMAGE_LENGTH) throw formatError(`${shown(image)}`, "Image", `Use a URL of at most ${MAX_IMAGE_LENGTH} characters.`);
  if (!URI_CHARACTERS.test(image)) {
    throw bad("Use a URL made of RFC 3986 characters only: percent-encode spaces, quotes, backslashes and non-ASCII characters.");
  }
  let url: URL;
  try {
    url = new URL(image);
  } catch {
    throw bad("Give an absolute http:// or https:// URL.");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw bad("Only http:// and https:// images can be imported.");
  if (!/^[a-z]+:\/\/[^/?#]/i.test(image) || url.hostname === "") throw bad("The URL must name a host.");
  if (url.username !== "" || url.password !== "") {
    // Echo the URL without its credentials: error bodies end up in client logs.
    url.username = "";
    url.password = "";
    throw formatError(shown(url.href), "Image", "Do not put credentials in the URL; give them as UserName and Password.");
  }
  return url.protocol === "https:" ? "HTTPS" : "HTTP";
}

function checkCredentials(body: { UserName?: string; Password?: string }): InsertRequest["credentials"] {
  const { UserName: username, Password: password } = body;
  if (username === undefined && password === undefined) return undefined;
  if (username === undefined) throw baseError(400, "ActionParameterMissing", [INSERT_ACTION, "UserName"]);
  if (password === undefined) throw baseError(400, "ActionParameterMissing", [INSERT_ACTION, "Password"]);
  if (username.length === 0 || username.length > MAX_USERNAME_LENGTH || CONTROL.test(username) || username.includes(":")) {
    throw formatError(
      shown(username),
      "UserName",
      `Use a user name of 1 to ${MAX_USERNAME_LENGTH} characters without control characters or ':'.`,
    );
  }
  if (password.length === 0 || password.length > MAX_PASSWORD_LENGTH || CONTROL.test(password)) {
    // The value is never echoed.
    throw formatError("(hidden)", "Password", `Use a password of 1 to ${MAX_PASSWORD_LENGTH} characters without control characters.`);
  }
  return { username, password };
}

/** Parses an InsertMedia body. Throws RedfishError 400 with the Base message for the first problem. */
export function parseInsertMedia(body: Record<string, unknown>): InsertRequest {
  // Annotations (@Redfish.OperationApplyTime, @odata.type) are not parameters.
  const parameters = Object.fromEntries(Object.entries(body).filter(([key]) => !key.startsWith("@")));
  const parsed = parseBody(insertMediaSchema, parameters, INSERT_ACTION);
  const protocol = checkImage(parsed.Image);
  if (parsed.Inserted === false) {
    throw notInList("false", "Inserted", "Virtual media is always inserted by InsertMedia; omit Inserted or send true.");
  }
  if (parsed.WriteProtected === false) {
    throw notInList("false", "WriteProtected", "The virtual CD is read-only; omit WriteProtected or send true.");
  }
  if (parsed.TransferProtocolType !== undefined && parsed.TransferProtocolType !== protocol) {
    throw notInList(parsed.TransferProtocolType, "TransferProtocolType", `The Image URL is ${protocol.toLowerCase()}://; send ${protocol} or omit TransferProtocolType.`);
  }
  const credentials = checkCredentials(parsed);
  return { image: parsed.Image, protocol, ...(credentials ? { credentials } : {}) };
}

/**
 * EjectMedia takes no parameters. Clients send no body, `{}` (sushy retries with it) or null; anything with
 * properties is refused.
 */
export function parseEjectMedia(text: string): void {
  if (text.trim() === "") return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw baseError(400, "MalformedJSON");
  }
  if (parsed === null) return;
  if (typeof parsed !== "object" || Array.isArray(parsed)) {
    throw baseError(400, "MalformedJSON", [], { resolution: "Send no body or an empty JSON object." });
  }
  const key = Object.keys(parsed).find(k => !k.startsWith("@"));
  if (key !== undefined) throw baseError(400, "ActionParameterUnknown", [EJECT_ACTION, key.slice(0, 100)]);
}
