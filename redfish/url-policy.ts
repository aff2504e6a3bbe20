// Which URLs the module lets CDI's importer (and later event deliveries) fetch: the SSRF guard of InsertMedia.
// Pure apart from the injectable resolver. The URL that is checked is the URL that gets stored: the WHATWG
// normalisation (`new URL(raw).href`), so the module and CDI's Go importer cannot read two different hosts out of
// one string. Spellings that only WHATWG normalises (2130706433, 0x7f000001, 127.1, ...) are refused outright:
// another parser (Go, glibc's inet_aton) may read them differently.
//
// The check happens once, before the DataVolume exists; a name can resolve differently when CDI fetches it (DNS
// rebinding) and CDI follows redirects, so the chart's importer NetworkPolicy (docs/deploy.md) is the second line.
import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { z } from "zod";

/** The rule that refused a URL; Redfish 400 bodies and logs name it. */
export type UrlPolicyRule =
  | "url-syntax"
  | "scheme"
  | "non-canonical-ipv4"
  | "loopback"
  | "link-local"
  | "private"
  | "cgnat"
  | "unique-local"
  | "ipv4-mapped"
  | "reserved"
  | "service-cidr"
  | "denied-cidr"
  | "cluster-name"
  | "metadata-name"
  | "dns";

export type UrlPolicyResult = { ok: true; url: string } | { ok: false; rule: UrlPolicyRule; message: string };

/** Host name → every address it resolves to (A and AAAA). */
export type Resolver = (hostname: string) => Promise<string[]>;

export const MAX_URL_LENGTH = 4096;

// ---- configuration ------------------------------------------------------------------------------------------

function cidrProblem(value: string): string | undefined {
  const [address, bits, extra] = value.split("/");
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return `${JSON.stringify(value)} is not an IP address or CIDR range (like "10.20.0.0/16")`;
  if (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128))) {
    return `${JSON.stringify(value)} has an invalid prefix length`;
  }
  return undefined;
}

const cidr = z.string().superRefine((value, ctx) => {
  const problem = cidrProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

const HOST_PATTERN = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const hostPattern = z.string().regex(HOST_PATTERN, {
  error: iss => `${JSON.stringify(iss.input)} is not a host name or "*.domain" pattern (lowercase)`,
});

/** `redfish.imageUrlPolicy` in the module config (docs/configuration.md, docs/deploy.md). */
export const imageUrlPolicySchema = z.strictObject({
  /** Lab opt-out: skip every destination rule (the URL is still parsed, normalised and checked for odd spellings). */
  allowAllDestinations: z.boolean().default(false),
  /** Host names (or `*.domain`) allowed whatever they resolve to, e.g. an internal image mirror. */
  allowHosts: z.array(hostPattern).default([]),
  /** Addresses allowed even inside a denied range (e.g. a mirror at 10.20.0.5/32). */
  allowCidrs: z.array(cidr).default([]),
  /** The cluster's Service CIDRs (like "10.96.0.0/12" or OpenShift's "172.30.0.0/16"). */
  serviceCidrs: z.array(cidr).default([]),
  /** Further ranges to refuse (e.g. the node network when it is public address space). */
  denyCidrs: z.array(cidr).default([]),
  /** The cluster DNS domain: names under it (and under `svc`) are in-cluster Services. */
  clusterDomain: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/)
    .default("cluster.local"),
  /** Time allowed for resolving a host name; unresolved names are refused. */
  resolveTimeoutMs: z.int().min(100).max(30_000).default(5000),
});
export type ImageUrlPolicyConfig = z.output<typeof imageUrlPolicySchema>;

// ---- address ranges -----------------------------------------------------------------------------------------

type AddressRule = Extract<UrlPolicyRule, "loopback" | "link-local" | "private" | "cgnat" | "unique-local" | "ipv4-mapped" | "reserved">;

/** Denied by default, in the order they are reported (the first match names the rule). */
const DEFAULT_DENIED: readonly (readonly [AddressRule, string])[] = [
  ["loopback", "127.0.0.0/8"],
  ["loopback", "::1/128"],
  ["link-local", "169.254.0.0/16"],
  ["link-local", "fe80::/10"],
  ["private", "10.0.0.0/8"],
  ["private", "172.16.0.0/12"],
  ["private", "192.168.0.0/16"],
  ["private", "fec0::/10"],
  ["cgnat", "100.64.0.0/10"],
  ["unique-local", "fc00::/7"],
  // IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo): a way around the IPv4 rules.
  ["ipv4-mapped", "::ffff:0:0/96"],
  ["ipv4-mapped", "::/96"],
  ["ipv4-mapped", "64:ff9b::/96"],
  ["ipv4-mapped", "64:ff9b:1::/48"],
  ["ipv4-mapped", "2002::/16"],
  ["ipv4-mapped", "2001::/32"],
  ["reserved", "0.0.0.0/8"],
  ["reserved", "192.0.0.0/24"],
  ["reserved", "198.18.0.0/15"],
  ["reserved", "224.0.0.0/4"],
  ["reserved", "240.0.0.0/4"],
  ["reserved", "100::/64"],
  ["reserved", "ff00::/8"],
];

/** The ranges denied by default, for the importer NetworkPolicy (scripts/deploy): the same list the check uses. */
export const DEFAULT_DENIED_RANGES: readonly string[] = DEFAULT_DENIED.map(([, range]) => range);

/** Instance-metadata host names of the common clouds (their addresses are link-local, but names may be served otherwise). */
const METADATA_NAMES = new Set([
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "instance-data",
  "instance-data.ec2.internal",
  "metadata.azure.internal",
  "metadata.tencentyun.com",
  "metadata.platformequinix.com",
]);

const familyOf = (address: string): "ipv4" | "ipv6" => (isIP(address) === 6 ? "ipv6" : "ipv4");

/**
 * A matcher over ranges that only compares an address with ranges of its own family: Node's BlockList matches IPv4
 * addresses against IPv6 rules as IPv4-mapped, so "::/96" would otherwise match every IPv4 address.
 */
function rangeMatcher(ranges: readonly string[]): (address: string) => boolean {
  const lists = { ipv4: new BlockList(), ipv6: new BlockList() };
  for (const range of ranges) {
    const [address, bits] = range.split("/");
    const family = familyOf(address);
    if (bits === undefined) lists[family].addAddress(address, family);
    else lists[family].addSubnet(address, Number(bits), family);
  }
  return address => {
    const family = familyOf(address);
    return lists[family].check(address, family);
  };
}

interface CompiledPolicy {
  readonly config: ImageUrlPolicyConfig;
  readonly denied: readonly { rule: AddressRule; range: string; matches: (address: string) => boolean }[];
  readonly allowed: (address: string) => boolean;
  readonly service: (address: string) => boolean;
  readonly extraDenied: (address: string) => boolean;
}

// Compiled once per config object (the config changes rarely; InsertMedia calls this per request).
const compiledCache = new WeakMap<ImageUrlPolicyConfig, CompiledPolicy>();

function compile(config: ImageUrlPolicyConfig): CompiledPolicy {
  let compiled = compiledCache.get(config);
  if (!compiled) {
    compiled = {
      config,
      denied: DEFAULT_DENIED.map(([rule, range]) => ({ rule, range, matches: rangeMatcher([range]) })),
      allowed: rangeMatcher(config.allowCidrs),
      service: rangeMatcher(config.serviceCidrs),
      extraDenied: rangeMatcher(config.denyCidrs),
    };
    compiledCache.set(config, compiled);
  }
  return compiled;
}

// ---- the check ----------------------------------------------------------------------------------------------

const refuse = (rule: UrlPolicyRule, message: string): UrlPolicyResult => ({ ok: false, rule, message: `image URL refused (rule ${rule}): ${message}` });

const ALLOW_HINT = "add it to redfish.imageUrlPolicy.allowCidrs if this destination is intended";

/** The rule an address breaks, or undefined when it may be fetched. */
function addressProblem(address: string, policy: CompiledPolicy): { rule: UrlPolicyRule; why: string } | undefined {
  if (policy.allowed(address)) return undefined;
  if (policy.service(address)) return { rule: "service-cidr", why: "is in the cluster's Service CIDR (redfish.imageUrlPolicy.serviceCidrs)" };
  if (policy.extraDenied(address)) return { rule: "denied-cidr", why: "is in redfish.imageUrlPolicy.denyCidrs" };
  for (const { rule, range, matches } of policy.denied) {
    if (matches(address)) return { rule, why: `is a ${rule} address (${range})` };
  }
  return undefined;
}

/**
 * The host exactly as written between "//" and the path, before WHATWG's normalisation (which turns 0x7f.1 into
 * 127.0.0.1). Special schemes treat "\" like "/".
 */
function rawHostText(raw: string): string {
  const afterScheme = raw.slice(raw.indexOf(":") + 1).replace(/^[/\\]*/, "");
  const authority = afterScheme.split(/[/\\?#]/, 1)[0];
  const hostAndPort = authority.slice(authority.lastIndexOf("@") + 1);
  if (hostAndPort.startsWith("[")) return hostAndPort.slice(0, hostAndPort.indexOf("]") + 1);
  const colon = hostAndPort.lastIndexOf(":");
  return colon < 0 ? hostAndPort : hostAndPort.slice(0, colon);
}

const matchesHostPattern = (host: string, pattern: string): boolean =>
  pattern.startsWith("*.") ? host.endsWith(pattern.slice(1)) : host === pattern;

function hostNameProblem(host: string, config: ImageUrlPolicyConfig): { rule: UrlPolicyRule; why: string } | undefined {
  if (METADATA_NAMES.has(host)) return { rule: "metadata-name", why: "is a cloud instance-metadata name" };
  if (host === "localhost" || host.endsWith(".localhost")) return { rule: "loopback", why: "is a loopback name" };
  const domain = config.clusterDomain;
  if (host === "svc" || host.endsWith(".svc") || host === domain || host.endsWith(`.${domain}`)) {
    return { rule: "cluster-name", why: `is an in-cluster Service name (*.svc, *.${domain})` };
  }
  // A name without a dot is completed from the importer pod's DNS search path (<ns>.svc.<cluster domain>).
  if (!host.includes(".")) return { rule: "cluster-name", why: "has no domain, so the cluster's DNS search path would complete it" };
  return undefined;
}

async function resolveWithin(resolver: Resolver, host: string, timeoutMs: number): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([resolver(host), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The default resolver: the system's (getaddrinfo), every address, as the importer pod would resolve it. */
export const systemResolver: Resolver = async hostname => (await lookup(hostname, { all: true, verbatim: true })).map(a => a.address);

/**
 * Checks an image URL against the policy. On success, `url` is the normalised form to store in the DataVolume
 * (never the raw string). Never throws.
 */
export async function checkImageUrl(raw: string, config: ImageUrlPolicyConfig, resolver: Resolver = systemResolver): Promise<UrlPolicyResult> {
  if (raw.length > MAX_URL_LENGTH) return refuse("url-syntax", `longer than ${MAX_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return refuse("url-syntax", "not an absolute URL (like https://images.example.com/boot.iso)");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return refuse("scheme", `scheme ${JSON.stringify(url.protocol.slice(0, -1))} is not http or https`);

  const policy = compile(config);
  const isIpv6Literal = url.hostname.startsWith("[");
  const host = isIpv6Literal ? url.hostname.slice(1, -1) : url.hostname;
  if (isIP(host) === 4 && rawHostText(raw).toLowerCase() !== host) {
    return refuse("non-canonical-ipv4", `host ${JSON.stringify(rawHostText(raw))} is an IPv4 address in a non-canonical spelling; write it as ${host}`);
  }
  if (config.allowAllDestinations) return { ok: true, url: url.href };

  if (isIP(host) !== 0) {
    const problem = addressProblem(host, policy);
    return problem ? refuse(problem.rule, `address ${host} ${problem.why}; ${ALLOW_HINT}`) : { ok: true, url: url.href };
  }

  const name = host.replace(/\.+$/, "");
  if (config.allowHosts.some(pattern => matchesHostPattern(name, pattern))) return { ok: true, url: url.href };
  const nameProblem = hostNameProblem(name, config);
  if (nameProblem) return refuse(nameProblem.rule, `host ${name} ${nameProblem.why}; add it to redfish.imageUrlPolicy.allowHosts if this destination is intended`);

  let addresses: string[];
  try {
    addresses = await resolveWithin(resolver, name, config.resolveTimeoutMs);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return refuse("dns", `host ${name} could not be resolved (${typeof code === "string" ? code : error instanceof Error ? error.message : "error"})`);
  }
  if (addresses.length === 0) return refuse("dns", `host ${name} resolves to no address`);
  for (const address of addresses) {
    if (isIP(address) === 0) return refuse("dns", `host ${name} resolved to ${JSON.stringify(address)}, which is not an address`);
    const problem = addressProblem(address, policy);
    if (problem) return refuse(problem.rule, `host ${name} resolves to ${address}, which ${problem.why}; ${ALLOW_HINT}, or the host to allowHosts`);
  }
  return { ok: true, url: url.href };
}
