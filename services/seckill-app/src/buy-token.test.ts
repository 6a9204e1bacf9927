import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BuyTokens, TOKEN_LENGTH } from "./buy-token.ts";

const SECRET = "0123456789abcdef0123456789abcdef";
const NOW = Date.UTC(2030, 0, 1, 12, 0, 0);

describe("buy tokens", () => {
  const tokens = new BuyTokens(SECRET, 60);

  it("issues compact, URL-safe tokens that verify for their (user, activity) only", () => {
    const t = tokens.issue("u1", "act-1", NOW);
    assert.equal(t.token.length, TOKEN_LENGTH);
    assert.match(t.token, /^[A-Za-z0-9_-]+$/);
    assert.equal(t.expiresAtMs, NOW + 60_000);
    assert.deepEqual(tokens.verify(t.token, "u1", "act-1", NOW + 1000), {
      ok: true,
      nonce: t.nonce,
      expiresAtMs: t.expiresAtMs,
    });
    assert.equal(tokens.verify(t.token, "u2", "act-1", NOW).ok, false);
    assert.equal(tokens.verify(t.token, "u1", "act-2", NOW).ok, false);
    // The length prefix keeps ("u1","act-1") apart from ("u1act-","1")-like splits.
    assert.equal(tokens.verify(t.token, "u1a", "ct-1", NOW).ok, false);
  });

  it("gives every token its own nonce", () => {
    const nonces = new Set<string>();
    for (let i = 0; i < 2000; i++) nonces.add(tokens.issue("u1", "act-1", NOW).nonce);
    assert.equal(nonces.size, 2000);
  });

  it("reports expiry only for a genuine token, with its nonce", () => {
    const t = tokens.issue("u1", "act-1", NOW);
    const check = tokens.verify(t.token, "u1", "act-1", t.expiresAtMs);
    assert.deepEqual(check, {
      ok: false,
      reason: "expired",
      nonce: t.nonce,
      expiresAtMs: t.expiresAtMs,
    });
    assert.deepEqual(tokens.verify(t.token, "u2", "act-1", t.expiresAtMs + 1), {
      ok: false,
      reason: "invalid",
    });
  });

  it("refuses forged, tampered, truncated and foreign tokens", () => {
    const t = tokens.issue("u1", "act-1", NOW);
    const reason = (token: string) => {
      const c = tokens.verify(token, "u1", "act-1", NOW);
      return c.ok ? "ok" : c.reason;
    };
    assert.equal(reason(""), "missing");
    assert.equal(reason(t.token.slice(0, -1)), "malformed");
    assert.equal(reason(`${t.token}A`), "malformed");
    assert.equal(reason("!".repeat(TOKEN_LENGTH)), "malformed");
    // Flip one bit in every position: the MAC covers all of it (version flips are malformed).
    const bytes = Buffer.from(t.token, "base64url");
    for (let i = 0; i < bytes.length; i++) {
      const copy = Buffer.from(bytes);
      copy[i]! ^= 1;
      assert.notEqual(reason(copy.toString("base64url")), "ok", `byte ${i}`);
    }
    // Extending the expiry is tampering too.
    const later = Buffer.from(bytes);
    later.writeUInt32BE(later.readUInt32BE(1) + 3600, 1);
    assert.equal(reason(later.toString("base64url")), "invalid");
    const other = new BuyTokens("another secret, also 32 bytes long", 60);
    assert.equal(reason(other.issue("u1", "act-1", NOW).token), "invalid");
  });

  it("refuses a secret shorter than 32 bytes", () => {
    assert.throws(() => new BuyTokens("short", 60), /at least 32 bytes/);
  });

  it("prints its cost (issue + verify)", () => {
    const n = 50_000;
    const issued: string[] = new Array(n);
    let t0 = performance.now();
    for (let i = 0; i < n; i++) issued[i] = tokens.issue(`user-${i}`, "act-1", NOW).token;
    const issueUs = ((performance.now() - t0) * 1000) / n;
    t0 = performance.now();
    let ok = 0;
    for (let i = 0; i < n; i++) if (tokens.verify(issued[i]!, `user-${i}`, "act-1", NOW).ok) ok++;
    const verifyUs = ((performance.now() - t0) * 1000) / n;
    assert.equal(ok, n);
    console.log(
      `buy token: issue ${issueUs.toFixed(2)} µs, verify ${verifyUs.toFixed(2)} µs (${n} each)`,
    );
  });
});
