/**
 * The order service in process (two instances) on a real Redis, MariaDB and
 * etcd, against seckill-core: the real service (services/seckill-core as a
 * process, its Release / ConfirmPayment calls counted by an interceptor on an
 * in-process front) and the small fake of testing/fake-core.ts that applies
 * the contract's Redis effects.
 * ORDER_TEST_CORE=real|fake runs one of them; both by default.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { OrderStatus } from "../../gen/seckill/common/v1/common_pb.ts";
import type { Order } from "../../gen/seckill/order/v1/order_pb.ts";
import { encodeOrderIntent as intentFields } from "../../shared/src/data-plane/order-intent.ts";
import { Mesh } from "../../shared/src/mesh/mesh.ts";
import { createLogger } from "../../shared/src/runtime/log.ts";
import type { RunningService } from "../../shared/src/runtime/server.ts";
import { startTelemetry } from "../../shared/src/runtime/telemetry.ts";
import { type Stack, startStack } from "../../shared/src/stack/index.ts";
import { createEtcd, type Etcd3 } from "../../shared/src/stores/etcd.ts";
import { createDb } from "../../shared/src/stores/mysql.ts";
import { createRedis, type Redis } from "../../shared/src/stores/redis.ts";
import { codeIs, expectCode, pollUntil } from "../../shared/src/testing/index.ts";
import type { Database } from "./db.ts";
import { counters, makeIntent, reservationStatus, reserve } from "./testing/contract.ts";
import { type CoreKind, type CoreUnderTest, startCore } from "./testing/core-under-test.ts";
import {
  type ActivityOptions,
  as,
  type OrderClient,
  orderClient,
  publishActivity,
  type StackUrls,
  startOrder,
} from "./testing/harness.ts";
import { pending, rowCount } from "./testing/helpers.ts";

const log = createLogger("order-test", "silent");

const kinds: CoreKind[] =
  process.env.ORDER_TEST_CORE === "real" || process.env.ORDER_TEST_CORE === "fake"
    ? [process.env.ORDER_TEST_CORE]
    : ["real", "fake"];

for (const kind of kinds) suite(kind);

function suite(kind: CoreKind) {
  describe(`order service: state machine, queries, watch (real stack, ${kind} core)`, {
    timeout: 300_000,
  }, () => {
    let stack: Stack<{ redis: true; mariadb: true; etcd: true }>;
    let urls: StackUrls;
    let redis: Redis;
    let db: Kysely<Database>;
    let etcd: Etcd3;
    let mesh: Mesh;
    let core: CoreUnderTest;
    let client: OrderClient;
    const instances: RunningService[] = [];

    /** Warms an activity in core, publishes it, reserves `n` orders and waits for their rows. */
    const sale = async (
      act: string,
      n: number,
      o: ActivityOptions & {
        deadlineMs?: (i: number) => number;
        user?: (i: number) => string;
      } = {},
    ) => {
      const activity = { totalStock: n, ...o };
      await core.warm(act, activity);
      await publishActivity(etcd, act, activity);
      const reserved = await core.reserve(
        act,
        Array.from({ length: n }, (_, i) => ({
          userId: o.user?.(i) ?? `${act}-buyer-${i}`,
          ...(o.deadlineMs ? { deadlineMs: o.deadlineMs(i) } : {}),
        })),
      );
      await pollUntil(async () => (await rowCount(db, act)) === n, {
        timeoutMs: 20_000,
        message: `${n} rows of ${act}`,
        intervalMs: 25,
      });
      return reserved;
    };

    const row = (id: string) =>
      db.selectFrom("orders").selectAll().where("id", "=", id).executeTakeFirstOrThrow();

    before(async () => {
      stack = await startStack({ redis: true, mariadb: true, etcd: true });
      urls = {
        etcdEndpoints: stack.etcd.endpoints,
        redisUrl: stack.redis.url,
        mysqlUri: stack.mariadb.uri,
      };
      redis = createRedis(stack.redis.url, log);
      db = createDb<Database>(stack.mariadb.uri);
      etcd = createEtcd(stack.etcd.endpoints);
      const telemetry = startTelemetry({
        service: "order-test",
        instance: "t",
        version: "t",
        exporter: "none",
      });
      mesh = new Mesh({ etcd, log, tracer: telemetry.tracer });
      core = await startCore(kind, {
        etcdEndpoints: stack.etcd.endpoints,
        redisUrl: stack.redis.url,
        redis,
        mesh,
      });
      const env = { WATCH_POLL_MS: "60000", SWEEP_INTERVAL_MS: "20" };
      instances.push(await startOrder(urls, "order-1", env));
      instances.push(await startOrder(urls, "order-2", env));
      await mesh.ready("order");
      client = orderClient(mesh);
    });
    after(async () => {
      await mesh?.close();
      for (const s of instances) await s.shutdown("test done");
      await core?.stop();
      etcd?.close();
      await redis?.quit();
      await db?.destroy();
      await stack?.stop();
    });

    it("Pay: PENDING_PAYMENT → PAID, core confirmed once; same payment_id answers again, another is refused", async () => {
      const [intent] = await sale("s-pay", 1);
      const id = intent!.orderId;
      const buyer = as(intent!.userId);
      const { order } = await client.pay({ orderId: id, paymentId: "pay-1" }, buyer);
      assert.equal(order?.status, OrderStatus.PAID);
      assert.equal(order?.paymentId, "pay-1");
      assert.ok(order?.paidAt);
      assert.equal(core.confirmCalls.get(id), 1);
      assert.equal((await row(id)).stock_settled, 1);
      assert.equal(await reservationStatus(redis, "s-pay", id), "PAID");
      assert.deepEqual(await counters(redis, "s-pay"), {
        total: 1,
        stock: 0,
        reserved: 0,
        paid: 1,
      });

      const again = await client.pay({ orderId: id, paymentId: "pay-1" }, buyer);
      assert.equal(again.order?.status, OrderStatus.PAID);
      assert.equal(core.confirmCalls.get(id), 1, "a repeated payment does not call core again");
      await expectCode(
        client.pay({ orderId: id, paymentId: "pay-2" }, buyer),
        Code.FailedPrecondition,
        /already paid with another payment_id/,
      );
      await expectCode(
        client.cancel({ orderId: id }, buyer),
        Code.FailedPrecondition,
        /paid and can no longer be cancelled/,
      );
      assert.equal((await row(id)).payment_id, "pay-1");
    });

    it("Cancel: stock back exactly once; cancelling again answers the order; a late payment is refused clearly", async () => {
      const [a, b] = await sale("s-cancel", 2);
      const id = a!.orderId;
      const buyer = as(a!.userId);
      const { order } = await client.cancel({ orderId: id }, buyer);
      assert.equal(order?.status, OrderStatus.CANCELLED);
      assert.equal(order?.cancelReason, "user_cancelled");
      const again = await client.cancel({ orderId: id, reason: "changed my mind" }, buyer);
      assert.equal(again.order?.cancelReason, "user_cancelled", "unchanged");
      await expectCode(
        client.pay({ orderId: id, paymentId: "late-1" }, buyer),
        Code.FailedPrecondition,
        /payment refused: the order was cancelled/,
      );
      assert.equal(core.releaseCalls.get(id), 1);
      assert.equal(core.releasedNow.get(id), 1);
      assert.equal((await row(id)).stock_settled, 1);
      assert.deepEqual(await counters(redis, "s-cancel"), {
        total: 2,
        stock: 1,
        reserved: 1,
        paid: 0,
      });
      // The buyer's own words are kept as the reason.
      await client.cancel({ orderId: b!.orderId, reason: "too slow" }, as(b!.userId));
      assert.equal((await row(b!.orderId)).cancel_reason, "too slow");
    });

    it("a payment_id used by another order is refused; nothing changes", async () => {
      const [a, b] = await sale("s-dup-pay", 2, { user: () => "same-buyer" });
      await client.pay({ orderId: a!.orderId, paymentId: "shared-pay" }, as("same-buyer"));
      await expectCode(
        client.pay({ orderId: b!.orderId, paymentId: "shared-pay" }, as("same-buyer")),
        Code.FailedPrecondition,
        /already used for another order/,
      );
      assert.equal((await row(b!.orderId)).status, "PENDING_PAYMENT");
    });

    it("the deadline sweeper cancels expired orders and returns their stock once; Pay after that is refused", async () => {
      const act = "s-expire";
      const intents = await sale(act, 50, {
        deadlineMs: () => Date.now() + 1000,
        paymentTimeoutSeconds: 1,
      });
      await pollUntil(async () => (await counters(redis, act)).stock === 50, {
        timeoutMs: 10_000,
        message: "every expired order's stock back",
        intervalMs: 25,
      });
      for (const intent of intents) {
        const r = await row(intent.orderId);
        assert.equal(r.status, "CANCELLED");
        assert.equal(r.cancel_reason, "payment_timeout");
        assert.equal(core.releaseCalls.get(intent.orderId), 1, "Release called exactly once");
      }
      await pollUntil(
        async () =>
          (await Promise.all(intents.map((i) => row(i.orderId)))).every(
            (r) => r.stock_settled === 1,
          ),
        { timeoutMs: 5000, message: "stock_settled", intervalMs: 25 },
      );
      await expectCode(
        client.pay({ orderId: intents[0]!.orderId, paymentId: "too-late" }, as(intents[0]!.userId)),
        Code.FailedPrecondition,
        /payment deadline passed; its stock went back on sale/,
      );
      assert.deepEqual(await counters(redis, act), { total: 50, stock: 50, reserved: 0, paid: 0 });
    });

    it("Pay vs deadline (and vs buyer Cancel) raced on two instances: each order ends PAID or CANCELLED, stock returned exactly once", async () => {
      const rounds = 4;
      const perRound = 200;
      const tally = { paid: 0, cancelled: 0, payRefused: 0, cancelRefused: 0 };
      for (let round = 0; round < rounds; round++) {
        const act = `s-race-${round}`;
        const base = Date.now() + 3000;
        const intents = await sale(act, perRound, {
          deadlineMs: () => base + Math.floor(Math.random() * 300),
          paymentTimeoutSeconds: 3,
        });
        const payOutcome = new Map<string, "ok" | "refused">();
        const cancelOutcome = new Map<string, "ok" | "refused">();
        await Promise.all(
          intents.map(async (intent, i) => {
            const buyer = as(intent.userId);
            const fireAt = intent.deadlineMs + Math.floor(Math.random() * 260) - 200;
            await new Promise((r) => setTimeout(r, Math.max(0, fireAt - Date.now())));
            const pay = client
              .pay({ orderId: intent.orderId, paymentId: `pay-${intent.orderId}` }, buyer)
              .then(
                (res) => {
                  assert.equal(res.order?.status, OrderStatus.PAID);
                  payOutcome.set(intent.orderId, "ok");
                },
                (err) => {
                  codeIs(Code.FailedPrecondition)(err);
                  payOutcome.set(intent.orderId, "refused");
                },
              );
            // Every fifth order: the buyer also cancels at the same moment.
            const cancel =
              i % 5 === 0
                ? client.cancel({ orderId: intent.orderId }, buyer).then(
                    (res) => {
                      assert.equal(res.order?.status, OrderStatus.CANCELLED);
                      cancelOutcome.set(intent.orderId, "ok");
                    },
                    (err) => {
                      codeIs(Code.FailedPrecondition)(err);
                      cancelOutcome.set(intent.orderId, "refused");
                    },
                  )
                : Promise.resolve();
            await Promise.all([pay, cancel]);
          }),
        );
        // Anything still pending is past its deadline: the sweepers finish it.
        await pollUntil(
          async () =>
            (
              await db
                .selectFrom("orders")
                .select("id")
                .where("activity_id", "=", act)
                .where((eb) =>
                  eb.or([eb("status", "=", "PENDING_PAYMENT"), eb("stock_settled", "=", 0)]),
                )
                .execute()
            ).length === 0,
          { timeoutMs: 20_000, message: "every order final and settled", intervalMs: 25 },
        );
        const rows = await db
          .selectFrom("orders")
          .selectAll()
          .where("activity_id", "=", act)
          .execute();
        assert.equal(rows.length, perRound);
        let paidUnits = 0;
        let cancelledUnits = 0;
        for (const r of rows) {
          const releases = core.releaseCalls.get(r.id) ?? 0;
          const confirms = core.confirmCalls.get(r.id) ?? 0;
          if (r.status === "PAID") {
            paidUnits += r.quantity;
            assert.equal(payOutcome.get(r.id), "ok", "the paid order's Pay succeeded");
            assert.notEqual(cancelOutcome.get(r.id), "ok", "and no Cancel succeeded");
            assert.equal(confirms, 1, "ConfirmPayment once per paid order");
            assert.equal(releases, 0, "never released");
            assert.equal(await reservationStatus(redis, act, r.id), "PAID");
          } else {
            assert.equal(r.status, "CANCELLED");
            cancelledUnits += r.quantity;
            assert.equal(payOutcome.get(r.id), "refused", "the cancelled order's Pay was refused");
            assert.equal(releases, 1, "Release called exactly once per cancelled order");
            assert.equal(core.releasedNow.get(r.id), 1, "and it returned the stock");
            assert.equal(confirms, 0, "never confirmed");
            assert.equal(await reservationStatus(redis, act, r.id), "RELEASED");
          }
          assert.equal(r.stock_settled, 1);
        }
        const c = await counters(redis, act);
        assert.equal(c.stock + c.reserved + c.paid, c.total, "I5");
        assert.deepEqual(c, {
          total: perRound,
          stock: cancelledUnits,
          reserved: 0,
          paid: paidUnits,
        });
        tally.paid += rows.filter((r) => r.status === "PAID").length;
        tally.cancelled += rows.filter((r) => r.status === "CANCELLED").length;
        tally.payRefused += [...payOutcome.values()].filter((v) => v === "refused").length;
        tally.cancelRefused += [...cancelOutcome.values()].filter((v) => v === "refused").length;
      }
      console.log(`  ${rounds}×${perRound} races: ${JSON.stringify(tally)}`);
      assert.ok(tally.paid > 0 && tally.cancelled > 0, "both sides won some races");
    });

    it("retries telling core until it succeeds (stock_settled stays 0 meanwhile), still returning stock once", async () => {
      const [intent] = await sale("s-settle", 1);
      const id = intent!.orderId;
      core.failNext = 3;
      const { order } = await client.cancel({ orderId: id }, as(intent!.userId));
      assert.equal(order?.status, OrderStatus.CANCELLED);
      assert.equal((await row(id)).stock_settled, 0);
      await pollUntil(async () => (await row(id)).stock_settled === 1, {
        timeoutMs: 20_000,
        message: "settled by the sweeper",
        intervalMs: 25,
      });
      assert.equal(core.releasedNow.get(id), 1);
      assert.ok((core.releaseCalls.get(id) ?? 0) >= 2);
      assert.deepEqual(await counters(redis, "s-settle"), {
        total: 1,
        stock: 1,
        reserved: 0,
        paid: 0,
      });
    });

    it("GetOrder: CREATING from core's reservation before the row (with the activity hint); then the row; admin sees any", async () => {
      const act = `s-get-${kind}`;
      // Warmed in core but not yet in etcd: order does not consume its stream yet.
      await core.warm(act, { totalStock: 10 });
      const [r] = await core.reserve(act, [{ userId: "getter", quantity: 2 }]);
      const id = r!.orderId;
      const creating = await client.getOrder({ orderId: id, activityId: act }, as("getter"));
      assert.equal(creating.order?.status, OrderStatus.CREATING);
      assert.equal(creating.order?.quantity, 2);
      assert.equal(creating.order?.userId, "getter");
      assert.equal(timestampMs(creating.order!.paymentDeadline!), r!.deadlineMs);
      await expectCode(
        client.getOrder({ orderId: id, activityId: act }, as("someone-else")),
        Code.NotFound,
      );
      assert.equal(
        (await client.getOrder({ orderId: id, activityId: act }, as("boss", "admin"))).order
          ?.status,
        OrderStatus.CREATING,
      );
      await publishActivity(etcd, act, { totalStock: 10 });
      await pollUntil(async () => (await rowCount(db, act)) === 1, {
        timeoutMs: 10_000,
        message: "the row",
        intervalMs: 25,
      });
      const pendingOrder = await client.getOrder({ orderId: id }, as("getter"));
      assert.equal(pendingOrder.order?.status, OrderStatus.PENDING_PAYMENT);
      assert.equal(pendingOrder.order?.amountCents, 3998n);
      assert.equal(pendingOrder.order?.currency, "USD");
      const byAdmin = await client.getOrder({ orderId: id }, as("boss", "admin"));
      assert.equal(byAdmin.order?.userId, "getter");
      await expectCode(client.getOrder({ orderId: id }, as("someone-else")), Code.NotFound);
    });

    if (kind === "fake")
      it("without the hint, a missing row is looked up in the known activities; Pay while CREATING is refused", async () => {
        // Only the fake can hold a reservation whose intent is not on the stream yet.
        const act = "s-get-nohint";
        await core.warm(act, { totalStock: 10 });
        await publishActivity(etcd, act, { totalStock: 10 });
        await pollUntil(async () => (await redis.exists(`{act:${act}}:orders`)) === 1, {
          timeoutMs: 5000,
          message: "the consumer group",
          intervalMs: 25,
        });
        const intent = makeIntent(act, { userId: "getter" });
        await reserve(redis, intent, { append: false });
        const noHint = await client.getOrder({ orderId: intent.orderId }, as("getter"));
        assert.equal(noHint.order?.status, OrderStatus.CREATING);
        assert.equal(noHint.order?.unitPriceCents, 1999n, "price from the activity definition");
        await expectCode(
          client.pay({ orderId: intent.orderId, paymentId: "early" }, as("getter")),
          Code.FailedPrecondition,
          /still being created/,
        );
        await expectCode(
          client.pay({ orderId: intent.orderId, paymentId: "early" }, as("someone-else")),
          Code.NotFound,
        );
        await redis.xadd(`{act:${act}}:orders`, "*", ...intentFields(intent));
        await pollUntil(async () => (await rowCount(db, act)) === 1, {
          timeoutMs: 10_000,
          message: "the row",
          intervalMs: 25,
        });
        const paid = await client.pay({ orderId: intent.orderId, paymentId: "now" }, as("getter"));
        assert.equal(paid.order?.status, OrderStatus.PAID);
      });

    it("ListMyOrders: the caller's orders newest first, paged with an opaque token, filtered by activity", async () => {
      const acts = [`s-list-a-${kind}`, `s-list-b-${kind}`];
      for (const act of acts) {
        await core.warm(act, { totalStock: 200, perUserLimit: 200 });
        await publishActivity(etcd, act, { totalStock: 200, perUserLimit: 200 });
      }
      for (let i = 0; i < 130; i++) await core.reserve(acts[i % 2]!, [{ userId: "lister" }]);
      await core.reserve(
        acts[0]!,
        Array.from({ length: 5 }, () => ({ userId: "not-lister" })),
      );
      await pollUntil(
        async () => (await rowCount(db, acts[0]!)) + (await rowCount(db, acts[1]!)) === 135,
        { timeoutMs: 20_000, message: "rows", intervalMs: 25 },
      );
      const expected = await db
        .selectFrom("orders")
        .select("id")
        .where("user_id", "=", "lister")
        .where("activity_id", "in", acts)
        .orderBy("created_at", "desc")
        .orderBy("id", "desc")
        .execute();
      assert.equal(expected.length, 130);
      const seen: Order[] = [];
      let token = "";
      let pages = 0;
      do {
        const page = await client.listMyOrders({ pageSize: 50, pageToken: token }, as("lister"));
        seen.push(...page.orders);
        token = page.nextPageToken;
        pages++;
      } while (token);
      assert.equal(pages, 3);
      assert.deepEqual(
        seen.map((o) => o.id),
        expected.map((r) => r.id),
        "all mine, newest first, no repeats, no gaps",
      );
      for (let i = 1; i < seen.length; i++)
        assert.ok(timestampMs(seen[i - 1]!.createdAt!) >= timestampMs(seen[i]!.createdAt!));
      const onlyB = await client.listMyOrders(
        { activityId: acts[1]!, pageSize: 100 },
        as("lister"),
      );
      assert.equal(onlyB.orders.length, 65);
      assert.ok(onlyB.orders.every((o) => o.activityId === acts[1]));
      const clamped = await client.listMyOrders({ pageSize: 1000 }, as("lister"));
      assert.equal(clamped.orders.length, 100, "page_size above 100 is clamped to 100");
      const defaulted = await client.listMyOrders({}, as("lister"));
      assert.equal(defaulted.orders.length, 20);
      await expectCode(
        client.listMyOrders(
          { pageToken: defaulted.nextPageToken, activityId: acts[0]! },
          as("lister"),
        ),
        Code.InvalidArgument,
        /another activity_id/,
      );
    });

    it("bad input gets clear errors and changes nothing", async () => {
      const [intent] = await sale("s-bad", 1, { user: () => "owner" });
      const id = intent!.orderId;
      const before = await row(id);
      const unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
      await expectCode(client.getOrder({ orderId: unknown }, as("owner")), Code.NotFound);
      await expectCode(
        client.getOrder({ orderId: unknown, activityId: "s-bad" }, as("owner")),
        Code.NotFound,
      );
      await expectCode(
        client.pay({ orderId: unknown, paymentId: "p" }, as("owner")),
        Code.NotFound,
      );
      await expectCode(client.cancel({ orderId: unknown }, as("owner")), Code.NotFound);
      // Someone else's order: NOT_FOUND, exactly like an unknown one (existence is not revealed).
      const other = (
        await expectCode(client.getOrder({ orderId: id }, as("intruder")), Code.NotFound)
      ).message;
      assert.equal(
        other,
        (
          await expectCode(client.getOrder({ orderId: unknown }, as("intruder")), Code.NotFound)
        ).message.replace(unknown, id),
      );
      await expectCode(client.pay({ orderId: id, paymentId: "p" }, as("intruder")), Code.NotFound);
      await expectCode(client.cancel({ orderId: id }, as("intruder")), Code.NotFound);
      // No identity at all.
      await expectCode(client.getOrder({ orderId: id }), Code.Unauthenticated);
      await expectCode(client.pay({ orderId: id, paymentId: "p" }), Code.Unauthenticated);
      await expectCode(client.cancel({ orderId: id }), Code.Unauthenticated);
      await expectCode(client.listMyOrders({}), Code.Unauthenticated);
      await expectCode(
        (async () => {
          for await (const _ of client.watchOrder({ orderId: id })) {
          }
        })(),
        Code.Unauthenticated,
      );
      // Malformed arguments.
      await expectCode(
        client.getOrder({ orderId: "" }, as("owner")),
        Code.InvalidArgument,
        /order_id is required/,
      );
      await expectCode(
        client.getOrder({ orderId: "x".repeat(27) }, as("owner")),
        Code.InvalidArgument,
      );
      await expectCode(
        client.getOrder({ orderId: "abc'; drop" }, as("owner")),
        Code.InvalidArgument,
      );
      await expectCode(
        client.pay({ orderId: id, paymentId: "" }, as("owner")),
        Code.InvalidArgument,
        /payment_id is required/,
      );
      await expectCode(
        client.pay({ orderId: id, paymentId: "p".repeat(129) }, as("owner")),
        Code.InvalidArgument,
      );
      await expectCode(
        client.cancel({ orderId: id, reason: "r".repeat(256) }, as("owner")),
        Code.InvalidArgument,
      );
      await expectCode(client.listMyOrders({ pageSize: -1 }, as("owner")), Code.InvalidArgument);
      await expectCode(
        client.listMyOrders({ pageToken: "garbage!" }, as("owner")),
        Code.InvalidArgument,
        /page_token/,
      );
      await expectCode(
        client.listMyOrders(
          { pageToken: Buffer.from('{"v":1,"c":"x"}').toString("base64url") },
          as("owner"),
        ),
        Code.InvalidArgument,
      );
      assert.deepEqual(await row(id), before, "nothing changed");
      assert.equal(core.releaseCalls.get(id), undefined);
      assert.equal(core.confirmCalls.get(id), undefined);
    });

    it("WatchOrder pushes CREATING → PENDING_PAYMENT → PAID as they happen (re-read disabled) and ends", async () => {
      const act = `s-watch-${kind}`;
      await core.warm(act, { totalStock: 5 });
      const [r] = await core.reserve(act, [{ userId: "watcher" }]);
      const id = r!.orderId;
      const seen: { status: OrderStatus; at: number }[] = [];
      const started = Date.now();
      const watching = (async () => {
        for await (const res of client.watchOrder(
          { orderId: id, activityId: act },
          { ...as("watcher"), timeoutMs: 30_000 },
        ))
          seen.push({ status: res.order!.status, at: Date.now() - started });
      })();
      await pollUntil(() => seen.length === 1, {
        timeoutMs: 5000,
        message: "the current state",
        intervalMs: 25,
      });
      assert.equal(seen[0]!.status, OrderStatus.CREATING);
      // Publishing the activity lets order consume its stream: the row appears and is announced.
      await publishActivity(etcd, act, { totalStock: 5 });
      await pollUntil(() => seen.length === 2, {
        timeoutMs: 10_000,
        message: "PENDING_PAYMENT pushed",
        intervalMs: 25,
      });
      assert.equal(seen[1]!.status, OrderStatus.PENDING_PAYMENT);
      await client.pay({ orderId: id, paymentId: "watch-pay" }, as("watcher"));
      await watching; // the server ends the stream after the final state
      assert.deepEqual(
        seen.map((s) => OrderStatus[s.status]),
        ["CREATING", "PENDING_PAYMENT", "PAID"],
      );
      // WATCH_POLL_MS is 60 s here: every change arrived by pub/sub, not by the re-read.
      assert.ok(seen[2]!.at < 20_000);
      console.log(
        `  watch saw ${seen.map((s) => `${OrderStatus[s.status]}@${s.at}ms`).join(" → ")}`,
      );
      assert.equal((await pending(redis, act)).count, 0);
    });
  });
}
