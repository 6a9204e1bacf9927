import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import { ConfigError, flag, int, intAtLeast, loadConfig, millis } from "./config.ts";

describe("env field helpers", () => {
  const schema = z.object({
    ON: flag(),
    OFF: flag(true),
    N: int(1, 5, 3),
    BIG: intAtLeast(10, 100),
    WAIT_MS: millis(250),
    POSITIVE_MS: millis(1000, 1),
  });

  it("reads yes/no settings the same way everywhere: true/false, 1/0, yes/no, any case", () => {
    for (const [text, value] of [
      ["true", true],
      ["TRUE", true],
      ["1", true],
      ["Yes", true],
      ["false", false],
      ["False", false],
      ["0", false],
      ["NO", false],
    ] as const) {
      assert.equal(loadConfig(schema, { ON: text }).ON, value, text);
      assert.equal(loadConfig(schema, { OFF: text }).OFF, value, text);
    }
    // Unset or empty: the default.
    assert.equal(loadConfig(schema, {}).ON, false);
    assert.equal(loadConfig(schema, { ON: "" }).ON, false);
    assert.equal(loadConfig(schema, {}).OFF, true);
    assert.equal(loadConfig(schema, { OFF: "" }).OFF, true);
    assert.throws(
      () => loadConfig(schema, { ON: "maybe" }),
      (err: Error) =>
        err instanceof ConfigError && /ON: must be true\/false, 1\/0 or yes\/no/.test(err.message),
    );
  });

  it("applies defaults and bounds to numbers and durations", () => {
    assert.deepEqual(loadConfig(schema, {}), {
      ON: false,
      OFF: true,
      N: 3,
      BIG: 100,
      WAIT_MS: 250,
      POSITIVE_MS: 1000,
    });
    assert.equal(loadConfig(schema, { N: "5", BIG: "1000000", WAIT_MS: "0" }).N, 5);
    for (const env of [
      { N: "6" },
      { N: "0" },
      { N: "2.5" },
      { BIG: "9" },
      { WAIT_MS: "-1" },
      { POSITIVE_MS: "0" },
    ])
      assert.throws(() => loadConfig(schema, env), ConfigError, JSON.stringify(env));
  });
});
