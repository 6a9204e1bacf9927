import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";

/**
 * The authenticated caller, as the gateway forwards it after verifying the JWT.
 * Internal services read identity only from these headers, never from a request
 * body; only the gateway sets them (it strips any a client sent).
 */
export const USER_ID_HEADER = "x-seckill-user-id";
export const USER_ROLE_HEADER = "x-seckill-user-role";
/** The client's IP as seen by the gateway, for per-IP limits and the IP blacklist. */
export const CLIENT_IP_HEADER = "x-seckill-client-ip";

export type Role = "user" | "admin";

export interface Caller {
  userId: string;
  role: Role;
  ip: string | undefined;
}

export function callerOf(ctx: Pick<HandlerContext, "requestHeader">): Caller | undefined {
  const userId = ctx.requestHeader.get(USER_ID_HEADER);
  if (!userId) return undefined;
  const role = ctx.requestHeader.get(USER_ROLE_HEADER) === "admin" ? "admin" : "user";
  return { userId, role, ip: ctx.requestHeader.get(CLIENT_IP_HEADER) ?? undefined };
}

/** The caller, or UNAUTHENTICATED. */
export function requireCaller(ctx: Pick<HandlerContext, "requestHeader">): Caller {
  const caller = callerOf(ctx);
  if (!caller) throw new ConnectError("authentication required", Code.Unauthenticated);
  return caller;
}

/** The caller if an admin; UNAUTHENTICATED without identity, PERMISSION_DENIED for other roles. */
export function requireAdmin(ctx: Pick<HandlerContext, "requestHeader">): Caller {
  const caller = requireCaller(ctx);
  if (caller.role !== "admin") throw new ConnectError("admin role required", Code.PermissionDenied);
  return caller;
}

/** A body's optional user id must match the caller's; identity is never taken from it. */
export function checkBodyUserId(bodyUserId: string, caller: Caller): void {
  if (bodyUserId !== "" && bodyUserId !== caller.userId) {
    throw new ConnectError(
      "user_id in the request does not match the authenticated user",
      Code.InvalidArgument,
    );
  }
}

/** Headers that carry a caller's identity to an internal service. */
export function identityHeaders(caller: Caller): Record<string, string> {
  return {
    [USER_ID_HEADER]: caller.userId,
    [USER_ROLE_HEADER]: caller.role,
    ...(caller.ip ? { [CLIENT_IP_HEADER]: caller.ip } : {}),
  };
}
