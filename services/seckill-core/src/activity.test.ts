import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ActivityStatus } from "../../gen/seckill/common/v1/common_pb.ts";
import { activityFixture } from "../../shared/src/testing/fixtures.ts";
import { DefinitionError, toDefinition } from "./activity.ts";

describe("toDefinition", () => {
  it("converts a published activity", () => {
    const def = toDefinition(
      activityFixture({
        id: "x",
        totalStock: 7,
        perUserLimit: 3,
        revision: 4,
        startMs: 1000,
        endMs: 2000,
      }),
    );
    assert.deepEqual(def, {
      id: "x",
      totalStock: 7,
      startMs: 1000,
      endMs: 2000,
      perUserLimit: 3,
      paymentTimeoutSeconds: 900,
      revision: 4,
      priceCents: "1999",
      currency: "USD",
      productId: "prod-1",
      status: "PUBLISHED",
    });
    assert.equal(toDefinition(activityFixture({ status: ActivityStatus.ENDED })).status, "ENDED");
    assert.equal(
      toDefinition(activityFixture({ status: ActivityStatus.LIVE })).status,
      "PUBLISHED",
    );
  });

  it("names the first bad field; a draft is a precondition failure", () => {
    const bad = (o: Parameters<typeof activityFixture>[0], pattern: RegExp, precondition = false) =>
      assert.throws(
        () => toDefinition(activityFixture(o)),
        (err: DefinitionError) =>
          err instanceof DefinitionError &&
          pattern.test(err.message) &&
          err.precondition === precondition,
      );
    bad({ id: "" }, /activity.id is required/);
    bad({ status: ActivityStatus.DRAFT }, /draft/, true);
    bad({ totalStock: -1 }, /total_stock/);
    bad({ perUserLimit: 0 }, /per_user_limit/);
    bad({ paymentTimeoutSeconds: 0 }, /payment_timeout_seconds/);
    bad({ startMs: 2000, endMs: 2000 }, /end_time must be after start_time/);
    bad({ revision: -1 }, /revision/);
    assert.throws(() => toDefinition(undefined), /activity is required/);
  });
});
