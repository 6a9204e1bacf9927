import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { activityKeys, activityOfRestockChannel } from "../../shared/src/data-plane/keys.ts";
import { SoldOutFlags } from "../../shared/src/sale/sold-out.ts";

describe("SoldOutFlags", () => {
  it("holds a flag for the TTL, until cleared", () => {
    let now = 1000;
    const flags = new SoldOutFlags(1000, () => now);
    assert.equal(flags.mark("a"), true);
    assert.equal(flags.mark("a"), false, "already flagged");
    assert.equal(flags.has("a"), true);
    assert.equal(flags.has("b"), false);
    now += 999;
    assert.equal(flags.has("a"), true);
    now += 1;
    assert.equal(flags.has("a"), false, "expired");
    assert.equal(flags.size, 0, "expired flags are dropped");
    flags.mark("a");
    flags.clear("a");
    assert.equal(flags.has("a"), false, "cleared by a restock");
  });

  it("is off with a TTL of 0", () => {
    const flags = new SoldOutFlags(0);
    assert.equal(flags.mark("a"), false);
    assert.equal(flags.has("a"), false);
  });
});

describe("restock channels", () => {
  it("name their activity, whatever characters its id has", () => {
    for (const id of ["a", "act:1", "x}y", "{weird}"])
      assert.equal(activityOfRestockChannel(activityKeys(id).restock), id);
    assert.equal(activityOfRestockChannel("{act:}:restock"), "");
    assert.equal(activityOfRestockChannel("order:123"), undefined);
  });
});
