import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { BuyRequestSchema, SeckillAppService } from "../../gen/seckill/app/v1/app_pb.ts";
import { BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import type { CallInfo } from "./forwarder.ts";
import { checkIds } from "./id-checks.ts";

const buy = SeckillAppService.method.buy;
const call: CallInfo = { caller: undefined, ip: undefined, method: buy };
const req = (o: { activityId?: string; requestId?: string }) =>
  create(BuyRequestSchema, { activityId: "act-1", requestId: "req-1", quantity: 1, ...o });

describe("id checks at the edge", () => {
  const soldOut = { result: BuyResult.SOLD_OUT };
  const hooks = checkIds(buy, ["activityId", "requestId"], { shortCircuit: () => soldOut });

  it("passes good ids on to the inner hooks", () => {
    assert.equal(hooks.shortCircuit!(req({}), call), soldOut);
  });

  it("refuses a bad id with INVALID_ARGUMENT naming the proto field, before the inner hooks", () => {
    for (const [o, message] of [
      [{ requestId: "" }, /request_id is required/],
      [{ requestId: "r".repeat(129) }, /request_id is longer than 128/],
      [{ activityId: "{x}" }, /activity_id may only contain/],
    ] as const)
      assert.throws(
        () => hooks.shortCircuit!(req(o), call),
        (err: ConnectError) => err.code === Code.InvalidArgument && message.test(err.message),
      );
  });

  it("refuses a field the message does not have, when the routes are built", () => {
    assert.throws(() => checkIds(buy, ["nope" as "activityId"]), /has no field nope/);
  });
});
