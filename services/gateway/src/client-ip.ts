/**
 * The client's address as the edge sees it. Behind N trusted proxies (a load
 * balancer: 1), the client is the address the outermost trusted proxy appended
 * to X-Forwarded-For; entries further left were written by the client and are
 * not trusted. With 0 trusted proxies the header is ignored.
 */
import { isIP } from "node:net";
import { createContextKey } from "@connectrpc/connect";

/** The TCP peer address of the request, set by the node adapter's contextValues. */
export const peerAddressKey = createContextKey<string | undefined>(undefined, {
  description: "TCP peer address",
});

/** IPv4-mapped IPv6 ("::ffff:10.0.0.1") as plain IPv4, so blacklist entries match either way. */
export function normalizeIp(address: string): string {
  const trimmed = address.trim();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(trimmed);
  if (mapped) return mapped[1]!;
  if (isIP(trimmed) === 6) {
    // The canonical text form (lower case, zeros compressed), as admin stores blacklist entries.
    const host = new URL(`http://[${trimmed}]/`).hostname.slice(1, -1);
    return /^::ffff:\d+\.\d+\.\d+\.\d+$/.test(host) ? host.slice(7) : host;
  }
  return trimmed;
}

export function clientIp(
  peer: string | undefined,
  forwardedFor: string | null,
  trustedHops: number,
): string {
  const chain: string[] = [];
  if (trustedHops > 0 && forwardedFor) {
    for (const part of forwardedFor.split(",")) {
      const ip = stripPort(part.trim());
      if (ip) chain.push(ip);
    }
  }
  chain.push(peer ? normalizeIp(peer) : "unknown");
  const index = Math.max(0, chain.length - 1 - trustedHops);
  const candidate = chain[index]!;
  // A proxy that wrote garbage gets the proxy's own view rather than an invented key.
  return isIP(candidate) || candidate === "unknown" ? candidate : (chain.at(-1) ?? "unknown");
}

/** "1.2.3.4:5678" and "[::1]:5678" as the bare address. */
function stripPort(value: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(value);
  if (bracketed) return normalizeIp(bracketed[1]!);
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(value);
  if (v4) return v4[1]!;
  return normalizeIp(value);
}
