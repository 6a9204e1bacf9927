import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { ActivityStatus } from "../../gen/seckill/common/v1/common_pb.ts";
import { codeIs } from "../../shared/src/testing/codes.ts";
import { decodeToken, encodeToken } from "./paging.ts";
import {
  blacklistValue,
  checkActivity,
  checkProduct,
  pageSize,
  paymentTimeout,
  timeMs,
} from "./validation.ts";
import { derivedStatus } from "./views.ts";

const bounds = { min: 5, max: 86_400, fallback: 900 };
const HOUR = 3_600_000;

const good = {
  title: " Sale ",
  description: "",
  priceCents: 100,
  currency: "USD",
  totalStock: 10,
  perUserLimit: 1,
  startMs: Date.UTC(2030, 0, 1),
  endMs: Date.UTC(2030, 0, 2),
  paymentTimeoutSeconds: 0,
};

describe("validation", () => {
  it("normalizes a good activity and applies the payment timeout default", () => {
    const a = checkActivity(good, bounds);
    assert.equal(a.title, "Sale");
    assert.equal(a.paymentTimeoutSeconds, 900);
  });

  it("names the field and the rule of a bad activity", () => {
    assert.throws(
      () => checkActivity({ ...good, title: "  " }, bounds),
      codeIs(Code.InvalidArgument, /title is required/),
    );
    assert.throws(
      () => checkActivity({ ...good, totalStock: 0 }, bounds),
      codeIs(Code.InvalidArgument, /total_stock must be > 0/),
    );
    assert.throws(
      () => checkActivity({ ...good, totalStock: 2_000_000_000 }, bounds),
      codeIs(Code.InvalidArgument, /total_stock must be <=/),
    );
    assert.throws(
      () => checkActivity({ ...good, perUserLimit: 0 }, bounds),
      codeIs(Code.InvalidArgument, /per_user_limit must be >= 1/),
    );
    assert.throws(
      () => checkActivity({ ...good, endMs: good.startMs }, bounds),
      codeIs(Code.InvalidArgument, /end_time .* must be after start_time/),
    );
    assert.throws(
      () => paymentTimeout(1, bounds),
      codeIs(Code.InvalidArgument, /between 5 and 86400/),
    );
    assert.throws(
      () => paymentTimeout(100_000, bounds),
      codeIs(Code.InvalidArgument, /between 5 and 86400/),
    );
    assert.throws(
      () => timeMs("start_time", undefined),
      codeIs(Code.InvalidArgument, /start_time is required/),
    );
    assert.throws(
      () => timeMs("end_time", timestampFromMs(0)),
      codeIs(Code.InvalidArgument, /out of range/),
    );
  });

  it("checks products", () => {
    const p = checkProduct({
      name: "Phone",
      description: "",
      imageUrl: "/img/phone.png",
      priceCents: 100n,
      currency: "eur",
    });
    assert.equal(p.currency, "EUR");
    assert.throws(
      () => checkProduct({ ...p, priceCents: -1n, imageUrl: "" }),
      codeIs(Code.InvalidArgument, /price_cents must be >= 0/),
    );
    assert.throws(
      () => checkProduct({ ...p, priceCents: 1n, currency: "EURO" }),
      codeIs(Code.InvalidArgument, /ISO 4217/),
    );
    assert.throws(
      () => checkProduct({ ...p, priceCents: 1n, imageUrl: "javascript:alert(1)" }),
      codeIs(Code.InvalidArgument, /image_url/),
    );
    assert.throws(
      () => checkProduct({ ...p, priceCents: 1n, imageUrl: "//evil" }),
      codeIs(Code.InvalidArgument, /image_url/),
    );
  });

  it("normalizes blacklist IPs the way a dual-stack socket reports them", () => {
    assert.equal(blacklistValue("ip", "::ffff:10.1.2.3"), "10.1.2.3");
    assert.equal(blacklistValue("ip", "2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
    assert.equal(blacklistValue("user", " u-1 "), "u-1");
    assert.throws(
      () => blacklistValue("ip", "10.1.2"),
      codeIs(Code.InvalidArgument, /not an IPv4 or IPv6/),
    );
    assert.throws(
      () => blacklistValue("user", ""),
      codeIs(Code.InvalidArgument, /value is required/),
    );
  });

  it("pages: sizes and tokens", () => {
    assert.equal(pageSize(0), 50);
    assert.equal(pageSize(10_000), 500);
    assert.throws(() => pageSize(-1), codeIs(Code.InvalidArgument, /page_size/));
    const token = encodeToken("products", ["01ABC"]);
    assert.deepEqual(decodeToken("products", token, 1), ["01ABC"]);
    assert.equal(decodeToken("products", "", 1), undefined);
    assert.throws(
      () => decodeToken("activities", token, 1),
      codeIs(Code.InvalidArgument, /page_token is not valid/),
    );
    assert.throws(
      () => decodeToken("products", "garbage!", 1),
      codeIs(Code.InvalidArgument, /page_token is not valid/),
    );
  });

  it("derives LIVE, SOLD_OUT and ENDED from the window, the clock and the stock", () => {
    const now = Date.now();
    const row = (status: "DRAFT" | "PUBLISHED" | "ENDED", startMs: number, endMs: number) => ({
      status,
      start_at: new Date(startMs),
      end_at: new Date(endMs),
    });
    assert.equal(derivedStatus(row("DRAFT", now - HOUR, now + HOUR), now, 5), ActivityStatus.DRAFT);
    assert.equal(
      derivedStatus(row("PUBLISHED", now + HOUR, now + 2 * HOUR), now, 5),
      ActivityStatus.PUBLISHED,
    );
    assert.equal(
      derivedStatus(row("PUBLISHED", now - HOUR, now + HOUR), now, 5),
      ActivityStatus.LIVE,
    );
    assert.equal(
      derivedStatus(row("PUBLISHED", now - HOUR, now + HOUR), now, 0),
      ActivityStatus.SOLD_OUT,
    );
    assert.equal(
      derivedStatus(row("PUBLISHED", now - 2 * HOUR, now - HOUR), now, 3),
      ActivityStatus.ENDED,
    );
    assert.equal(
      derivedStatus(row("PUBLISHED", now - HOUR, now + HOUR), now, undefined),
      ActivityStatus.LIVE,
      "unknown stock: LIVE",
    );
    assert.equal(derivedStatus(row("ENDED", now - HOUR, now + HOUR), now, 5), ActivityStatus.ENDED);
  });
});
