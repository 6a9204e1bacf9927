import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RemainingStock } from "./remaining.ts";

describe("RemainingStock", () => {
  it("asks core at most once per TTL per activity, shares calls, and forgets failures", async () => {
    let now = 0;
    const calls: string[] = [];
    let fail = false;
    const stock = new RemainingStock(
      async (id) => {
        calls.push(id);
        if (fail) throw new Error("core down");
        return 7n;
      },
      500,
      () => now,
    );
    assert.deepEqual(await Promise.all([stock.get("a"), stock.get("a"), stock.get("b")]), [
      7n,
      7n,
      7n,
    ]);
    assert.deepEqual(calls, ["a", "b"]);
    now = 499;
    await stock.get("a");
    assert.equal(calls.length, 2, "cached within the TTL");
    now = 500;
    fail = true;
    assert.equal(await stock.get("a"), undefined, "no count when core cannot be asked");
    fail = false;
    assert.equal(await stock.get("a"), 7n, "a failure is not cached");
    assert.equal(calls.length, 4);
  });
});
