import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Cleanup } from "./cleanup.ts";

describe("Cleanup", () => {
  it("closes newest first, each step once, all of them even when one fails", async () => {
    const cleanup = new Cleanup();
    const ran: string[] = [];
    cleanup.add(() => {
      ran.push("db");
    });
    cleanup.add(async () => {
      ran.push("redis");
      throw new Error("redis would not quit");
    });
    cleanup.add(async () => {
      ran.push("loop");
    });
    await assert.rejects(cleanup.run(), /redis would not quit/);
    assert.deepEqual(ran, ["loop", "redis", "db"]);
    await cleanup.run();
    assert.deepEqual(ran, ["loop", "redis", "db"], "a second run closes nothing again");
  });
});
