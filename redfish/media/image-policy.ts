// What InsertMedia checks before anything is created: the image URL against redfish.imageUrlPolicy (the SSRF
// guard; the NORMALISED URL it checked is the one stored in the DataVolume), and a per-user rate of inserts.
import type { ImageUrlPolicyConfig, Resolver, UrlPolicyRule } from "../url-policy";
import { checkImageUrl } from "../url-policy";
import { BASE_REGISTRY, MessageId, RedfishError } from "../errors";
import { INSERT_ACTION, type InsertRequest } from "./request";

/** Base 1.18 ActionParameterValueError: the value is well-formed but not acceptable here. */
function refusedImage(rule: UrlPolicyRule, detail: string): RedfishError {
  return new RedfishError(
    400,
    `${BASE_REGISTRY}.ActionParameterValueError`,
    `The value for the parameter Image in the action ${INSERT_ACTION} is invalid: ${detail}`,
    ["Image", INSERT_ACTION],
    { resolution: `The image URL policy (redfish.imageUrlPolicy, rule ${rule}) refuses this destination. Use an image server outside the cluster's internal networks, or ask the platform team to allow it.`, relatedProperties: ["/Image"] },
  );
}

/** The request with the normalised image URL, or a 400 naming the policy rule. Resolves host names (DNS). */
export async function admitImage(request: InsertRequest, policy: ImageUrlPolicyConfig, resolver?: Resolver): Promise<InsertRequest> {
  const verdict = await checkImageUrl(request.image, policy, resolver);
  if (!verdict.ok) throw refusedImage(verdict.rule, verdict.message);
  return { ...request, image: verdict.url };
}

export interface InsertRate {
  /** Inserts a user may make at once. */
  burst: number;
  /** Seconds until one more insert is allowed. */
  refillSeconds: number;
}

/**
 * A token bucket per user name (the configured users: a bounded set). Each insert is a new DataVolume, so this
 * bounds what one user can make the cluster create and fetch (redfish.insertMediaRate; default 60 at once, for a
 * Metal3 roll-out of many hosts under one BMC user, then one a second).
 */
export class InsertRateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly now: () => number) {}

  /** Takes one insert for `user` under `rate`, or throws 429 with Retry-After. */
  take(user: string, rate: InsertRate): void {
    const now = this.now();
    const previous = this.buckets.get(user) ?? { tokens: rate.burst, at: now };
    const refilled = Math.min(rate.burst, previous.tokens + (now - previous.at) / (rate.refillSeconds * 1000));
    if (refilled < 1) {
      const wait = Math.max(1, Math.ceil((1 - refilled) * rate.refillSeconds));
      this.buckets.set(user, { tokens: refilled, at: now });
      throw new RedfishError(429, MessageId.ServiceTemporarilyUnavailable, `Too many InsertMedia requests. Retry in ${wait} seconds.`, [String(wait)], {
        headers: { "Retry-After": String(wait) },
        resolution: `Virtual media inserts are limited to ${rate.burst} at once and one every ${rate.refillSeconds} seconds per user.`,
      });
    }
    this.buckets.set(user, { tokens: refilled - 1, at: now });
  }
}
