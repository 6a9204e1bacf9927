import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ActivityStatus } from "../../gen/seckill/common/v1/common_pb.ts";
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

function rejects(run: () => unknown, message: RegExp) {
  assert.throws(run, (err) => {
    assert.ok(err instanceof ConnectError);
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, message);
    return true;
  });
}

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
    rejects(() => checkActivity({ ...good, title: "  " }, bounds), /title is required/);
    rejects(() => checkActivity({ ...good, totalStock: 0 }, bounds), /total_stock must be > 0/);
    rejects(
      () => checkActivity({ ...good, totalStock: 2_000_000_000 }, bounds),
      /total_stock must be <=/,
    );
    rejects(
      () => checkActivity({ ...good, perUserLimit: 0 }, bounds),
      /per_user_limit must be >= 1/,
    );
    rejects(
      () => checkActivity({ ...good, endMs: good.startMs }, bounds),
      /end_time .* must be after start_time/,
    );
    rejects(() => paymentTimeout(1, bounds), /between 5 and 86400/);
    rejects(() => paymentTimeout(100_000, bounds), /between 5 and 86400/);
    rejects(() => timeMs("start_time", undefined), /start_time is required/);
    rejects(() => timeMs("end_time", timestampFromMs(0)), /out of range/);
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
    rejects(
      () => checkProduct({ ...p, priceCents: -1n, imageUrl: "" }),
      /price_cents must be >= 0/,
    );
    rejects(() => checkProduct({ ...p, priceCents: 1n, currency: "EURO" }), /ISO 4217/);
    rejects(
      () => checkProduct({ ...p, priceCents: 1n, imageUrl: "javascript:alert(1)" }),
      /image_url/,
    );
    rejects(() => checkProduct({ ...p, priceCents: 1n, imageUrl: "//evil" }), /image_url/);
  });

  it("normalizes blacklist IPs the way a dual-stack socket reports them", () => {
    assert.equal(blacklistValue("ip", "::ffff:10.1.2.3"), "10.1.2.3");
    assert.equal(blacklistValue("ip", "2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
    assert.equal(blacklistValue("user", " u-1 "), "u-1");
    rejects(() => blacklistValue("ip", "10.1.2"), /not an IPv4 or IPv6/);
    rejects(() => blacklistValue("user", ""), /value is required/);
  });

  it("pages: sizes and tokens", () => {
    assert.equal(pageSize(0), 50);
    assert.equal(pageSize(10_000), 500);
    rejects(() => pageSize(-1), /page_size/);
    const token = encodeToken("products", ["01ABC"]);
    assert.deepEqual(decodeToken("products", token, 1), ["01ABC"]);
    assert.equal(decodeToken("products", "", 1), undefined);
    rejects(() => decodeToken("activities", token, 1), /page_token is not valid/);
    rejects(() => decodeToken("products", "garbage!", 1), /page_token is not valid/);
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
