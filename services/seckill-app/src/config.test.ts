import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError, loadConfig } from "../../shared/src/runtime/config.ts";
import { appConfigSchema } from "./config.ts";

const repo = fileURLToPath(new URL("../../../", import.meta.url));
const base = { REDIS_URL: "redis://127.0.0.1:1", BUY_TOKEN_SECRET: "x".repeat(32) };

describe("seckill-app configuration", () => {
  it("applies the defaults", () => {
    const c = loadConfig(appConfigSchema, base);
    assert.equal(c.BUY_TOKEN_TTL_SECONDS, 60);
    assert.equal(c.MAX_INFLIGHT, 512);
    assert.equal(c.SOLD_OUT_TTL_MS, 1000);
    assert.equal(c.REDIS_AUTO_PIPELINING, false);
    assert.equal(
      loadConfig(appConfigSchema, { ...base, REDIS_AUTO_PIPELINING: "true" }).REDIS_AUTO_PIPELINING,
      true,
    );
  });

  it("refuses a buy token secret shorter than 32 bytes, without printing it", () => {
    const secret = "only-31-bytes-of-secret-text-xx";
    assert.equal(Buffer.byteLength(secret), 31);
    assert.throws(
      () => loadConfig(appConfigSchema, { ...base, BUY_TOKEN_SECRET: secret }),
      (err: Error) =>
        err instanceof ConfigError &&
        /BUY_TOKEN_SECRET: must be at least 32 bytes/.test(err.message) &&
        !err.message.includes(secret),
    );
    assert.throws(
      () => loadConfig(appConfigSchema, { REDIS_URL: base.REDIS_URL }),
      /BUY_TOKEN_SECRET/,
    );
  });

  it("makes the process exit 1 with a readable message", () => {
    const secret = "too-short-secret";
    const run = spawnSync(
      process.execPath,
      ["--import", "tsx", "services/seckill-app/src/main.ts"],
      {
        cwd: repo,
        env: { ...process.env, ...base, BUY_TOKEN_SECRET: secret },
        encoding: "utf8",
        timeout: 30_000,
      },
    );
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /BUY_TOKEN_SECRET: must be at least 32 bytes/);
    assert.ok(!run.stderr.includes(secret) && !run.stdout.includes(secret));
  });
});
