/**
 * auth's client module: what other services may use of auth (see
 * services/shared/src/boundaries.test.ts), which is checking the access tokens
 * auth issues. The token format lives here, beside its verifier: auth's issuer
 * (tokens.ts) takes the algorithm and header types from this module. It depends
 * on jose and connect only, never on auth's stores.
 *
 *   const verifier = createJwtVerifier({
 *     fetchKeys: async () => (await authClient.getPublicKeys({})).keys,
 *     issuer: "seckill-auth",
 *     audience: "seckill",
 *   });
 *   const { userId, role } = await verifier.verify(bearerToken(req.header.get("authorization")));
 *
 * The JWKS is cached for `cacheMs` and refreshed in the background when stale
 * (the cached keys keep working while auth is unreachable). A token whose kid
 * is not in the cache triggers one refetch, at most every `minRefetchMs`, so a
 * flood of tokens with made-up kids cannot turn into a flood of JWKS fetches.
 * Only EdDSA access tokens (header typ "at+jwt") from the configured issuer for
 * the configured audience pass; every refusal is UNAUTHENTICATED with a message
 * that says why.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  createLocalJWKSet,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  jwtVerify,
} from "jose";
import type { Role } from "../../shared/src/transport/identity.ts";

/** The only JWS algorithm auth signs with and verifiers accept. */
export const JWT_ALG = "EdDSA";
/** Header typ of access tokens (RFC 9068). */
export const ACCESS_TOKEN_TYP = "at+jwt";
/** Header typ of refresh tokens; verifiers refuse them as access tokens. */
export const REFRESH_TOKEN_TYP = "rt+jwt";

/** A public JWK as GetPublicKeys returns it (proto Jwk messages fit this shape). */
export interface Jwk {
  kid?: string;
  kty: string;
  crv?: string;
  x?: string;
  alg?: string;
  use?: string;
}

export interface VerifiedAccess {
  userId: string;
  role: Role;
  /** The token's jti. */
  tokenId: string;
  expiresAt: Date;
}

export interface JwtVerifierOptions {
  /** Returns the current JWKS, e.g. from AuthService.GetPublicKeys. */
  fetchKeys: () => Promise<readonly Jwk[]>;
  /** Expected "iss" (auth's JWT_ISSUER). */
  issuer: string;
  /** Expected "aud" (auth's JWT_AUDIENCE). */
  audience: string;
  /** How long a fetched JWKS is fresh; default 10 minutes. */
  cacheMs?: number;
  /** Minimum time between two fetches (unknown kid, staleness); default 5 s. */
  minRefetchMs?: number;
  /** Allowed clock skew for exp / iat, in seconds; default 5. */
  clockToleranceSeconds?: number;
  /** Told when a fetch fails (the verifier keeps the keys it has). */
  onFetchError?: (err: unknown) => void;
  /** For tests. */
  now?: () => number;
}

export interface JwtVerifier {
  /** The caller of a valid access token; ConnectError UNAUTHENTICATED otherwise. */
  verify(token: string): Promise<VerifiedAccess>;
  /** Fetches the JWKS now (e.g. at start, so the first request does not wait). */
  refreshKeys(): Promise<void>;
  /** The kids currently cached. */
  readonly kids: readonly string[];
}

const unauthenticated = (message: string, cause?: unknown) =>
  new ConnectError(message, Code.Unauthenticated, undefined, undefined, cause);

/** The token of an "authorization: Bearer <token>" header, or UNAUTHENTICATED. */
export function bearerToken(authorization: string | null | undefined): string {
  if (!authorization) throw unauthenticated("missing access token (authorization: Bearer …)");
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) throw unauthenticated('authorization header must be "Bearer <access token>"');
  return match[1]!;
}

interface KeyCache {
  kids: Set<string>;
  lookup: ReturnType<typeof createLocalJWKSet>;
  fetchedAt: number;
}

export function createJwtVerifier(opts: JwtVerifierOptions): JwtVerifier {
  const cacheMs = opts.cacheMs ?? 10 * 60_000;
  const minRefetchMs = opts.minRefetchMs ?? 5_000;
  const clockTolerance = opts.clockToleranceSeconds ?? 5;
  const now = opts.now ?? Date.now;
  let cache: KeyCache | undefined;
  let inflight: Promise<void> | undefined;
  let lastAttempt = Number.NEGATIVE_INFINITY;

  const fetchNow = (): Promise<void> => {
    inflight ??= (async () => {
      lastAttempt = now();
      try {
        const keys = await opts.fetchKeys();
        // Plain JWK objects (proto messages carry extra fields such as $typeName).
        const jwks: JSONWebKeySet = {
          keys: keys.map((k) => {
            const jwk: JWK = { kty: k.kty };
            for (const field of ["kid", "crv", "x", "alg", "use"] as const) {
              if (k[field]) jwk[field] = k[field];
            }
            return jwk;
          }),
        };
        cache = {
          kids: new Set(jwks.keys.map((k) => k.kid).filter((k): k is string => !!k)),
          lookup: createLocalJWKSet(jwks),
          fetchedAt: now(),
        };
      } catch (err) {
        opts.onFetchError?.(err);
        if (!cache) {
          throw new ConnectError(
            `cannot verify access tokens: public keys unavailable (${(err as Error).message})`,
            Code.Unavailable,
            undefined,
            undefined,
            err,
          );
        }
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };
  const mayRefetch = () => now() - lastAttempt >= minRefetchMs;

  async function keysFor(kid: string): Promise<KeyCache> {
    if (!cache) await fetchNow();
    else if (!cache.kids.has(kid) && mayRefetch()) await fetchNow();
    else if (now() - cache.fetchedAt > cacheMs && mayRefetch()) void fetchNow().catch(() => {});
    const current = cache!;
    if (!current.kids.has(kid)) {
      throw unauthenticated(`access token signed by an unknown key (kid ${JSON.stringify(kid)})`);
    }
    return current;
  }

  async function verify(token: string): Promise<VerifiedAccess> {
    if (!token) throw unauthenticated("missing access token");
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch (err) {
      throw unauthenticated("malformed access token", err);
    }
    if (token.split(".").length !== 3) throw unauthenticated("malformed access token");
    if (header.alg !== JWT_ALG) {
      throw unauthenticated(
        `access token algorithm ${JSON.stringify(header.alg ?? null)} is not accepted (only ${JWT_ALG})`,
      );
    }
    if (header.typ !== ACCESS_TOKEN_TYP) {
      throw unauthenticated(`not an access token (typ ${JSON.stringify(header.typ ?? null)})`);
    }
    if (typeof header.kid !== "string" || header.kid === "") {
      throw unauthenticated("access token has no key id (kid)");
    }
    const keys = await keysFor(header.kid);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys.lookup, {
        algorithms: [JWT_ALG],
        typ: ACCESS_TOKEN_TYP,
        issuer: opts.issuer,
        audience: opts.audience,
        clockTolerance,
        currentDate: new Date(now()),
        requiredClaims: ["sub", "exp", "iat", "jti"],
      }));
    } catch (err) {
      throw explain(err);
    }
    const role = payload.role;
    if (role !== "user" && role !== "admin") {
      throw unauthenticated(`access token has an invalid role claim ${JSON.stringify(role)}`);
    }
    return {
      userId: payload.sub!,
      role,
      tokenId: String(payload.jti),
      expiresAt: new Date(payload.exp! * 1000),
    };
  }

  return {
    verify,
    refreshKeys: fetchNow,
    get kids() {
      return cache ? [...cache.kids] : [];
    },
  };
}

function explain(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof errors.JWTExpired) return unauthenticated("access token expired", err);
  if (err instanceof errors.JWSSignatureVerificationFailed) {
    return unauthenticated("access token signature is invalid", err);
  }
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case "iss":
        return unauthenticated("access token issuer is not trusted", err);
      case "aud":
        return unauthenticated("access token is not meant for this audience", err);
      case "typ":
        return unauthenticated("not an access token", err);
      case "iat":
      case "nbf":
        return unauthenticated("access token is not valid yet", err);
      default:
        return unauthenticated(`access token claim "${err.claim}" is invalid (${err.reason})`, err);
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed) {
    return unauthenticated("access token algorithm is not accepted", err);
  }
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
    return unauthenticated("access token signed by an unknown key", err);
  }
  if (err instanceof errors.JOSEError) return unauthenticated("malformed access token", err);
  return unauthenticated("invalid access token", err);
}
