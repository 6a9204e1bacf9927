/**
 * Buy tokens (the "hidden URL"): HMAC-SHA256 over (version, expiry, nonce,
 * user id, activity id) with a secret shared by every seckill-app instance.
 * Stateless to issue and to check; single use is enforced at Buy by claiming
 * the nonce in Redis (limits.ts).
 *
 * Wire form: base64url of 33 bytes, 44 characters, URL-safe, no padding:
 *
 *   [0]      version (1)
 *   [1..4]   expiry, unix seconds, big-endian uint32
 *   [5..16]  nonce, 96 random bits (names the token's claim in Redis)
 *   [17..32] tag: HMAC-SHA256(secret, bytes 0..16 ‖ len(user) ‖ user ‖ len(activity) ‖ activity),
 *            truncated to 128 bits (RFC 2104 §5 allows truncation; 128 bits is far
 *            beyond what an online forger can try against a rate-limited endpoint)
 *
 * User and activity are bound by the MAC only, not carried: Buy knows both (the
 * caller from the gateway's headers, the activity from the request), so a token
 * presented by another user or for another activity simply fails the MAC.
 */
import {
  createHmac,
  createSecretKey,
  type KeyObject,
  randomFillSync,
  timingSafeEqual,
} from "node:crypto";

const VERSION = 1;
const HEADER_BYTES = 1 + 4 + 12;
const TAG_BYTES = 16;
export const TOKEN_BYTES = HEADER_BYTES + TAG_BYTES;
/** base64url length of TOKEN_BYTES (33 bytes → 44 characters). */
export const TOKEN_LENGTH = Math.ceil((TOKEN_BYTES * 4) / 3);
export const MIN_SECRET_BYTES = 32;

export interface IssuedToken {
  token: string;
  /** Expiry, epoch ms (a whole second). */
  expiresAtMs: number;
  /** base64url nonce: the token's claim key in Redis. */
  nonce: string;
}

export type TokenCheck =
  | { ok: true; nonce: string; expiresAtMs: number }
  /** Genuine for this (user, activity), but past its expiry. */
  | { ok: false; reason: "expired"; nonce: string; expiresAtMs: number }
  | { ok: false; reason: "missing" | "malformed" | "invalid" };

/** Random bytes come from a pooled buffer: one randomFillSync per 256 tokens instead of one each. */
class NoncePool {
  private readonly pool = Buffer.alloc(12 * 256);
  private offset = this.pool.length;

  take(into: Buffer, at: number): void {
    if (this.offset >= this.pool.length) {
      randomFillSync(this.pool);
      this.offset = 0;
    }
    this.pool.copy(into, at, this.offset, this.offset + 12);
    // Never hand the same bytes out twice.
    this.pool.fill(0, this.offset, this.offset + 12);
    this.offset += 12;
  }
}

export class BuyTokens {
  private readonly key: KeyObject;
  private readonly nonces = new NoncePool();

  constructor(
    secret: string | Buffer,
    private readonly ttlSeconds: number,
  ) {
    const bytes = typeof secret === "string" ? Buffer.from(secret, "utf8") : secret;
    if (bytes.length < MIN_SECRET_BYTES)
      throw new Error(`the buy token secret must be at least ${MIN_SECRET_BYTES} bytes`);
    this.key = createSecretKey(bytes);
  }

  /** A fresh token for (user, activity), valid for the configured TTL from `nowMs`. */
  issue(userId: string, activityId: string, nowMs = Date.now()): IssuedToken {
    const expSeconds = Math.ceil(nowMs / 1000) + this.ttlSeconds;
    const bytes = Buffer.allocUnsafe(TOKEN_BYTES);
    bytes[0] = VERSION;
    bytes.writeUInt32BE(expSeconds, 1);
    this.nonces.take(bytes, 5);
    this.tag(bytes, userId, activityId).copy(bytes, HEADER_BYTES, 0, TAG_BYTES);
    return {
      token: bytes.toString("base64url"),
      expiresAtMs: expSeconds * 1000,
      nonce: bytes.toString("base64url", 5, HEADER_BYTES),
    };
  }

  /** Checks the MAC (constant time), the binding to (user, activity), and the expiry. */
  verify(token: string, userId: string, activityId: string, nowMs = Date.now()): TokenCheck {
    if (token === "") return { ok: false, reason: "missing" };
    if (token.length !== TOKEN_LENGTH) return { ok: false, reason: "malformed" };
    const bytes = Buffer.from(token, "base64url");
    if (bytes.length !== TOKEN_BYTES || bytes[0] !== VERSION)
      return { ok: false, reason: "malformed" };
    const expected = this.tag(bytes, userId, activityId);
    if (!timingSafeEqual(bytes.subarray(HEADER_BYTES), expected.subarray(0, TAG_BYTES)))
      return { ok: false, reason: "invalid" };
    const expiresAtMs = bytes.readUInt32BE(1) * 1000;
    const nonce = bytes.toString("base64url", 5, HEADER_BYTES);
    if (nowMs >= expiresAtMs) return { ok: false, reason: "expired", nonce, expiresAtMs };
    return { ok: true, nonce, expiresAtMs };
  }

  private tag(bytes: Buffer, userId: string, activityId: string): Buffer {
    const mac = createHmac("sha256", this.key);
    mac.update(bytes.subarray(0, HEADER_BYTES));
    mac.update(lengthPrefixed(userId));
    mac.update(lengthPrefixed(activityId));
    return mac.digest();
  }
}

/** uint16 byte length then the UTF-8 bytes: ("ab","c") and ("a","bc") must not MAC alike. */
function lengthPrefixed(s: string): Buffer {
  const len = Buffer.byteLength(s, "utf8");
  const out = Buffer.allocUnsafe(2 + len);
  out.writeUInt16BE(Math.min(len, 0xffff), 0);
  out.write(s, 2, "utf8");
  return out;
}
