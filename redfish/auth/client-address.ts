// The client address used for back-off and session records: the socket peer, or — only when the peer is
// a configured trusted proxy — the nearest untrusted hop of X-Forwarded-For.
import { isIP } from "node:net";

/** "::ffff:10.0.0.1" → "10.0.0.1" so one client has one key whatever the socket family. */
export function normalizeAddress(address: string): string {
  const trimmed = address.trim();
  return trimmed.startsWith("::ffff:") && isIP(trimmed.slice(7)) === 4 ? trimmed.slice(7) : trimmed;
}

export function clientAddress(
  socketAddress: string | undefined,
  forwardedFor: string | undefined,
  isTrustedProxy: (address: string) => boolean,
): string {
  let client = socketAddress ? normalizeAddress(socketAddress) : "unknown";
  if (!forwardedFor || !isTrustedProxy(client)) return client;
  // Walk from the nearest hop outwards; every hop that is itself a trusted proxy passes trust on.
  const hops = forwardedFor.split(",").map(normalizeAddress).reverse();
  for (const hop of hops) {
    // A hop that is not an address cannot be attributed; keep the last proxy that handed it over.
    if (isIP(hop) === 0) return client;
    client = hop;
    if (!isTrustedProxy(hop)) return hop;
  }
  return client;
}
