import type { ColumnType } from "kysely";
import type { Role } from "../../shared/src/transport/identity.ts";

/** The auth tables as kysely sees them (see migrations/). */
export interface AuthDatabase {
  users: UsersTable;
  refresh_tokens: RefreshTokensTable;
}

export interface UsersTable {
  /** ULID (shared ids.ts); the JWT "sub". */
  id: string;
  /** Lower case, unique. */
  username: string;
  /** PHC-format scrypt hash (passwords.ts). */
  password_hash: string;
  role: Role;
  /** 1 for load-test users made by ProvisionUsers (they share one salted hash per batch). */
  provisioned: ColumnType<number, number | undefined, number>;
  created_at: ColumnType<Date, Date, never>;
}

/**
 * One row per refresh token ever issued (jti). Refresh tokens are JWTs, but a
 * row makes rotation enforceable: a token works once (used_at), and reusing a
 * used one revokes its whole family (every token descended from one login).
 */
export interface RefreshTokensTable {
  /** The token's jti (ULID). */
  id: string;
  /** The jti of the first token of the login this token descends from. */
  family_id: string;
  user_id: string;
  created_at: ColumnType<Date, Date, never>;
  expires_at: ColumnType<Date, Date, never>;
  used_at: ColumnType<Date | null, never, Date>;
  revoked_at: ColumnType<Date | null, never, Date>;
}
