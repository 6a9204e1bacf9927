import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Code, type ConnectError } from "@connectrpc/connect";
import { codeIs } from "../../shared/src/testing/codes.ts";
import {
  DEFAULT_SCRYPT,
  normalizeUsername,
  PasswordHasher,
  parseHash,
  validatePassword,
  validateUsername,
} from "./passwords.ts";

describe("password hashing (scrypt)", () => {
  it(`hashes with ln=${DEFAULT_SCRYPT.logN} r=8 p=1 in the stored format, verifies, and times itself`, async () => {
    const observed: number[] = [];
    const hasher = new PasswordHasher({ observe: (_op, s) => observed.push(s) });
    const hash = await hasher.hash("correct horse battery staple");
    assert.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.equal(await hasher.verify("correct horse battery staple", hash), true);
    assert.equal(await hasher.verify("correct horse battery stapler", hash), false);
    assert.notEqual(await hasher.hash("correct horse battery staple"), hash, "salted");
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await hasher.hash("correct horse battery staple");
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    console.log(
      `scrypt ln=15 r=8 p=1 (32 MiB): median ${times[2]!.toFixed(1)} ms, min ${times[0]!.toFixed(1)} ms per hash`,
    );
    assert.equal(observed.length, 9);
  });

  it("verifies hashes made with older parameters and asks for a rehash", async () => {
    const weak = new PasswordHasher({ params: { logN: 10, r: 8, p: 1 } });
    const strong = new PasswordHasher();
    const old = await weak.hash("an older password");
    assert.equal(parseHash(old)?.params.logN, 10);
    assert.equal(await strong.verify("an older password", old), true);
    assert.equal(strong.needsRehash(old), true);
    assert.equal(strong.needsRehash(await strong.hash("x".repeat(10))), false);
  });

  it("treats unreadable or absurd stored hashes as a mismatch", async () => {
    const hasher = new PasswordHasher();
    for (const stored of [
      "",
      "plain",
      "$scrypt$ln=40,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ]) {
      assert.equal(await hasher.verify("whatever1", stored), false);
    }
    assert.equal(await hasher.verifyNothing("whatever1"), false);
  });

  it("normalizes passwords (NFKC) before hashing", async () => {
    const hasher = new PasswordHasher({ params: { logN: 10, r: 8, p: 1 } });
    const hash = await hasher.hash("caf\u00e9-latte");
    assert.equal(await hasher.verify("cafe\u0301-latte", hash), true);
  });

  it("sheds load beyond maxPending with RESOURCE_EXHAUSTED", async () => {
    const hasher = new PasswordHasher({ maxPending: 2, params: { logN: 12, r: 8, p: 1 } });
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, () => hasher.hash("load shedding")),
    );
    const refused = results.filter((r) => r.status === "rejected");
    assert.equal(refused.length, 3);
    for (const r of refused) assert.equal((r.reason as ConnectError).code, Code.ResourceExhausted);
  });
});

describe("username and password rules", () => {
  it("accepts ordinary names and refuses bad ones with a clear message", () => {
    for (const ok of ["alice", "bob.smith", "buyer-19999", "a_b", "007"]) validateUsername(ok);
    assert.equal(normalizeUsername("Alice"), "alice");
    assert.throws(() => validateUsername(""), codeIs(Code.InvalidArgument, /username is required/));
    assert.throws(() => validateUsername("ab"), codeIs(Code.InvalidArgument, /3 to 64 characters/));
    assert.throws(
      () => validateUsername("a".repeat(65)),
      codeIs(Code.InvalidArgument, /3 to 64 characters/),
    );
    assert.throws(
      () => validateUsername("al ice"),
      codeIs(Code.InvalidArgument, /only letters, digits/),
    );
    assert.throws(
      () => validateUsername("-alice"),
      codeIs(Code.InvalidArgument, /start with a letter or a digit/),
    );
    assert.throws(() => validateUsername("{act:1}"), codeIs(Code.InvalidArgument, /only letters/));
  });

  it("accepts long passphrases and refuses weak ones", () => {
    validatePassword("correct horse battery staple", "alice");
    validatePassword("ünïcødé-pass");
    assert.throws(() => validatePassword(""), codeIs(Code.InvalidArgument, /password is required/));
    assert.throws(
      () => validatePassword("short"),
      codeIs(Code.InvalidArgument, /at least 8 characters/),
    );
    assert.throws(
      () => validatePassword("xy".repeat(65)),
      codeIs(Code.InvalidArgument, /at most 128/),
    );
    assert.throws(
      () => validatePassword("alice-in-wonderland", "alice-in-wonderland"),
      codeIs(Code.InvalidArgument, /not be the username/),
    );
    assert.throws(
      () => validatePassword("Password123"),
      codeIs(Code.InvalidArgument, /too common/),
    );
    assert.throws(() => validatePassword("aaaaaaaaaa"), codeIs(Code.InvalidArgument, /too common/));
  });
});
