/**
 * The Ed25519 keys that sign JWTs. `JWT_PRIVATE_KEYS` holds one or more
 * private keys; the first one signs, every one is published in the JWKS.
 *
 * Rotation, with no token ever refused:
 *   1. append the new key (published, not yet signing) and roll out; verifiers
 *      learn it on their next JWKS refresh (or on the first unknown kid);
 *   2. move it first (it signs from now on) and roll out;
 *   3. after the refresh-token TTL, remove the old key (tokens it signed stop
 *      verifying at once; access tokens expired long before).
 *
 * Accepted forms of `JWT_PRIVATE_KEYS`:
 *   - PEM: one or more PKCS#8 "PRIVATE KEY" blocks, concatenated;
 *   - JSON: a private JWK, a JWKS `{"keys": [...]}`, or an array whose entries
 *     are private JWKs (`{"kty":"OKP","crv":"Ed25519","d":…,"x":…,"kid":…}`),
 *     `{"kid": "…", "pem": "-----BEGIN PRIVATE KEY-----…"}` or PEM strings.
 * A key without a kid gets its RFC 7638 thumbprint as kid.
 */

import type { KeyObject } from "node:crypto";
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import type { Jwk } from "./client.ts";

export interface SigningKey {
  readonly kid: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** The public half as published in the JWKS. */
  readonly publicJwk: Required<Pick<Jwk, "kid" | "kty" | "crv" | "x" | "alg" | "use">>;
}

export interface KeyRing {
  /** The key that signs new tokens (the first configured one). */
  readonly signing: SigningKey;
  /** Every configured key, signing key first. */
  readonly keys: readonly SigningKey[];
  /** The public key for a kid, if the kid is one of ours. */
  publicKey(kid: string): KeyObject | undefined;
  /** The JWKS: the signing key first, then keys still accepted during rotation. */
  jwks(): SigningKey["publicJwk"][];
}

export class KeyConfigError extends Error {
  override name = "KeyConfigError";
}

/** RFC 7638 thumbprint of an Ed25519 public key (x in base64url). */
export function jwkThumbprint(x: string): string {
  const canonical = JSON.stringify({ crv: "Ed25519", kty: "OKP", x });
  return createHash("sha256").update(canonical).digest("base64url");
}

function signingKey(privateKey: KeyObject, kid: string | undefined, what: string): SigningKey {
  if (privateKey.type !== "private") throw new KeyConfigError(`${what} is not a private key`);
  if (privateKey.asymmetricKeyType !== "ed25519") {
    throw new KeyConfigError(
      `${what} is a ${privateKey.asymmetricKeyType ?? "unknown"} key; only Ed25519 keys are accepted`,
    );
  }
  const publicKey = createPublicKey(privateKey);
  const x = (publicKey.export({ format: "jwk" }) as { x: string }).x;
  const id = kid ?? jwkThumbprint(x);
  if (!/^[\w.:-]{1,128}$/.test(id)) {
    throw new KeyConfigError(`${what}: kid ${JSON.stringify(id)} must be 1-128 of [A-Za-z0-9_.:-]`);
  }
  return {
    kid: id,
    privateKey,
    publicKey,
    publicJwk: { kid: id, kty: "OKP", crv: "Ed25519", x, alg: "EdDSA", use: "sig" },
  };
}

function fromPem(pem: string, kid: string | undefined, what: string): SigningKey {
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: "pem" });
  } catch (err) {
    throw new KeyConfigError(
      `${what} is not a readable PEM private key (${(err as Error).message})`,
    );
  }
  return signingKey(key, kid, what);
}

function fromJson(entry: unknown, what: string): SigningKey {
  if (typeof entry === "string") return fromPem(entry, undefined, what);
  if (typeof entry !== "object" || entry === null) {
    throw new KeyConfigError(`${what} must be a PEM string, {"kid","pem"} or a private JWK`);
  }
  const obj = entry as Record<string, unknown>;
  const kid = obj.kid === undefined ? undefined : String(obj.kid);
  if (typeof obj.pem === "string") return fromPem(obj.pem, kid, what);
  if (obj.kty !== "OKP" || obj.crv !== "Ed25519") {
    throw new KeyConfigError(`${what} is not an Ed25519 JWK (need kty "OKP" and crv "Ed25519")`);
  }
  if (typeof obj.d !== "string") throw new KeyConfigError(`${what} has no private part ("d")`);
  let key: KeyObject;
  try {
    key = createPrivateKey({
      key: { kty: "OKP", crv: "Ed25519", d: obj.d, x: String(obj.x ?? "") },
      format: "jwk",
    });
  } catch (err) {
    throw new KeyConfigError(`${what} is not a valid Ed25519 JWK (${(err as Error).message})`);
  }
  return signingKey(key, kid, what);
}

/** Parses `JWT_PRIVATE_KEYS`; throws KeyConfigError with a readable reason. */
export function parsePrivateKeys(text: string): SigningKey[] {
  const trimmed = text.trim();
  if (trimmed === "") throw new KeyConfigError("no key given");
  let keys: SigningKey[];
  if (trimmed.startsWith("[") || trimmed.startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch (err) {
      throw new KeyConfigError(`not valid JSON (${(err as Error).message})`);
    }
    const isJwks =
      !Array.isArray(parsed) && Array.isArray((parsed as { keys?: unknown }).keys) === true;
    const entries: unknown[] = Array.isArray(parsed)
      ? parsed
      : isJwks
        ? (parsed as { keys: unknown[] }).keys
        : [parsed];
    keys = entries.map((entry, i) => fromJson(entry, `key #${i + 1}`));
  } else {
    const blocks = trimmed.match(/-----BEGIN [A-Z ]+-----[\s\S]+?-----END [A-Z ]+-----/g) ?? [];
    if (blocks.length === 0) throw new KeyConfigError("neither JSON nor PEM");
    keys = blocks.map((pem, i) => fromPem(pem, undefined, `PEM block #${i + 1}`));
  }
  if (keys.length === 0) throw new KeyConfigError("the key list is empty");
  const seen = new Set<string>();
  for (const key of keys) {
    if (seen.has(key.kid)) throw new KeyConfigError(`kid ${key.kid} appears twice`);
    seen.add(key.kid);
  }
  return keys;
}

export function keyRing(keys: readonly SigningKey[]): KeyRing {
  if (keys.length === 0) throw new KeyConfigError("a key ring needs at least one key");
  const byKid = new Map(keys.map((k) => [k.kid, k.publicKey]));
  return {
    signing: keys[0]!,
    keys,
    publicKey: (kid) => byKid.get(kid),
    jwks: () => keys.map((k) => k.publicJwk),
  };
}

/**
 * A fresh Ed25519 key, in the forms `JWT_PRIVATE_KEYS` accepts: for dev mode,
 * for tests, and for tooling that writes a key into a secret.
 */
export function generateSigningKey(kid?: string): {
  kid: string;
  pem: string;
  key: SigningKey;
  /** `{"kid","pem"}`, ready to put in a JSON array. */
  entry: { kid: string; pem: string };
} {
  const { privateKey } = generateKeyPairSync("ed25519");
  const key = signingKey(privateKey, kid, "generated key");
  const pem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  return { kid: key.kid, pem, key, entry: { kid: key.kid, pem } };
}
