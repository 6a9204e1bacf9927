/**
 * The auth use cases, independent of the transport: register, login, refresh,
 * the caller's account, the JWKS and the bootstrap admin. routes.ts maps them
 * to the proto; provisioning.ts holds the bulk path.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import type { Transaction } from "kysely";
import { newId } from "../../shared/src/data-plane/ids.ts";
import type { Logger } from "../../shared/src/runtime/log.ts";
import type { Role } from "../../shared/src/transport/identity.ts";
import type { KeyRing } from "./keys.ts";
import { loginsTotal, refreshesTotal, registrationsTotal, tokensIssuedTotal } from "./metrics.ts";
import {
  normalizeUsername,
  PASSWORD_MAX,
  type PasswordHasher,
  USERNAME_MAX,
  validatePassword,
  validateUsername,
} from "./passwords.ts";
import type { LoginLimiter } from "./rate-limit.ts";
import type { AuthDatabase } from "./schema.ts";
import type { SessionStore } from "./sessions.ts";
import type { IssuedRefreshToken, IssuedToken, TokenIssuer } from "./tokens.ts";
import type { UserRow, UserStore } from "./users.ts";

export interface UserView {
  id: string;
  username: string;
  role: Role;
  createdAt: Date;
}

export interface TokenPairView {
  access: IssuedToken;
  refresh: IssuedRefreshToken;
}

export interface AuthDeps {
  users: UserStore;
  sessions: SessionStore;
  hasher: PasswordHasher;
  issuer: TokenIssuer;
  ring: KeyRing;
  limiter: LoginLimiter;
  log: Logger;
}

/** The one answer for a wrong password and an unknown username alike. */
export const BAD_CREDENTIALS = "invalid username or password";

const view = (row: UserRow): UserView => ({
  id: row.id,
  username: row.username,
  role: row.role,
  createdAt: row.created_at,
});

const annotate = (attributes: Record<string, string | number | boolean>) =>
  trace.getActiveSpan()?.setAttributes(attributes);

export class Auth {
  constructor(private readonly deps: AuthDeps) {}

  private async issuePair(
    user: { id: string; role: Role },
    via: "register" | "login" | "refresh",
    familyId?: string,
    trx?: Transaction<AuthDatabase>,
  ): Promise<TokenPairView> {
    const now = Date.now();
    const [access, refresh] = await Promise.all([
      this.deps.issuer.access(user, now),
      this.deps.issuer.refresh(user.id, familyId, now),
    ]);
    await this.deps.sessions.record(
      {
        jti: refresh.jti,
        familyId: refresh.familyId,
        userId: user.id,
        expiresAt: refresh.expiresAt,
      },
      new Date(now),
      trx,
    );
    tokensIssuedTotal.inc({ type: "access", via });
    tokensIssuedTotal.inc({ type: "refresh", via });
    return { access, refresh };
  }

  async register(
    rawUsername: string,
    password: string,
  ): Promise<{ user: UserView; tokens: TokenPairView }> {
    const username = normalizeUsername(rawUsername);
    try {
      validateUsername(username);
      validatePassword(password, username);
    } catch (err) {
      registrationsTotal.inc({ outcome: "invalid" });
      throw err;
    }
    const taken = () => {
      registrationsTotal.inc({ outcome: "exists" });
      return new ConnectError(`username "${username}" is already taken`, Code.AlreadyExists);
    };
    // Cheap check first: a taken name costs no scrypt work.
    if (await this.deps.users.byUsername(username)) throw taken();
    const passwordHash = await this.deps.hasher.hash(password);
    const createdAt = new Date();
    const user = { id: newId(createdAt.getTime()), username, role: "user" as const };
    const inserted = await this.deps.users.insert({
      ...user,
      password_hash: passwordHash,
      created_at: createdAt,
    });
    if (inserted === "exists") throw taken();
    registrationsTotal.inc({ outcome: "created" });
    annotate({ "auth.user_id": user.id });
    this.deps.log.info({ userId: user.id, username }, "user registered");
    const tokens = await this.issuePair(user, "register");
    return { user: { ...user, createdAt }, tokens };
  }

  async login(
    rawUsername: string,
    password: string,
    clientIp: string | undefined,
  ): Promise<{ user: UserView; tokens: TokenPairView }> {
    const outcome = (value: string) => {
      loginsTotal.inc({ outcome: value });
      annotate({ "auth.login.outcome": value });
    };
    if (rawUsername === "" || password === "") {
      outcome("invalid");
      throw new ConnectError("username and password are required", Code.InvalidArgument);
    }
    if (rawUsername.length > USERNAME_MAX || [...password].length > PASSWORD_MAX) {
      outcome("invalid");
      throw new ConnectError(
        `username (max ${USERNAME_MAX}) or password (max ${PASSWORD_MAX} characters) is too long`,
        Code.InvalidArgument,
      );
    }
    const username = normalizeUsername(rawUsername);
    let attempt: Awaited<ReturnType<LoginLimiter["acquire"]>>;
    try {
      attempt = await this.deps.limiter.acquire(username, clientIp);
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.ResourceExhausted) {
        outcome("rate_limited");
        this.deps.log.warn({ username, clientIp }, "login rate-limited");
      } else {
        outcome("error");
      }
      throw err;
    }
    let row: UserRow | undefined;
    let ok: boolean;
    try {
      row = await this.deps.users.byUsername(username);
      ok = row
        ? await this.deps.hasher.verify(password, row.password_hash)
        : await this.deps.hasher.verifyNothing(password);
    } catch (err) {
      outcome("error");
      await attempt.abandoned().catch(() => {});
      throw err;
    }
    if (!ok || !row) {
      outcome("bad_credentials");
      this.deps.log.info(
        { username, clientIp, known: row !== undefined },
        "login refused: bad credentials",
      );
      throw new ConnectError(BAD_CREDENTIALS, Code.Unauthenticated);
    }
    await attempt.succeeded();
    outcome("success");
    annotate({ "auth.user_id": row.id });
    if (!row.provisioned && this.deps.hasher.needsRehash(row.password_hash)) {
      this.rehashInBackground(row.id, password);
    }
    const tokens = await this.issuePair(row, "login");
    return { user: view(row), tokens };
  }

  /** Stores a hash with the current (stronger) parameters; the login does not wait for it. */
  private rehashInBackground(userId: string, password: string): void {
    void this.deps.hasher
      .hash(password)
      .then((hash) => this.deps.users.setPasswordHash(userId, hash))
      .then(
        () => this.deps.log.info({ userId }, "password re-hashed with current parameters"),
        (err) => this.deps.log.warn({ userId, err: (err as Error).message }, "re-hash failed"),
      );
  }

  async refresh(refreshToken: string): Promise<TokenPairView> {
    let claims: Awaited<ReturnType<TokenIssuer["verifyRefresh"]>>;
    try {
      claims = await this.deps.issuer.verifyRefresh(refreshToken);
    } catch (err) {
      refreshesTotal.inc({ outcome: "invalid" });
      throw err;
    }
    const row = await this.deps.users.byId(claims.userId);
    if (!row) {
      refreshesTotal.inc({ outcome: "invalid" });
      throw new ConnectError("the refresh token's user no longer exists", Code.Unauthenticated);
    }
    const { result, value } = await this.deps.sessions.consume(claims.jti, new Date(), (trx) =>
      this.issuePair(row, "refresh", claims.familyId, trx),
    );
    if (result.ok && value) {
      refreshesTotal.inc({ outcome: "ok" });
      return value;
    }
    if (!result.ok && result.reason === "reused") {
      refreshesTotal.inc({ outcome: "reused" });
      this.deps.log.warn(
        { userId: result.userId, familyId: result.familyId },
        "refresh token replayed: session family revoked",
      );
      throw new ConnectError(
        "refresh token was already used; the session is revoked, log in again",
        Code.Unauthenticated,
      );
    }
    refreshesTotal.inc({ outcome: "invalid" });
    throw new ConnectError("refresh token is revoked, expired or unknown", Code.Unauthenticated);
  }

  async me(userId: string): Promise<UserView> {
    const row = await this.deps.users.byId(userId);
    if (!row) throw new ConnectError(`user ${userId} does not exist`, Code.NotFound);
    return view(row);
  }

  jwks() {
    return this.deps.ring.jwks();
  }

  /**
   * Makes sure the configured admin exists: created with role admin when the
   * name is free, kept unchanged (password included) when it is an admin
   * already. A name held by an ordinary user is an error: promoting whoever
   * registered it first would hand them the admin role.
   */
  async bootstrapAdmin(rawUsername: string, password: string): Promise<UserView> {
    const username = normalizeUsername(rawUsername);
    validateUsername(username);
    validatePassword(password, username);
    const existing = await this.deps.users.byUsername(username);
    if (!existing) {
      const createdAt = new Date();
      const row = {
        id: newId(createdAt.getTime()),
        username,
        role: "admin" as const,
        password_hash: await this.deps.hasher.hash(password),
        created_at: createdAt,
      };
      if ((await this.deps.users.insert(row)) === "created") {
        this.deps.log.info({ userId: row.id, username }, "bootstrap admin created");
        return { id: row.id, username, role: "admin", createdAt };
      }
      // Another instance created it at the same moment: check what it made.
    }
    const current = existing ?? (await this.deps.users.byUsername(username));
    if (!current) throw new Error(`could neither create nor find ADMIN_USERNAME "${username}"`);
    if (current.role !== "admin") {
      throw new Error(
        `ADMIN_USERNAME "${username}" belongs to an existing non-admin user; choose another name`,
      );
    }
    this.deps.log.info({ userId: current.id, username }, "bootstrap admin exists; kept");
    return view(current);
  }
}
