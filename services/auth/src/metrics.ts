/** auth's own metrics (RPC latency and codes come from the shared interceptors). */
import { counter, histogram, once } from "../../shared/src/runtime/metrics.ts";

export const loginsTotal = once("seckill_auth_logins_total", () =>
  counter(
    "seckill_auth_logins_total",
    "Login attempts by outcome: success, bad_credentials, rate_limited, invalid, error",
    ["outcome"],
  ),
);

export const registrationsTotal = once("seckill_auth_registrations_total", () =>
  counter(
    "seckill_auth_registrations_total",
    "Register calls by outcome: created, exists, invalid",
    ["outcome"],
  ),
);

export const refreshesTotal = once("seckill_auth_refreshes_total", () =>
  counter(
    "seckill_auth_refreshes_total",
    "Refresh calls by outcome: ok, invalid, reused (a consumed token replayed: family revoked)",
    ["outcome"],
  ),
);

export const tokensIssuedTotal = once("seckill_auth_tokens_issued_total", () =>
  counter("seckill_auth_tokens_issued_total", "JWTs signed, by type (access, refresh) and by RPC", [
    "type",
    "via",
  ]),
);

export const passwordHashSeconds = once("seckill_auth_password_hash_seconds", () =>
  histogram(
    "seckill_auth_password_hash_seconds",
    "scrypt duration (queueing on the libuv pool included), by op: hash, verify",
    ["op"],
    [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5],
  ),
);

export const provisionedUsersTotal = once("seckill_auth_provisioned_users_total", () =>
  counter("seckill_auth_provisioned_users_total", "Users created by ProvisionUsers"),
);

export const provisionSeconds = once("seckill_auth_provision_seconds", () =>
  histogram(
    "seckill_auth_provision_seconds",
    "ProvisionUsers phases: hash, insert, sign, total",
    ["phase"],
    [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  ),
);
