/**
 * AdminService on real servers: MariaDB (catalogue, blacklist, and order's
 * `orders` table made by order's own migrations), Redis, etcd, and a real
 * seckill-core started as its own process (the test kit's startAsProcess)
 * that admin reaches through its mesh. Nothing is faked.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, createClient } from "@connectrpc/connect";
import { Redis } from "ioredis";
import type { Kysely } from "kysely";
import { AdminService, BlacklistKind, MismatchKind } from "../../gen/seckill/admin/v1/admin_pb.ts";
import { ActivityStatus, BuyResult } from "../../gen/seckill/common/v1/common_pb.ts";
import { SeckillCoreService } from "../../gen/seckill/core/v1/core_pb.ts";
import { type OrderDatabase, orderMigrations } from "../../order/src/testing.ts";
import { activityKeys, blacklistKey } from "../../shared/src/data-plane/keys.ts";
import { loadConfig } from "../../shared/src/runtime/config.ts";
import { createLogger } from "../../shared/src/runtime/log.ts";
import { metricsRegistry } from "../../shared/src/runtime/metrics.ts";
import { type RunningService, startService } from "../../shared/src/runtime/server.ts";
import {
  ActivityCatalog,
  activityKey,
  decodeActivity,
  encodeActivity,
} from "../../shared/src/sale/activities.ts";
import { BlacklistCache } from "../../shared/src/sale/blacklist.ts";
import {
  type EtcdServer,
  type MariaDbServer,
  type RedisServer,
  startEtcd,
  startMariaDb,
  startRedis,
} from "../../shared/src/stack/index.ts";
import { createEtcd, type Etcd3 } from "../../shared/src/stores/etcd.ts";
import { createDb, migrate } from "../../shared/src/stores/mysql.ts";
import {
  expectCode,
  metricValue,
  type ProcessService,
  pollUntil,
  serviceEnv,
  startAsProcess,
} from "../../shared/src/testing/index.ts";
import {
  type ServiceProcess,
  startServiceProcess,
} from "../../shared/src/testing/service-process.ts";
import { createGrpcTransport, type GrpcTransport } from "../../shared/src/transport/grpc-client.ts";
import { identityHeaders } from "../../shared/src/transport/identity.ts";
import { adminConfigSchema } from "./config.ts";
import type { AdminDatabase } from "./schema.ts";
import { type AdminInternals, adminService } from "./service.ts";

const LOG_LEVEL = process.env.ADMIN_TEST_LOG_LEVEL ?? "silent";
const log = createLogger("admin-test", LOG_LEVEL);
const MINUTE = 60_000;
const HOUR = 3_600_000;

const ADMIN = { headers: identityHeaders({ userId: "admin-1", role: "admin", ip: undefined }) };
const USER = { headers: identityHeaders({ userId: "user-1", role: "user", ip: undefined }) };

describe("admin service", { timeout: 180_000 }, () => {
  let mariadb: MariaDbServer;
  let redisServer: RedisServer;
  let etcdServer: EtcdServer;
  let redis: Redis;
  let etcd: Etcd3;
  let db: Kysely<AdminDatabase>;
  /** The same database as order sees it (the test plays order's consumer). */
  let odb: Kysely<OrderDatabase>;
  let core: ProcessService;
  let adminSvc: RunningService;
  let internals: AdminInternals;
  const transports: GrpcTransport[] = [];
  let admin: Client<typeof AdminService>;
  let coreClient: Client<typeof SeckillCoreService>;
  let cores = 0;
  let rq = 0;
  const rid = () => `rq-${++rq}`;

  before(async () => {
    [mariadb, redisServer, etcdServer] = await Promise.all([
      startMariaDb(),
      startRedis(),
      startEtcd(),
    ]);
    redis = new Redis(redisServer.url);
    etcd = createEtcd(etcdServer.endpoints);
    db = createDb(mariadb.uri);
    odb = db as unknown as Kysely<OrderDatabase>;
    // order owns `orders`: its own migrations make the table admin reads.
    await migrate(db as unknown as Kysely<unknown>, "order", orderMigrations, log);

    await startCore();
    adminSvc = await startService(
      adminService(
        loadConfig(adminConfigSchema, {
          MYSQL_URI: mariadb.uri,
          REDIS_URL: redisServer.url,
          ETCD_ENDPOINTS: etcdServer.endpoints.join(","),
          INSTANCE_ID: "admin-test",
          LOG_LEVEL,
          SHUTDOWN_DELAY_MS: "0",
          SELF_HEAL_INTERVAL_MS: "1000",
        }),
        (i) => {
          internals = i;
        },
      ),
    );
    const adminTransport = createGrpcTransport({ address: `127.0.0.1:${adminSvc.port}` });
    transports.push(adminTransport);
    admin = createClient(AdminService, adminTransport);
  });

  /** A real seckill-core as its own process, registered in etcd, where admin's mesh finds it. */
  async function startCore() {
    core = await startAsProcess(
      "seckill-core",
      serviceEnv(
        { etcd: etcdServer, redis: redisServer },
        { INSTANCE_ID: `core-for-admin-test-${++cores}`, LOG_LEVEL },
      ),
    );
    coreClient = core.client(SeckillCoreService);
  }

  after(async () => {
    for (const t of transports) t.close();
    await adminSvc?.shutdown("test done");
    await core?.stop();
    redis?.disconnect();
    etcd?.close();
    await db?.destroy();
    await Promise.all([mariadb?.stop(), redisServer?.stop(), etcdServer?.stop()]);
  });

  async function product(name = "Phone", priceCents = 49_900n) {
    const { product } = await admin.createProduct(
      { name, description: "a phone", imageUrl: "/img/p.png", priceCents, currency: "USD" },
      ADMIN,
    );
    return product!;
  }

  interface SaleOptions {
    totalStock?: number;
    perUserLimit?: number;
    startMs?: number;
    endMs?: number;
    title?: string;
  }

  async function draft(o: SaleOptions = {}) {
    const p = await product();
    const now = Date.now();
    const { activity } = await admin.createActivity(
      {
        productId: p.id,
        title: o.title ?? "Flash sale",
        totalStock: BigInt(o.totalStock ?? 10),
        perUserLimit: o.perUserLimit ?? 2,
        startTime: timestampFromMs(o.startMs ?? now - MINUTE),
        endTime: timestampFromMs(o.endMs ?? now + HOUR),
      },
      ADMIN,
    );
    return activity!;
  }

  async function published(o: SaleOptions = {}) {
    const a = await draft(o);
    const { activity } = await admin.publishActivity({ activityId: a.id }, ADMIN);
    return activity!;
  }

  async function inEtcd(id: string) {
    const json = await etcd.get(activityKey(id)).string();
    return json === null ? undefined : decodeActivity(json);
  }

  async function reserve(activityId: string, userId: string, quantity = 1) {
    const { outcomes } = await coreClient.reserve({
      items: [{ activityId, userId, quantity, requestId: rid() }],
    });
    return outcomes[0]!;
  }

  /** What order's consumer does: read the intents, insert the rows, then XACK. */
  async function consume(activityId: string): Promise<string[]> {
    const key = activityKeys(activityId).orders;
    const read = (await redis.xreadgroup(
      "GROUP",
      "order",
      "admin-test-consumer",
      "COUNT",
      1000,
      "STREAMS",
      key,
      ">",
    )) as [string, [string, string[]][]][] | null;
    const ids: string[] = [];
    for (const [streamId, flat] of read?.[0]?.[1] ?? []) {
      const f = new Map<string, string>();
      for (let i = 0; i + 1 < flat.length; i += 2) f.set(flat[i]!, flat[i + 1]!);
      const qty = Number(f.get("qty"));
      const price = Number(f.get("price"));
      await odb
        .insertInto("orders")
        .values({
          id: f.get("oid")!,
          activity_id: f.get("act")!,
          product_id: f.get("pid")!,
          user_id: f.get("uid")!,
          quantity: qty,
          unit_price_cents: price,
          amount_cents: price * qty,
          currency: f.get("cur")!,
          status: "PENDING_PAYMENT",
          request_id: f.get("rid")!,
          created_at: new Date(Number(f.get("ts"))),
          payment_deadline: new Date(Number(f.get("dl"))),
          paid_at: null,
          cancelled_at: null,
          cancel_reason: null,
          payment_id: null,
        })
        .execute();
      await redis.xack(key, "order", streamId);
      ids.push(f.get("oid")!);
    }
    return ids;
  }

  it("creates, reads, lists and updates products, with clear errors for bad input", async () => {
    const a = await product("Alpha", 100n);
    const b = await product("Beta", 200n);
    assert.match(a.id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
    assert.equal((await admin.getProduct({ productId: a.id }, ADMIN)).product?.name, "Alpha");

    const first = await admin.listProducts({ pageSize: 1 }, ADMIN);
    assert.equal(first.products[0]?.id, b.id, "newest first");
    assert.ok(first.nextPageToken);
    const second = await admin.listProducts({ pageSize: 1, pageToken: first.nextPageToken }, ADMIN);
    assert.equal(second.products[0]?.id, a.id);

    const updated = await admin.updateProduct({ productId: a.id, name: "Alpha 2" }, ADMIN);
    assert.equal(updated.product?.name, "Alpha 2");
    assert.equal(updated.product?.priceCents, 100n, "unset fields keep their value");

    await expectCode(admin.getProduct({ productId: "01NOPE" }, ADMIN), Code.NotFound, /not found/);
    await expectCode(admin.getProduct({ productId: "" }, ADMIN), Code.InvalidArgument, /required/);
    await expectCode(
      admin.createProduct({ name: "", priceCents: 1n, currency: "USD" }, ADMIN),
      Code.InvalidArgument,
      /name is required/,
    );
    await expectCode(
      admin.createProduct({ name: "x", priceCents: -1n, currency: "USD" }, ADMIN),
      Code.InvalidArgument,
      /price_cents must be >= 0/,
    );
    await expectCode(
      admin.updateProduct({ productId: a.id, currency: "dollars" }, ADMIN),
      Code.InvalidArgument,
      /ISO 4217/,
    );
    await expectCode(
      admin.listProducts({ pageToken: "forged" }, ADMIN),
      Code.InvalidArgument,
      /page_token/,
    );
  });

  it("creates activities in DRAFT with the product's price, validates, updates drafts, lists by status", async () => {
    const p = await product("Gamma", 1234n);
    const now = Date.now();
    const base = {
      productId: p.id,
      title: "Gamma sale",
      totalStock: 5n,
      perUserLimit: 1,
      startTime: timestampFromMs(now + HOUR),
      endTime: timestampFromMs(now + 2 * HOUR),
    };
    const { activity } = await admin.createActivity(base, ADMIN);
    assert.equal(activity?.status, ActivityStatus.DRAFT);
    assert.equal(activity?.revision, 1n);
    assert.equal(activity?.priceCents, 1234n, "price 0 means the product's price");
    assert.equal(activity?.currency, "USD");
    assert.equal(activity?.paymentTimeoutSeconds, 900, "0 means the default");
    assert.equal(activity?.productName, "Gamma");

    const cases: [Partial<typeof base> & Record<string, unknown>, Code, RegExp][] = [
      [{ title: " " }, Code.InvalidArgument, /title is required/],
      [{ totalStock: 0n }, Code.InvalidArgument, /total_stock must be > 0/],
      [{ perUserLimit: 0 }, Code.InvalidArgument, /per_user_limit must be >= 1/],
      [
        { endTime: timestampFromMs(now + HOUR) },
        Code.InvalidArgument,
        /end_time .* must be after start_time/,
      ],
      [{ startTime: undefined }, Code.InvalidArgument, /start_time is required/],
      [
        { startTime: timestampFromMs(now - 2 * HOUR), endTime: timestampFromMs(now - HOUR) },
        Code.InvalidArgument,
        /in the past/,
      ],
      [{ paymentTimeoutSeconds: 1 }, Code.InvalidArgument, /payment_timeout_seconds must be/],
      [{ productId: "01UNKNOWNPRODUCT" }, Code.NotFound, /product .* not found/],
    ];
    for (const [change, code, message] of cases)
      await expectCode(admin.createActivity({ ...base, ...change }, ADMIN), code, message);

    const id = activity!.id;
    const u = await admin.updateActivity(
      { activityId: id, totalStock: 7n, title: "Gamma sale!", priceCents: 999n },
      ADMIN,
    );
    assert.deepEqual(
      [u.activity?.totalStock, u.activity?.title, u.activity?.priceCents, u.activity?.revision],
      [7n, "Gamma sale!", 999n, 2n],
    );
    const same = await admin.updateActivity({ activityId: id, title: "Gamma sale!" }, ADMIN);
    assert.equal(same.activity?.revision, 2n, "no change, no new revision");
    await expectCode(
      admin.updateActivity({ activityId: id, endTime: timestampFromMs(now) }, ADMIN),
      Code.InvalidArgument,
      /must be after start_time/,
    );
    await expectCode(admin.updateActivity({ activityId: "01NOPE" }, ADMIN), Code.NotFound);
    assert.equal(await inEtcd(id), undefined, "a draft never reaches etcd");

    const drafts = await admin.listActivities({ status: ActivityStatus.DRAFT }, ADMIN);
    assert.ok(drafts.activities.some((a) => a.id === id));
    assert.ok(drafts.activities.every((a) => a.status === ActivityStatus.DRAFT));
    await expectCode(
      admin.listActivities({ status: ActivityStatus.LIVE }, ADMIN),
      Code.InvalidArgument,
      /stored status/,
    );
  });

  it("publishes: MySQL, then core's stock, then etcd; idempotent; refuses ended ones", async () => {
    const d = await draft({ totalStock: 25, perUserLimit: 3 });
    const { activity } = await admin.publishActivity({ activityId: d.id }, ADMIN);
    assert.equal(activity?.status, ActivityStatus.LIVE, "published and inside its window");
    assert.equal(activity?.revision, 2n);

    const stored = await inEtcd(d.id);
    assert.ok(stored, "written to etcd");
    assert.equal(stored.status, ActivityStatus.PUBLISHED, "etcd holds the stored status");
    assert.deepEqual(
      [stored.revision, stored.totalStock, stored.perUserLimit, stored.productName],
      [2n, 25n, 3, "Phone"],
    );
    const stock = await coreClient.getStock({ activityId: d.id });
    assert.deepEqual(
      [stock.total, stock.remaining, stock.reserved, stock.paid],
      [25n, 25n, 0n, 0n],
    );

    const again = await admin.publishActivity({ activityId: d.id }, ADMIN);
    assert.equal(again.activity?.revision, 2n, "publishing again changes nothing");
    assert.equal((await coreClient.getStock({ activityId: d.id })).remaining, 25n);

    // A future window reads PUBLISHED; the derived status answers Get and List.
    const later = await published({ startMs: Date.now() + HOUR, endMs: Date.now() + 2 * HOUR });
    assert.equal(later.status, ActivityStatus.PUBLISHED);
    const got = await admin.getActivity({ activityId: d.id }, ADMIN);
    assert.equal(got.activity?.status, ActivityStatus.LIVE);

    await expectCode(
      admin.updateActivity({ activityId: d.id, totalStock: 30n }, ADMIN),
      Code.FailedPrecondition,
      /total_stock can only change while the activity is a DRAFT/,
    );
    await expectCode(
      admin.updateActivity({ activityId: d.id, priceCents: 1n }, ADMIN),
      Code.FailedPrecondition,
      /price_cents can only change/,
    );
    await expectCode(admin.publishActivity({ activityId: "01NOPE" }, ADMIN), Code.NotFound);

    // The product's name is denormalized into published activities: renaming pushes a new revision.
    await admin.updateProduct({ productId: d.productId, name: "Phone X" }, ADMIN);
    const renamed = await inEtcd(d.id);
    assert.deepEqual([renamed?.productName, renamed?.revision], ["Phone X", 3n]);
    assert.equal(await redis.hget(activityKeys(d.id).meta, "revision"), "3");
  });

  it("changes the limit of a published activity: new revision in etcd, enforced by core at once", async () => {
    const a = await published({ totalStock: 20, perUserLimit: 3 });
    const catalog = new ActivityCatalog(createEtcd(etcdServer.endpoints), log);
    await catalog.start();
    try {
      assert.equal((await reserve(a.id, "buyer-1", 1)).result, BuyResult.RESERVED);
      const t0 = performance.now();
      const { activity } = await admin.updateActivity(
        { activityId: a.id, perUserLimit: 1, title: "Now one each" },
        ADMIN,
      );
      const rpcMs = performance.now() - t0;
      assert.equal(activity?.revision, a.revision + 1n);
      assert.equal(activity?.perUserLimit, 1);
      const stored = await inEtcd(a.id);
      assert.deepEqual([stored?.revision, stored?.perUserLimit], [a.revision + 1n, 1]);

      // Core got the definition by WarmUp before the RPC answered.
      const refusedNow = await reserve(a.id, "buyer-1", 1);
      assert.equal(refusedNow.result, BuyResult.LIMIT_REACHED);
      assert.equal((await reserve(a.id, "buyer-2", 1)).result, BuyResult.RESERVED);
      assert.equal((await reserve(a.id, "buyer-2", 1)).result, BuyResult.LIMIT_REACHED);
      const seenMs = await pollUntil(
        () => {
          return catalog.get(a.id)?.revision === a.revision + 1n;
        },
        { timeoutMs: 5000, message: "catalog sees the new revision" },
      );
      console.log(
        `limit change: UpdateActivity took ${rpcMs.toFixed(1)} ms; a watching ActivityCatalog had it ${seenMs.toFixed(1)} ms after the answer`,
      );

      // A later end time is pushed the same way; a past one is refused.
      const endMs = Date.now() + 3 * HOUR;
      await admin.updateActivity({ activityId: a.id, endTime: timestampFromMs(endMs) }, ADMIN);
      assert.equal(timestampMs((await inEtcd(a.id))!.endTime!), endMs);
      assert.equal((await redis.hget(activityKeys(a.id).meta, "end_ms")) ?? "", String(endMs));
      await expectCode(
        admin.updateActivity(
          { activityId: a.id, endTime: timestampFromMs(Date.now() - 1000) },
          ADMIN,
        ),
        Code.InvalidArgument,
        /use EndActivity/,
      );
    } finally {
      await catalog.close();
    }
  });

  it("ends a sale early: ENDED in MySQL, etcd and core; idempotent; no later change", async () => {
    const a = await published({ totalStock: 5 });
    assert.equal((await reserve(a.id, "early", 1)).result, BuyResult.RESERVED);
    const { activity } = await admin.endActivity({ activityId: a.id, reason: "fraud" }, ADMIN);
    assert.equal(activity?.status, ActivityStatus.ENDED);
    assert.equal(activity?.revision, a.revision + 1n);
    assert.ok(timestampMs(activity!.endTime!) <= Date.now());

    assert.equal((await reserve(a.id, "late", 1)).result, BuyResult.ENDED);
    const stored = await inEtcd(a.id);
    assert.deepEqual([stored?.status, stored?.revision], [ActivityStatus.ENDED, a.revision + 1n]);

    const again = await admin.endActivity({ activityId: a.id }, ADMIN);
    assert.equal(again.activity?.revision, a.revision + 1n, "ending again changes nothing");
    await expectCode(
      admin.updateActivity({ activityId: a.id, perUserLimit: 5 }, ADMIN),
      Code.FailedPrecondition,
      /has ended/,
    );
    await expectCode(
      admin.publishActivity({ activityId: a.id }, ADMIN),
      Code.FailedPrecondition,
      /has ended/,
    );

    // A draft can be ended too; it never reaches etcd or core.
    const d = await draft();
    const ended = await admin.endActivity({ activityId: d.id, reason: "cancelled" }, ADMIN);
    assert.equal(ended.activity?.status, ActivityStatus.ENDED);
    assert.equal(await inEtcd(d.id), undefined);
    await expectCode(coreClient.getStock({ activityId: d.id }), Code.NotFound);
  });

  it("refuses callers without identity (UNAUTHENTICATED) and non-admins (PERMISSION_DENIED), changing nothing", async () => {
    const a = await draft();
    const count = async () => ({
      products: (await db.selectFrom("products").select("id").execute()).length,
      activities: await db.selectFrom("activities").selectAll().orderBy("id").execute(),
      blacklist: (await db.selectFrom("blacklist_entries").select("value").execute()).length,
      etcd: Object.keys(await etcd.getAll().prefix("/seckill/activities/").strings()).length,
      mirror: await redis.hgetall(blacklistKey("user")),
    });
    const before = await count();
    const calls: [string, (opts?: typeof ADMIN) => Promise<unknown>][] = [
      [
        "CreateProduct",
        (o) => admin.createProduct({ name: "x", priceCents: 1n, currency: "USD" }, o),
      ],
      ["UpdateProduct", (o) => admin.updateProduct({ productId: a.productId, name: "y" }, o)],
      ["GetProduct", (o) => admin.getProduct({ productId: a.productId }, o)],
      ["ListProducts", (o) => admin.listProducts({}, o)],
      [
        "CreateActivity",
        (o) =>
          admin.createActivity(
            {
              productId: a.productId,
              title: "t",
              totalStock: 1n,
              perUserLimit: 1,
              startTime: timestampFromMs(Date.now()),
              endTime: timestampFromMs(Date.now() + HOUR),
            },
            o,
          ),
      ],
      ["UpdateActivity", (o) => admin.updateActivity({ activityId: a.id, perUserLimit: 9 }, o)],
      ["GetActivity", (o) => admin.getActivity({ activityId: a.id }, o)],
      ["ListActivities", (o) => admin.listActivities({}, o)],
      ["PublishActivity", (o) => admin.publishActivity({ activityId: a.id }, o)],
      ["EndActivity", (o) => admin.endActivity({ activityId: a.id }, o)],
      [
        "AddBlacklistEntry",
        (o) => admin.addBlacklistEntry({ kind: BlacklistKind.USER, value: "victim" }, o),
      ],
      [
        "RemoveBlacklistEntry",
        (o) => admin.removeBlacklistEntry({ kind: BlacklistKind.USER, value: "victim" }, o),
      ],
      ["ListBlacklist", (o) => admin.listBlacklist({}, o)],
      ["GetStats", (o) => admin.getStats({ activityId: a.id }, o)],
      ["Reconcile", (o) => admin.reconcile({}, o)],
    ];
    for (const [name, call] of calls) {
      const anonymous = await expectCode(call(undefined), Code.Unauthenticated);
      assert.match(anonymous.rawMessage, /authentication required/, name);
      const user = await expectCode(call(USER), Code.PermissionDenied);
      assert.match(user.rawMessage, /admin role required/, name);
    }
    assert.deepEqual(await count(), before, "nothing changed");
  });

  it("blacklist: add and remove reach a BlacklistCache within a second; list; the mirror self-heals", async () => {
    const reader = new Redis(redisServer.url);
    const subscriber = new Redis(redisServer.url);
    const cache = new BlacklistCache(reader, subscriber, log, 60_000); // only pub/sub is fast
    await cache.start();
    try {
      const t0 = performance.now();
      const { entry } = await admin.addBlacklistEntry(
        { kind: BlacklistKind.USER, value: "mallory", reason: "bot" },
        ADMIN,
      );
      assert.deepEqual(
        [entry?.value, entry?.reason, entry?.expiresAt],
        ["mallory", "bot", undefined],
      );
      const addMs = await pollUntil(() => cache.isBlocked("user", "mallory"), {
        timeoutMs: 1000,
        message: "blocked",
      });
      await admin.addBlacklistEntry(
        {
          kind: BlacklistKind.IP,
          value: "::ffff:10.9.8.7",
          reason: "abuse",
          expiresAt: timestampFromMs(Date.now() + HOUR),
        },
        ADMIN,
      );
      await pollUntil(() => cache.isBlocked("ip", "10.9.8.7"), {
        timeoutMs: 1000,
        message: "ip blocked",
      });
      console.log(
        `blacklist: blocked in a BlacklistCache ${addMs.toFixed(1)} ms after AddBlacklistEntry answered (${(performance.now() - t0).toFixed(1)} ms with the call)`,
      );

      const all = await admin.listBlacklist({}, ADMIN);
      assert.deepEqual(
        all.entries.map((e) => [BlacklistKind[e.kind], e.value]),
        [
          ["IP", "10.9.8.7"],
          ["USER", "mallory"],
        ],
        "ordered by kind, then value",
      );
      const ips = await admin.listBlacklist({ kind: BlacklistKind.IP }, ADMIN);
      assert.deepEqual(
        ips.entries.map((e) => e.value),
        ["10.9.8.7"],
      );

      // Redis loses the mirror: the self-heal loop (every second here) writes it back.
      await redis.del(blacklistKey("user"), blacklistKey("ip"));
      await cache.reload();
      assert.equal(cache.isBlocked("user", "mallory"), false);
      const healMs = await pollUntil(() => cache.isBlocked("user", "mallory"), {
        timeoutMs: 10_000,
        message: "mirror repaired",
      });
      console.log(
        `blacklist: mirror rebuilt from MySQL ${healMs.toFixed(0)} ms after Redis lost it`,
      );

      const removed = await admin.removeBlacklistEntry(
        { kind: BlacklistKind.USER, value: "mallory" },
        ADMIN,
      );
      assert.equal(removed.removed, true);
      await pollUntil(() => !cache.isBlocked("user", "mallory"), {
        timeoutMs: 1000,
        message: "unblocked",
      });
      const twice = await admin.removeBlacklistEntry(
        { kind: BlacklistKind.USER, value: "mallory" },
        ADMIN,
      );
      assert.equal(twice.removed, false, "idempotent");

      await expectCode(
        admin.addBlacklistEntry({ kind: BlacklistKind.UNSPECIFIED, value: "x" }, ADMIN),
        Code.InvalidArgument,
        /kind must be/,
      );
      await expectCode(
        admin.addBlacklistEntry({ kind: BlacklistKind.IP, value: "300.1.1.1" }, ADMIN),
        Code.InvalidArgument,
        /not an IPv4 or IPv6/,
      );
      await expectCode(
        admin.addBlacklistEntry(
          { kind: BlacklistKind.USER, value: "u", expiresAt: timestampFromMs(Date.now() - 1000) },
          ADMIN,
        ),
        Code.InvalidArgument,
        /in the past/,
      );
    } finally {
      await cache.stop();
      reader.disconnect();
      subscriber.disconnect();
    }
  });

  it("self-heals etcd: a lost or stale activity entry is written again", async () => {
    const a = await published();
    await etcd.delete().key(activityKey(a.id));
    const lostMs = await pollUntil(async () => (await inEtcd(a.id)) !== undefined, {
      timeoutMs: 10_000,
      message: "rewritten",
    });
    assert.equal((await inEtcd(a.id))?.revision, a.revision);

    const stale = { ...(await inEtcd(a.id))! };
    await admin.updateActivity({ activityId: a.id, title: "renamed" }, ADMIN);
    // Put back the old revision, as an etcd restored from an old backup would have it.
    await etcd.put(activityKey(a.id)).value(encodeActivity(stale));
    const staleMs = await pollUntil(
      async () => (await inEtcd(a.id))?.revision === a.revision + 1n,
      { timeoutMs: 10_000, message: "stale entry replaced" },
    );
    assert.equal((await inEtcd(a.id))?.title, "renamed");
    const report = await internals.selfHeal.runOnce();
    assert.deepEqual(report.failed, []);
    console.log(
      `self-heal: deleted entry back after ${lostMs.toFixed(0)} ms, stale one after ${staleMs.toFixed(0)} ms (interval 1 s)`,
    );
  });

  it("GetStats: counters from core, order counts from MySQL, buy rate", async () => {
    const a = await published({ totalStock: 10, perUserLimit: 2 });
    for (const u of ["s1", "s2", "s3"]) await reserve(a.id, u, 1);
    await consume(a.id);
    const stats = await admin.getStats({ activityId: a.id }, ADMIN);
    assert.deepEqual(
      [stats.total, stats.remaining, stats.reserved, stats.paid, stats.orders, stats.cancelled],
      [10n, 7n, 3n, 0n, 3n, 0n],
    );
    assert.equal(stats.soldOut, false);
    assert.equal(stats.status, ActivityStatus.LIVE);
    for (const u of ["s4", "s5"]) await reserve(a.id, u, 1);
    const next = await admin.getStats({ activityId: a.id }, ADMIN);
    console.log(
      `stats: buy rate ${stats.buyRatePerSecond.toFixed(2)}/s, then ${next.buyRatePerSecond.toFixed(2)}/s after 2 more reservations`,
    );
    assert.ok(next.buyRatePerSecond > 0, "reservations since the last sample make a rate");

    const d = await draft({ totalStock: 4 });
    const draftStats = await admin.getStats({ activityId: d.id }, ADMIN);
    assert.deepEqual(
      [draftStats.total, draftStats.remaining, draftStats.status],
      [4n, 4n, ActivityStatus.DRAFT],
    );
    await expectCode(admin.getStats({ activityId: "01NOPE" }, ADMIN), Code.NotFound);
  });

  it("Reconcile: zero mismatches on a consistent sale, and every mismatch a test introduces", async () => {
    const a = await published({ totalStock: 10, perUserLimit: 2 });
    const k = activityKeys(a.id);
    const r1 = await reserve(a.id, "r1", 2);
    const r2 = await reserve(a.id, "r2", 1);
    const r3 = await reserve(a.id, "r3", 1);
    const r4 = await reserve(a.id, "r4", 1);
    assert.ok([r1, r2, r3, r4].every((r) => r.result === BuyResult.RESERVED));
    assert.equal((await consume(a.id)).length, 4);
    // r2 pays, r3 is cancelled: MySQL first, then core, then stock_settled (as order does it).
    await odb
      .updateTable("orders")
      .set({ status: "PAID", paid_at: new Date(), payment_id: "pay-r2" })
      .where("id", "=", r2.orderId)
      .execute();
    assert.equal(
      (await coreClient.confirmPayment({ activityId: a.id, reservationId: r2.orderId })).confirmed,
      true,
    );
    await odb
      .updateTable("orders")
      .set({ stock_settled: 1 })
      .where("id", "=", r2.orderId)
      .execute();
    await odb
      .updateTable("orders")
      .set({ status: "CANCELLED", cancelled_at: new Date(), cancel_reason: "user" })
      .where("id", "=", r3.orderId)
      .execute();
    assert.equal(
      (
        await coreClient.release({
          activityId: a.id,
          reservationId: r3.orderId,
          reason: "user_cancelled",
        })
      ).released,
      true,
    );
    await odb
      .updateTable("orders")
      .set({ stock_settled: 1 })
      .where("id", "=", r3.orderId)
      .execute();
    // And one reservation order has not consumed yet: in flight, not a mismatch.
    assert.equal((await reserve(a.id, "r5", 1)).result, BuyResult.RESERVED);

    const t0 = performance.now();
    const clean = await admin.reconcile({ activityId: a.id }, ADMIN);
    console.log(`reconcile of a consistent sale: ${(performance.now() - t0).toFixed(1)} ms`);
    assert.deepEqual(clean.mismatches, []);
    assert.deepEqual([clean.ok, clean.checkedActivities], [true, 1]);
    assert.equal(
      await metricValue(
        metricsRegistry,
        "seckill_admin_reconcile_mismatches",
        { activity: a.id },
        { required: true },
      ),
      0,
    );
    await consume(a.id);

    // 1. An order row disappears: the reservation is a lost order, and the counters disagree.
    const row = await odb
      .selectFrom("orders")
      .selectAll()
      .where("id", "=", r4.orderId)
      .executeTakeFirstOrThrow();
    await odb.deleteFrom("orders").where("id", "=", r4.orderId).execute();
    const lost = await admin.reconcile({ activityId: a.id }, ADMIN);
    assert.equal(lost.ok, false);
    const missing = lost.mismatches.find((m) => m.kind === MismatchKind.MISSING_ORDER);
    assert.ok(missing, JSON.stringify(lost.mismatches));
    assert.equal(missing.key, r4.orderId);
    assert.match(missing.redisValue, /RESERVED qty=1 user=r4/);
    assert.equal(missing.mysqlValue, "");
    assert.ok(
      lost.mismatches.some(
        (m) => m.kind === MismatchKind.COUNTER && m.key === `${`{act:${a.id}}`}:reserved+paid`,
      ),
    );
    assert.equal(
      await metricValue(
        metricsRegistry,
        "seckill_admin_reconcile_mismatches",
        { activity: a.id },
        { required: true },
      ),
      lost.mismatches.length,
    );
    await odb.insertInto("orders").values(row).execute();
    assert.equal((await admin.reconcile({ activityId: a.id }, ADMIN)).ok, true, "restored");

    // 2. A Redis counter is changed (test-only write of core's key): conservation and counters break.
    await redis.incr(k.paid);
    const counter = await admin.reconcile({ activityId: a.id }, ADMIN);
    const kinds = counter.mismatches.map((m) => `${MismatchKind[m.kind]} ${m.key}`).sort();
    assert.deepEqual(kinds, [
      `CONSERVATION {act:${a.id}}:stock`,
      `COUNTER {act:${a.id}}:paid`,
      `COUNTER {act:${a.id}}:paid`,
      `COUNTER {act:${a.id}}:reserved+paid`,
    ]);
    const conservation = counter.mismatches.find((m) => m.kind === MismatchKind.CONSERVATION)!;
    assert.match(conservation.redisValue, /paid 2/);
    assert.equal(conservation.mysqlValue, "total 10");
    await redis.decr(k.paid);

    // 3. An order's status disagrees with its reservation.
    await odb
      .updateTable("orders")
      .set({ status: "PAID", paid_at: new Date(), stock_settled: 1 })
      .where("id", "=", r1.orderId)
      .execute();
    const status = await admin.reconcile({ activityId: a.id }, ADMIN);
    assert.ok(
      status.mismatches.some((m) => m.kind === MismatchKind.STATUS && m.key === r1.orderId),
      JSON.stringify(status.mismatches),
    );
    await odb
      .updateTable("orders")
      .set({ status: "PENDING_PAYMENT", paid_at: null, stock_settled: 0 })
      .where("id", "=", r1.orderId)
      .execute();

    // Reconcile of everything published: the other tests' sales are included (their
    // reservations were never consumed by an order service, so they are still in flight).
    const everything = await admin.reconcile({}, ADMIN);
    assert.ok(everything.checkedActivities >= 2);
    console.log(
      `reconcile of all ${everything.checkedActivities} published activities: ${everything.mismatches.length} mismatches (${[...new Set(everything.mismatches.map((m) => MismatchKind[m.kind]))].join(", ") || "none"})`,
    );
    assert.equal((await admin.reconcile({ activityId: a.id }, ADMIN)).ok, true);

    const d = await draft();
    await expectCode(
      admin.reconcile({ activityId: d.id }, ADMIN),
      Code.FailedPrecondition,
      /never published/,
    );
  });

  it("publishing while core is down fails UNAVAILABLE with nothing in etcd; the self-heal loop completes it", async () => {
    const d = await draft({ totalStock: 6 });
    await core.stop();
    await expectCode(
      admin.publishActivity({ activityId: d.id }, ADMIN),
      Code.Unavailable,
      /is saved, but the warm-up in seckill-core failed/,
    );
    assert.equal(await inEtcd(d.id), undefined, "no etcd entry while core has no stock");
    await startCore();
    const healMs = await pollUntil(async () => !!(await inEtcd(d.id)), {
      timeoutMs: 15_000,
      message: "pushed by self-heal",
    });
    const stock = await coreClient.getStock({ activityId: d.id });
    assert.deepEqual([stock.total, stock.remaining], [6n, 6n]);
    console.log(
      `core down at publish: pushed by the self-heal loop ${healMs.toFixed(0)} ms after core came back`,
    );
    const again = await admin.publishActivity({ activityId: d.id }, ADMIN);
    assert.equal(again.activity?.revision, 2n);
  });

  it("never creates the stock of a warmed activity again (Redis lost it): FAILED_PRECONDITION", async () => {
    const a = await published({ totalStock: 3 });
    const k = activityKeys(a.id);
    await redis.del(k.meta, k.stock, k.reserved, k.paid); // Redis lost this activity
    await expectCode(
      admin.updateActivity({ activityId: a.id, title: "after the loss" }, ADMIN),
      Code.FailedPrecondition,
      /no longer in Redis: admin will not create it again/,
    );
    const report = await internals.selfHeal.runOnce();
    assert.ok(report.failed.some((f) => f.id === a.id));
    await expectCode(coreClient.getStock({ activityId: a.id }), Code.NotFound, /not warmed/);
    const reconciled = await admin.reconcile({ activityId: a.id }, ADMIN);
    assert.ok(
      reconciled.mismatches.some(
        (m) => m.kind === MismatchKind.CONFIG && /no stock/.test(m.detail),
      ),
      JSON.stringify(reconciled.mismatches),
    );
  });

  it("main.ts runs as a process: migrations are idempotent, it registers and serves", async () => {
    let child: ServiceProcess | undefined;
    try {
      child = await startServiceProcess({
        entry: "services/admin/src/main.ts",
        env: {
          MYSQL_URI: mariadb.uri,
          REDIS_URL: redisServer.url,
          ETCD_ENDPOINTS: etcdServer.endpoints.join(","),
          INSTANCE_ID: "admin-process",
          SHUTDOWN_DELAY_MS: "0",
        },
      });
      const transport = createGrpcTransport({ address: `127.0.0.1:${child.port}` });
      transports.push(transport);
      const viaProcess = createClient(AdminService, transport);
      const { products } = await viaProcess.listProducts({ pageSize: 1 }, ADMIN);
      assert.equal(products.length, 1);
      const ready = await child.waitForLog((l) => l.msg === "serving");
      assert.equal(ready.port, child.port);
    } finally {
      await child?.stop();
    }
  });
});
