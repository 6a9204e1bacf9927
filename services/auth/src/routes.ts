/** AuthService handlers: identity checks and proto mapping around auth.ts / provisioning.ts. */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { AuthService } from "../../gen/seckill/auth/v1/auth_pb.ts";
import { Role as ProtoRole } from "../../gen/seckill/common/v1/common_pb.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { Routes } from "../../shared/src/transport/grpc-server.ts";
import {
  CLIENT_IP_HEADER,
  type Role,
  requireAdmin,
  requireCaller,
} from "../../shared/src/transport/identity.ts";
import type { Auth, TokenPairView, UserView } from "./auth.ts";
import { type ProvisionDeps, provisionUsers } from "./provisioning.ts";

export interface AuthRoutesOptions {
  auth: Auth;
  log: Logger;
  /** ALLOW_PROVISIONING: ProvisionUsers answers FAILED_PRECONDITION without it. */
  provisioning: ProvisionDeps & { enabled: boolean };
}

const protoRole = (role: Role) => (role === "admin" ? ProtoRole.ADMIN : ProtoRole.USER);

const userMessage = (user: UserView) => ({
  id: user.id,
  username: user.username,
  role: protoRole(user.role),
  createdAt: timestampFromDate(user.createdAt),
});

const tokenPair = ({ access, refresh }: TokenPairView) => ({
  accessToken: access.token,
  refreshToken: refresh.token,
  accessExpiresAt: timestampFromDate(access.expiresAt),
  refreshExpiresAt: timestampFromDate(refresh.expiresAt),
  tokenType: "Bearer",
});

export function authRoutes({ auth, log, provisioning }: AuthRoutesOptions): Routes {
  return (router) =>
    router.service(AuthService, {
      async register(req) {
        const { user, tokens } = await auth.register(req.username, req.password);
        return { user: userMessage(user), tokens: tokenPair(tokens) };
      },

      async login(req, ctx) {
        const ip = ctx.requestHeader.get(CLIENT_IP_HEADER) ?? undefined;
        const { user, tokens } = await auth.login(req.username, req.password, ip);
        return { user: userMessage(user), tokens: tokenPair(tokens) };
      },

      async refresh(req) {
        return { tokens: tokenPair(await auth.refresh(req.refreshToken)) };
      },

      getPublicKeys() {
        return { keys: auth.jwks() };
      },

      async getMe(_req, ctx) {
        const caller = requireCaller(ctx);
        return { user: userMessage(await auth.me(caller.userId)) };
      },

      async provisionUsers(req, ctx) {
        const caller = requireAdmin(ctx);
        if (!provisioning.enabled) {
          throw new ConnectError(
            "ProvisionUsers is disabled on this server (start auth with ALLOW_PROVISIONING=true, never in production)",
            Code.FailedPrecondition,
          );
        }
        const result = await provisionUsers(provisioning, {
          count: req.count,
          usernamePrefix: req.usernamePrefix,
          password: req.password,
          startIndex: req.startIndex,
          issueTokens: req.issueTokens,
        });
        log.info(
          {
            by: caller.userId,
            prefix: req.usernamePrefix,
            startIndex: req.startIndex,
            count: req.count,
            created: result.created,
            issueTokens: req.issueTokens,
            tookMs: result.tookMs,
            phasesMs: result.phasesMs,
          },
          "users provisioned",
        );
        return {
          created: result.created,
          firstUsername: result.firstUsername,
          lastUsername: result.lastUsername,
          tookMs: BigInt(result.tookMs),
          users: result.users.map((u) => ({
            userId: u.userId,
            username: u.username,
            accessToken: u.accessToken,
            accessExpiresAt: u.accessExpiresAt && timestampFromDate(u.accessExpiresAt),
          })),
        };
      },
    });
}
