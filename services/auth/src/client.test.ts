import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import { calculateJwkThumbprint, jwtVerify, SignJWT, UnsecuredJWT } from "jose";
import { expectCode } from "../../shared/src/testing/codes.ts";
import { bearerToken, createJwtVerifier, type Jwk } from "./client.ts";
import { generateSigningKey, jwkThumbprint, keyRing } from "./keys.ts";
import { TokenIssuer } from "./tokens.ts";

const settings = {
  issuer: "seckill-auth",
  audience: "seckill",
  accessTtlSeconds: 900,
  refreshTtlSeconds: 3600,
};
const user = { id: "01JUSER0000000000000000000", role: "user" as const };
const k1 = generateSigningKey("k1");
const k2 = generateSigningKey("k2");
const issuer1 = new TokenIssuer(keyRing([k1.key]), settings);

/** A verifier over a JWKS the test controls, with a clock the test moves. */
function setup(initial: Jwk[] = [k1.key.publicJwk]) {
  const state = { published: initial, fetches: 0, fail: false, clock: Date.now() };
  const verifier = createJwtVerifier({
    fetchKeys: async () => {
      state.fetches++;
      if (state.fail) throw new Error("auth unreachable");
      return state.published;
    },
    issuer: settings.issuer,
    audience: settings.audience,
    cacheMs: 60_000,
    minRefetchMs: 5_000,
    now: () => state.clock,
  });
  return { state, verifier };
}

const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
const claims = (extra: Record<string, unknown> = {}) => {
  const iat = Math.floor(Date.now() / 1000);
  return {
    sub: user.id,
    role: "admin",
    iss: settings.issuer,
    aud: settings.audience,
    iat,
    exp: iat + 600,
    jti: "j1",
    ...extra,
  };
};

describe("access token verifier", () => {
  it("accepts an access token issued by auth, and jose agrees", async () => {
    const { verifier } = setup();
    const { token, jti, expiresAt } = await issuer1.access(user);
    const verified = await verifier.verify(token);
    assert.deepEqual(verified, { userId: user.id, role: "user", tokenId: jti, expiresAt });
    const { payload, protectedHeader } = await jwtVerify(token, k1.key.publicKey, {
      issuer: settings.issuer,
      audience: settings.audience,
    });
    assert.equal(payload.sub, user.id);
    assert.deepEqual(protectedHeader, { alg: "EdDSA", kid: "k1", typ: "at+jwt" });
  });

  it("accepts a token signed by jose's SignJWT with the same key (interoperable)", async () => {
    const { verifier } = setup();
    const token = await new SignJWT({ role: "admin" })
      .setProtectedHeader({ alg: "EdDSA", kid: "k1", typ: "at+jwt" })
      .setSubject(user.id)
      .setIssuer(settings.issuer)
      .setAudience(settings.audience)
      .setIssuedAt()
      .setExpirationTime("5m")
      .setJti("j-jose")
      .sign(k1.key.privateKey);
    assert.equal((await verifier.verify(token)).role, "admin");
  });

  it("refuses an expired token", async () => {
    const { verifier } = setup();
    const { token } = await issuer1.access(user, Date.now() - 3600_000);
    await expectCode(verifier.verify(token), Code.Unauthenticated, /^access token expired$/);
  });

  it("refuses a forged token: another key under our kid", async () => {
    const { verifier } = setup();
    const attacker = generateSigningKey("k1");
    const forged = await new TokenIssuer(keyRing([attacker.key]), settings).access({
      id: user.id,
      role: "admin",
    });
    await expectCode(verifier.verify(forged.token), Code.Unauthenticated, /signature is invalid/);
  });

  it("refuses a token whose payload was changed after signing", async () => {
    const { verifier } = setup();
    const { token } = await issuer1.access(user);
    const [header, , signature] = token.split(".");
    const tampered = `${header}.${encode(claims({ role: "admin" }))}.${signature}`;
    await expectCode(verifier.verify(tampered), Code.Unauthenticated, /signature is invalid/);
  });

  it('refuses alg "none"', async () => {
    const { verifier } = setup();
    const unsecured = new UnsecuredJWT(claims()).encode();
    await expectCode(
      verifier.verify(unsecured),
      Code.Unauthenticated,
      /algorithm "none" is not accepted/,
    );
    // Even dressed up with our kid and typ.
    const handmade = `${encode({ alg: "none", kid: "k1", typ: "at+jwt" })}.${encode(claims())}.`;
    await expectCode(
      verifier.verify(handmade),
      Code.Unauthenticated,
      /algorithm "none" is not accepted/,
    );
  });

  it("refuses HS256 signed with the public key as the HMAC secret (key confusion)", async () => {
    const { verifier } = setup();
    const publicX = Buffer.from(k1.key.publicJwk.x, "base64url");
    const publicPem = k1.key.publicKey.export({ format: "pem", type: "spki" }).toString();
    for (const secret of [publicX, Buffer.from(publicPem), Buffer.from(k1.key.publicJwk.x)]) {
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: "HS256", kid: "k1", typ: "at+jwt" })
        .sign(new Uint8Array(secret));
      await expectCode(
        verifier.verify(token),
        Code.Unauthenticated,
        /algorithm "HS256" is not accepted/,
      );
    }
  });

  it("refuses a refresh token used as an access token", async () => {
    const { verifier } = setup();
    const refresh = await issuer1.refresh(user.id);
    await expectCode(verifier.verify(refresh.token), Code.Unauthenticated, /not an access token/);
    // Without the typ header it would still fail on the audience.
    const [, payload] = refresh.token.split(".");
    const body = JSON.parse(Buffer.from(payload!, "base64url").toString());
    assert.equal(body.aud, "seckill-auth#refresh");
  });

  it("refuses a wrong issuer, a wrong audience, a missing typ and a bad role", async () => {
    const { verifier } = setup();
    const other = new TokenIssuer(keyRing([k1.key]), { ...settings, issuer: "someone-else" });
    await expectCode(
      verifier.verify((await other.access(user)).token),
      Code.Unauthenticated,
      /issuer is not trusted/,
    );
    const elsewhere = new TokenIssuer(keyRing([k1.key]), { ...settings, audience: "other-app" });
    await expectCode(
      verifier.verify((await elsewhere.access(user)).token),
      Code.Unauthenticated,
      /audience/,
    );
    const sign = (header: Record<string, unknown>, payload: Record<string, unknown>) =>
      new SignJWT(payload).setProtectedHeader({ alg: "EdDSA", ...header }).sign(k1.key.privateKey);
    await expectCode(
      verifier.verify(await sign({ kid: "k1" }, claims())),
      Code.Unauthenticated,
      /not an access token/,
    );
    await expectCode(
      verifier.verify(await sign({ kid: "k1", typ: "at+jwt" }, claims({ role: "root" }))),
      Code.Unauthenticated,
      /invalid role claim "root"/,
    );
    await expectCode(
      verifier.verify(await sign({ typ: "at+jwt" }, claims())),
      Code.Unauthenticated,
      /no key id \(kid\)/,
    );
  });

  it("refuses garbage with a clear message", async () => {
    const { verifier } = setup();
    await expectCode(verifier.verify(""), Code.Unauthenticated, /missing access token/);
    await expectCode(verifier.verify("not-a-jwt"), Code.Unauthenticated, /malformed access token/);
    await expectCode(verifier.verify("a.b.c"), Code.Unauthenticated, /malformed access token/);
  });

  it("refetches the JWKS on an unknown kid, at most once per minRefetchMs", async () => {
    const { state, verifier } = setup();
    await verifier.verify((await issuer1.access(user)).token);
    assert.equal(state.fetches, 1);
    const stranger = generateSigningKey("unknown-kid");
    const token = (await new TokenIssuer(keyRing([stranger.key]), settings).access(user)).token;
    state.clock += 6_000;
    await expectCode(
      verifier.verify(token),
      Code.Unauthenticated,
      /unknown key \(kid "unknown-kid"\)/,
    );
    assert.equal(state.fetches, 2, "an unknown kid refetches");
    for (let i = 0; i < 20; i++)
      await expectCode(verifier.verify(token), Code.Unauthenticated, /unknown key/);
    assert.equal(state.fetches, 2, "a flood of unknown kids does not");
    state.clock += 6_000;
    await expectCode(verifier.verify(token), Code.Unauthenticated, /unknown key/);
    assert.equal(state.fetches, 3);
  });

  it("follows a key rotation: new key learned on first sight, old key honoured while published", async () => {
    const { state, verifier } = setup([k1.key.publicJwk]);
    const old = await issuer1.access(user);
    await verifier.verify(old.token);
    // Rotation: auth now signs with k2 and still publishes k1.
    state.published = [k2.key.publicJwk, k1.key.publicJwk];
    const issuer2 = new TokenIssuer(keyRing([k2.key, k1.key]), settings);
    const fresh = await issuer2.access(user);
    state.clock += 6_000;
    assert.equal((await verifier.verify(fresh.token)).userId, user.id);
    assert.equal((await verifier.verify(old.token)).userId, user.id);
    assert.deepEqual(verifier.kids, ["k2", "k1"]);
    // k1 removed: once the cache is stale it is refreshed in the background...
    state.published = [k2.key.publicJwk];
    state.clock += 61_000;
    await verifier.verify(fresh.token);
    await new Promise((r) => setImmediate(r));
    // ...and tokens signed by the removed key stop verifying.
    assert.deepEqual(verifier.kids, ["k2"]);
    await expectCode(verifier.verify(old.token), Code.Unauthenticated, /unknown key \(kid "k1"\)/);
  });

  it("keeps verifying with cached keys while the JWKS cannot be fetched", async () => {
    const { state, verifier } = setup();
    const { token } = await issuer1.access(user);
    await verifier.verify(token);
    state.fail = true;
    state.clock += 120_000;
    for (let i = 0; i < 3; i++) await verifier.verify(token);
  });

  it("answers UNAVAILABLE when it never got any key", async () => {
    const { state, verifier } = setup();
    state.fail = true;
    const { token } = await issuer1.access(user);
    await expectCode(verifier.verify(token), Code.Unavailable, /public keys unavailable/);
  });

  it("parses bearer headers", () => {
    assert.equal(bearerToken("Bearer abc.def.ghi"), "abc.def.ghi");
    assert.equal(bearerToken("bearer   x"), "x");
    assert.throws(() => bearerToken(undefined), /missing access token/);
    assert.throws(() => bearerToken("Basic dXNlcjpwYXNz"), /must be "Bearer/);
  });

  it("derives default kids as RFC 7638 thumbprints", async () => {
    const anonymous = generateSigningKey();
    const jose = await calculateJwkThumbprint({
      kty: "OKP",
      crv: "Ed25519",
      x: anonymous.key.publicJwk.x,
    });
    assert.equal(anonymous.kid, jose);
    assert.equal(jwkThumbprint(anonymous.key.publicJwk.x), jose);
  });
});
