/**
 * Who may call what at the edge, and the gate every public call passes before
 * its request body is even read: identity headers from the client removed,
 * the IP blacklist, the per-IP and instance rate limits, then the bearer JWT
 * (UNAUTHENTICATED when missing, expired or forged; PERMISSION_DENIED for a
 * user token on an admin method), then the per-user limit. The verified
 * caller and the client IP travel to the forwarder in context values.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import { bearerToken, type VerifiedAccess } from "../../auth/src/client.ts";
import type { Caller } from "../../shared/src/transport/identity.ts";
import { clientIp, peerAddressKey } from "./client-ip.ts";
import type { EdgeLimiter, Refusal } from "./limits.ts";
import { type RefusalReason, refusals, spoofedIdentityHeaders } from "./metrics.ts";

/**
 * public: anyone; user: any valid access token (users and admins); admin: a
 * token with role admin. The services behind check again (defence in depth).
 */
export type Access = "public" | "user" | "admin";

export interface MethodPolicy {
  access: Access;
  /** Refuse blacklisted client IPs (PERMISSION_DENIED). */
  ipBlacklist: boolean;
  /** Count against the rate limits. */
  rateLimited: boolean;
}

/** The verified caller of this call (absent on public methods). */
export const callerKey = createContextKey<Caller | undefined>(undefined, {
  description: "verified caller",
});
/** The client's IP as resolved by the gate. */
export const clientIpKey = createContextKey<string | undefined>(undefined, {
  description: "client IP",
});

/** Trusted headers internal services read identity from; only the edge may set them. */
const IDENTITY_HEADER_PREFIX = "x-seckill-";

/** Retry hint on RESOURCE_EXHAUSTED answers (also exposed to browsers by CORS). */
export const RETRY_AFTER_MS_HEADER = "retry-after-ms";

export interface EdgeGateOptions {
  verifier: { verify(token: string): Promise<VerifiedAccess> };
  limiter: Pick<EdgeLimiter, "admitClient" | "admitUser">;
  blacklist: { isBlocked(kind: "ip", member: string | undefined): boolean };
  trustedProxyHops: number;
}

export type RequestGate = (ctx: HandlerContext) => Promise<void>;

export function refusal(
  reason: RefusalReason,
  code: Code,
  message: string,
  service: string,
  metadata?: Record<string, string>,
): ConnectError {
  refusals.inc({ reason, service });
  return new ConnectError(message, code, metadata);
}

function limited(r: Refusal, service: string): ConnectError {
  const what =
    r.kind === "ip" ? "this client address" : r.kind === "user" ? "this user" : "the gateway";
  return refusal(
    `rate_limited_${r.kind}`,
    Code.ResourceExhausted,
    `rate limit of ${what} exceeded; retry after ${r.retryAfterMs} ms`,
    service,
    { [RETRY_AFTER_MS_HEADER]: String(r.retryAfterMs) },
  );
}

/** The gate for calls of one method, under its policy. */
export function createEdgeGate(policy: MethodPolicy, opts: EdgeGateOptions): RequestGate {
  return async (ctx) => {
    const service = ctx.service.typeName;
    let spoofed = false;
    for (const name of [...ctx.requestHeader.keys()]) {
      if (name.startsWith(IDENTITY_HEADER_PREFIX)) {
        ctx.requestHeader.delete(name);
        spoofed = true;
      }
    }
    if (spoofed) spoofedIdentityHeaders.inc();

    const ip = clientIp(
      ctx.values.get(peerAddressKey),
      ctx.requestHeader.get("x-forwarded-for"),
      opts.trustedProxyHops,
    );
    ctx.values.set(clientIpKey, ip);

    if (policy.ipBlacklist && opts.blacklist.isBlocked("ip", ip)) {
      throw refusal(
        "ip_blacklisted",
        Code.PermissionDenied,
        "requests from this address are blocked",
        service,
      );
    }
    if (policy.rateLimited) {
      const r = opts.limiter.admitClient(ip);
      if (r) throw limited(r, service);
    }
    if (policy.access === "public") return;

    let verified: VerifiedAccess;
    try {
      verified = await opts.verifier.verify(bearerToken(ctx.requestHeader.get("authorization")));
    } catch (err) {
      const e = ConnectError.from(err);
      // UNAVAILABLE (no keys could ever be fetched) is not the caller's fault: pass it on.
      if (e.code === Code.Unauthenticated) refusals.inc({ reason: "unauthenticated", service });
      throw e;
    }
    if (policy.access === "admin" && verified.role !== "admin") {
      throw refusal("permission_denied", Code.PermissionDenied, "admin role required", service);
    }
    if (policy.rateLimited) {
      const r = opts.limiter.admitUser(verified.userId);
      if (r) throw limited(r, service);
    }
    ctx.values.set(callerKey, { userId: verified.userId, role: verified.role, ip });
  };
}

/** "seckill.app.v1.SeckillAppService/Buy" */
export const methodName = (method: DescMethod) => `${method.parent.typeName}/${method.name}`;
