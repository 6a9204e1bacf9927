/**
 * ProvisionUsers: many load-test buyers in seconds, without weakening the
 * password hashing of real accounts.
 *
 * Where the time would go, and what this path does instead:
 *   - scrypt at ~90 ms per user would take 30 min for 20,000 users on two
 *     cores. The shared password is hashed ONCE per call (same parameters as
 *     production) and that one salted hash is stored for every user of the
 *     call. Users sharing a salt share a hash, so cracking one cracks all:
 *     acceptable only for throw-away load-test accounts, which is why the RPC is
 *     off unless ALLOW_PROVISIONING=true, admin-only, and the rows are marked
 *     provisioned=1 (so they can be found and deleted).
 *   - one INSERT per user would be 20,000 round trips and commits: rows go in
 *     as multi-row INSERT IGNORE statements of 1,000 (existing usernames are
 *     left as they are).
 *   - with issue_tokens, one access token per user is signed off the event loop
 *     (tokens.ts), so the load generator starts logged in without 20,000
 *     password checks.
 * Only provisioned USER accounts get tokens: a real account whose name falls in
 * the requested range is reported without a token, never impersonated.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import { newId } from "../../shared/src/data-plane/ids.ts";
import type { Role } from "../../shared/src/transport/identity.ts";
import { provisionedUsersTotal, provisionSeconds, tokensIssuedTotal } from "./metrics.ts";
import {
  normalizeUsername,
  type PasswordHasher,
  validatePassword,
  validateUsername,
} from "./passwords.ts";
import type { TokenIssuer } from "./tokens.ts";
import { INSERT_CHUNK, type NewUser, type UserStore } from "./users.ts";

export interface ProvisionRequest {
  count: number;
  usernamePrefix: string;
  password: string;
  startIndex: number;
  issueTokens: boolean;
}

export interface ProvisionedUserView {
  userId: string;
  username: string;
  /** Empty when no token was asked for, or the user is not a provisioned USER. */
  accessToken: string;
  accessExpiresAt: Date | undefined;
}

export interface ProvisionResult {
  created: number;
  firstUsername: string;
  lastUsername: string;
  tookMs: number;
  users: ProvisionedUserView[];
  phasesMs: { hash: number; insert: number; sign: number };
}

export interface ProvisionDeps {
  users: UserStore;
  hasher: PasswordHasher;
  issuer: TokenIssuer;
  maxPerCall: number;
}

const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

/** Checks the request; returns the normalized prefix. */
export function checkProvisionRequest(req: ProvisionRequest, maxPerCall: number): string {
  if (!Number.isInteger(req.count) || req.count <= 0) throw invalid("count must be > 0");
  if (req.count > maxPerCall) {
    throw invalid(
      `count ${req.count} is above the cap of ${maxPerCall} users per call; page through with start_index`,
    );
  }
  if (!Number.isInteger(req.startIndex) || req.startIndex < 0) {
    throw invalid("start_index must be >= 0");
  }
  if (req.startIndex + req.count - 1 > 2 ** 31 - 1) {
    throw invalid("start_index + count - 1 must fit in an int32");
  }
  if (req.usernamePrefix === "") throw invalid("username_prefix is required");
  const prefix = normalizeUsername(req.usernamePrefix);
  // Only digits follow the prefix, so the first and the last name bound every other.
  for (const index of [req.startIndex, req.startIndex + req.count - 1]) {
    try {
      validateUsername(`${prefix}${index}`);
    } catch (err) {
      throw invalid(
        `username_prefix makes invalid usernames such as "${prefix}${index}": ${(err as ConnectError).rawMessage}`,
      );
    }
  }
  validatePassword(req.password);
  return prefix;
}

export async function provisionUsers(
  deps: ProvisionDeps,
  req: ProvisionRequest,
): Promise<ProvisionResult> {
  const started = performance.now();
  const prefix = checkProvisionRequest(req, deps.maxPerCall);
  const usernames = Array.from({ length: req.count }, (_, i) => `${prefix}${req.startIndex + i}`);

  const passwordHash = await deps.hasher.hash(req.password); // once per call, see above
  const hashed = performance.now();

  const createdAt = new Date();
  const rows: NewUser[] = usernames.map((username) => ({
    id: newId(createdAt.getTime()),
    username,
    password_hash: passwordHash,
    role: "user",
    provisioned: 1,
    created_at: createdAt,
  }));
  let created = 0;
  const accounts: { id: string; username: string; role: Role; tokenable: boolean }[] = [];
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    const chunk = rows.slice(i, i + INSERT_CHUNK);
    const inserted = await deps.users.insertIgnore(chunk);
    created += inserted;
    if (!req.issueTokens) continue;
    if (inserted === chunk.length) {
      for (const row of chunk) {
        accounts.push({ id: row.id, username: row.username, role: "user", tokenable: true });
      }
      continue;
    }
    // Some names existed: their ids (and whether they may get a token) come from the table.
    const existing = await deps.users.lookup(chunk.map((r) => r.username));
    for (const row of chunk) {
      const found = existing.get(row.username);
      if (!found) throw new Error(`user ${row.username} neither inserted nor found`);
      accounts.push({
        id: found.id,
        username: row.username,
        role: found.role,
        tokenable: found.provisioned && found.role === "user",
      });
    }
  }
  const insertedAt = performance.now();

  const users: ProvisionedUserView[] = [];
  if (req.issueTokens) {
    const tokenable = accounts.filter((a) => a.tokenable);
    const tokens = await deps.issuer.accessMany(tokenable);
    tokensIssuedTotal.inc({ type: "access", via: "provision" }, tokens.length);
    let next = 0;
    for (const account of accounts) {
      const token = account.tokenable ? tokens[next++] : undefined;
      users.push({
        userId: account.id,
        username: account.username,
        accessToken: token?.token ?? "",
        accessExpiresAt: token?.expiresAt,
      });
    }
  }
  const finished = performance.now();

  provisionedUsersTotal.inc(created);
  const phasesMs = {
    hash: Math.round(hashed - started),
    insert: Math.round(insertedAt - hashed),
    sign: Math.round(finished - insertedAt),
  };
  provisionSeconds.observe({ phase: "hash" }, phasesMs.hash / 1000);
  provisionSeconds.observe({ phase: "insert" }, phasesMs.insert / 1000);
  if (req.issueTokens) provisionSeconds.observe({ phase: "sign" }, phasesMs.sign / 1000);
  provisionSeconds.observe({ phase: "total" }, (finished - started) / 1000);
  trace.getActiveSpan()?.setAttributes({
    "auth.provision.count": req.count,
    "auth.provision.created": created,
    "auth.provision.tokens": users.filter((u) => u.accessToken).length,
  });
  return {
    created,
    firstUsername: usernames[0]!,
    lastUsername: usernames.at(-1)!,
    tookMs: Math.round(finished - started),
    users,
    phasesMs,
  };
}
