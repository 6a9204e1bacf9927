import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { orderChannel } from "../../shared/src/data-plane/keys.ts";
import {
  deadLetterStream as deadLetterKey,
  fieldMap,
  encodeOrderIntent as intentFields,
  decodeOrderIntent as parseEntry,
  orderIntentStream as streamKey,
} from "../../shared/src/data-plane/order-intent.ts";
import { orderIntentFixture, withField } from "../../shared/src/testing/fixtures.ts";
import { intentRow } from "./stream.ts";

const intent = orderIntentFixture();
const set = withField;

describe("order-intent stream entries", () => {
  it("keys share the activity's hash tag", () => {
    assert.equal(streamKey("a"), "{act:a}:orders");
    assert.equal(deadLetterKey("a"), "{act:a}:orders:dead");
    assert.equal(orderChannel("X"), "order:X");
  });

  it("round-trips the contract's fields and makes a PENDING_PAYMENT row", () => {
    const fields = intentFields(intent);
    assert.deepEqual(
      fields.filter((_, i) => i % 2 === 0),
      ["oid", "act", "uid", "qty", "price", "cur", "pid", "dl", "rid", "ts"],
    );
    assert.deepEqual(parseEntry("act-1", fields), { ok: true, intent });
    const row = intentRow(intent);
    assert.equal(row.amount_cents, 3998);
    assert.equal(row.status, "PENDING_PAYMENT");
    assert.equal((row.payment_deadline as Date).getTime(), intent.deadlineMs);
  });

  it("ignores unknown fields and takes the first of repeated ones", () => {
    const fields = [...intentFields(intent), "extra", "1", "qty", "9"];
    assert.equal(fieldMap(fields).get("qty"), "2");
    assert.deepEqual(parseEntry("act-1", fields), { ok: true, intent });
  });

  it("refuses what would make a wrong or truncated row, naming every problem", () => {
    const bad = (fields: string[], pattern: RegExp) => {
      const parsed = parseEntry("act-1", fields);
      assert.equal(parsed.ok, false, JSON.stringify(fields));
      assert.match((parsed as { reason: string }).reason, pattern);
    };
    const f = intentFields(intent);
    bad(set(f, "qty", "0"), /qty must be an integer in 1\.\./);
    bad(set(f, "qty", "1.5"), /qty must be an integer/);
    bad(set(f, "price", "-1"), /price/);
    bad(set(f, "price", "1e3"), /price/);
    bad(set(f, "oid", "0".repeat(27)), /oid must have 1\.\.26/);
    bad(set(f, "oid", "AB-CD"), /alphanumeric/);
    bad(set(f, "act", "act-2"), /does not match/);
    bad(set(f, "uid", ""), /uid must have 1\.\./);
    bad(set(f, "cur", "DOLLARS!!"), /cur/);
    bad(set(f, "dl", "99999999999999999999"), /dl/);
    bad(set(f, "ts", "253402300800000"), /beyond year 9999/);
    bad(set(set(f, "qty", "900000"), "price", "90000000000000"), /overflows/);
    const many = parseEntry("act-1", ["oid", ""]);
    assert.equal(many.ok, false);
    assert.match((many as { reason: string }).reason, /oid must have.*act missing.*ts missing/);
  });

  it("accepts an empty product id (the column allows it)", () => {
    assert.equal(parseEntry("act-1", set(intentFields(intent), "pid", "")).ok, true);
  });
});
