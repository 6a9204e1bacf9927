import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, it } from "node:test";
import { ConfigError } from "../../shared/src/runtime/config.ts";
import { loadAuthConfig } from "./config.ts";
import { generateSigningKey, jwkThumbprint, keyRing, parsePrivateKeys } from "./keys.ts";

const baseEnv = { MYSQL_URI: "mysql://root@127.0.0.1:1/seckill", REDIS_URL: "redis://127.0.0.1:1" };

describe("JWT_PRIVATE_KEYS", () => {
  const a = generateSigningKey("key-a");
  const b = generateSigningKey("key-b");

  it("reads concatenated PEM blocks, kid = RFC 7638 thumbprint, first one signs", () => {
    const keys = parsePrivateKeys(`${a.pem}\n${b.pem}`);
    assert.deepEqual(
      keys.map((k) => k.kid),
      [jwkThumbprint(a.key.publicJwk.x), jwkThumbprint(b.key.publicJwk.x)],
    );
    const ring = keyRing(keys);
    assert.equal(ring.signing.kid, keys[0]!.kid);
    assert.deepEqual(
      ring.jwks().map((k) => ({ kty: k.kty, crv: k.crv, alg: k.alg, use: k.use })),
      [
        { kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" },
        { kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig" },
      ],
    );
    assert.ok(!("d" in ring.jwks()[0]!), "the JWKS never carries a private part");
  });

  it("reads a JSON array of {kid, pem} entries and private JWKs, and a JWKS", () => {
    const jwk = { ...a.key.privateKey.export({ format: "jwk" }), kid: "from-jwk" };
    const keys = parsePrivateKeys(JSON.stringify([b.entry, jwk, generateSigningKey().pem]));
    assert.deepEqual(
      keys.slice(0, 2).map((k) => k.kid),
      ["key-b", "from-jwk"],
    );
    assert.equal(keys[1]!.publicJwk.x, a.key.publicJwk.x);
    assert.deepEqual(
      parsePrivateKeys(JSON.stringify({ keys: [jwk] })).map((k) => k.kid),
      ["from-jwk"],
    );
  });

  it("refuses what it cannot use, with a reason", () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 })
      .privateKey.export({ format: "pem", type: "pkcs8" })
      .toString();
    assert.throws(() => parsePrivateKeys(rsa), /rsa key; only Ed25519/);
    assert.throws(() => parsePrivateKeys("hello"), /neither JSON nor PEM/);
    assert.throws(() => parsePrivateKeys("[1"), /not valid JSON/);
    assert.throws(() => parsePrivateKeys(JSON.stringify([a.entry, a.entry])), /appears twice/);
    assert.throws(
      () => parsePrivateKeys(JSON.stringify([{ ...a.key.publicJwk }])),
      /no private part/,
    );
    assert.throws(() => parsePrivateKeys("[]"), /empty/);
  });
});

describe("auth config", () => {
  const refuses = (env: Record<string, string>, message: RegExp) =>
    assert.throws(
      () => loadAuthConfig({ ...baseEnv, ...env }),
      (err: Error) => err instanceof ConfigError && message.test(err.message),
    );

  it("refuses to start without keys unless AUTH_DEV_KEYS=true, never in production", () => {
    refuses({}, /JWT_PRIVATE_KEYS: required/);
    assert.equal(loadAuthConfig({ ...baseEnv, AUTH_DEV_KEYS: "true" }).AUTH_DEV_KEYS, true);
    refuses({ AUTH_DEV_KEYS: "true", NODE_ENV: "production" }, /AUTH_DEV_KEYS: ephemeral dev keys/);
    refuses({ AUTH_DEV_KEYS: "false" }, /JWT_PRIVATE_KEYS: required/);
  });

  it("defaults: provisioning off, 15 min access tokens, scrypt ln=15, 10 failures / 5 min", () => {
    const config = loadAuthConfig({ ...baseEnv, JWT_PRIVATE_KEYS: generateSigningKey().pem });
    assert.equal(config.ALLOW_PROVISIONING, false);
    assert.equal(config.ACCESS_TOKEN_TTL_SECONDS, 900);
    assert.equal(config.PASSWORD_SCRYPT_LOG_N, 15);
    assert.equal(config.LOGIN_MAX_FAILURES_PER_USER, 10);
    assert.equal(config.LOGIN_FAILURE_WINDOW_SECONDS, 300);
  });

  it("never quotes a secret in its error", () => {
    const secret = "-----BEGIN PRIVATE KEY-----\nnot really a key\n-----END PRIVATE KEY-----";
    assert.throws(
      () =>
        loadAuthConfig({
          ...baseEnv,
          JWT_PRIVATE_KEYS: secret,
          ADMIN_USERNAME: "root",
          ADMIN_PASSWORD: "short",
        }),
      (err: Error) => {
        assert.match(err.message, /JWT_PRIVATE_KEYS: unusable signing keys/);
        assert.match(err.message, /ADMIN_PASSWORD: must be 8 to 128/);
        assert.ok(!err.message.includes("not really a key"), err.message);
        assert.ok(!err.message.includes('"short"'), err.message);
        return true;
      },
    );
  });

  it("wants ADMIN_USERNAME and ADMIN_PASSWORD together", () => {
    refuses({ AUTH_DEV_KEYS: "1", ADMIN_USERNAME: "root" }, /ADMIN_PASSWORD: set ADMIN_USERNAME/);
  });
});
