/**
 * Helpers for the gateway's end-to-end tests against the local stack: an
 * OTLP/HTTP collector for the services' spans, clients through the gateway,
 * admin and buyer sessions, and read-only looks at MySQL and Redis to check
 * the invariants.
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import mysql from "mysql2/promise";
import { AdminService } from "../../../gen/seckill/admin/v1/admin_pb.ts";
import { type BuyResponse, SeckillAppService } from "../../../gen/seckill/app/v1/app_pb.ts";
import { AuthService } from "../../../gen/seckill/auth/v1/auth_pb.ts";
import { type Activity, BuyResult } from "../../../gen/seckill/common/v1/common_pb.ts";
import { GatewayService } from "../../../gen/seckill/gateway/v1/gateway_pb.ts";
import { OrderService } from "../../../gen/seckill/order/v1/order_pb.ts";
import { activityKeys } from "../../../shared/src/data-plane/keys.ts";
import { ORDER_CONSUMER_GROUP } from "../../../shared/src/data-plane/order-intent.ts";

// ---------------------------------------------------------------------------
// Spans

export interface CollectedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
}

interface OtlpJson {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
    scopeSpans?: {
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
      }[];
    }[];
  }[];
}

/** Receives OTLP/HTTP JSON exports (what OTEL_TRACES_EXPORTER=otlp sends) and keeps the spans. */
export class OtlpCollector {
  readonly spans: CollectedSpan[] = [];
  private server: Server | undefined;
  url = "";

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        try {
          this.add(JSON.parse(Buffer.concat(chunks).toString("utf8")) as OtlpJson);
        } catch {
          // not JSON: ignore
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private add(body: OtlpJson): void {
    for (const rs of body.resourceSpans ?? []) {
      const service =
        rs.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue ?? "";
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          this.spans.push({
            service,
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? "",
            name: s.name,
            kind: s.kind,
          });
        }
      }
    }
  }

  of(traceId: string): CollectedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
  }
}

// ---------------------------------------------------------------------------
// Clients through the gateway

export interface EdgeClients {
  auth: Client<typeof AuthService>;
  app: Client<typeof SeckillAppService>;
  order: Client<typeof OrderService>;
  admin: Client<typeof AdminService>;
  gateway: Client<typeof GatewayService>;
}

export function edgeClients(transport: Transport): EdgeClients {
  return {
    auth: createClient(AuthService, transport),
    app: createClient(SeckillAppService, transport),
    order: createClient(OrderService, transport),
    admin: createClient(AdminService, transport),
    gateway: createClient(GatewayService, transport),
  };
}

export const h2cClients = (port: number) =>
  edgeClients(
    createConnectTransport({
      baseUrl: `http://127.0.0.1:${port}`,
      httpVersion: "2",
      useBinaryFormat: true,
    }),
  );

/** A client IP per buyer (the gateway trusts one proxy hop in these tests). */
export const buyerIp = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

export interface Session {
  userId: string;
  headers: Record<string, string>;
}

export function session(userId: string, token: string, ip = "192.0.2.1"): Session {
  return { userId, headers: { authorization: `Bearer ${token}`, "x-forwarded-for": ip } };
}

export async function login(c: EdgeClients, username: string, password: string, ip?: string) {
  const res = await c.auth.login({ username, password });
  return session(res.user!.id, res.tokens!.accessToken, ip);
}

/** Server time through the gateway (the browser's way to light the buy button). */
export async function serverNow(c: EdgeClients): Promise<number> {
  const sent = Date.now();
  const res = await c.app.getServerTime({});
  return Number(res.unixMillis) + (Date.now() - sent) / 2;
}

export interface SaleOptions {
  stock: number;
  perUserLimit?: number;
  startInMs?: number;
  durationMs?: number;
  paymentTimeoutSeconds?: number;
  title?: string;
}

/** Admin creates a product and an activity through the gateway and publishes it. */
export async function createSale(
  c: EdgeClients,
  admin: Session,
  o: SaleOptions,
): Promise<Activity> {
  const headers = admin.headers;
  const { product } = await c.admin.createProduct(
    {
      name: `${o.title ?? "Phone"} ${randomUUID().slice(0, 8)}`,
      priceCents: 9900n,
      currency: "USD",
    },
    { headers },
  );
  const now = await serverNow(c);
  const start = now + (o.startInMs ?? 1500);
  const { activity } = await c.admin.createActivity(
    {
      productId: product!.id,
      title: o.title ?? "Flash sale",
      totalStock: BigInt(o.stock),
      perUserLimit: o.perUserLimit ?? 1,
      startTime: timestampFromMs(start),
      endTime: timestampFromMs(start + (o.durationMs ?? 10 * 60_000)),
      paymentTimeoutSeconds: o.paymentTimeoutSeconds ?? 600,
    },
    { headers },
  );
  const published = await c.admin.publishActivity({ activityId: activity!.id }, { headers });
  return published.activity!;
}

/** Waits (on the server's clock) until the activity's start. */
export async function waitForStart(c: EdgeClients, activity: Activity): Promise<void> {
  const start = Number(activity.startTime!.seconds) * 1000 + activity.startTime!.nanos / 1e6;
  for (;;) {
    const left = start - (await serverNow(c));
    if (left <= 0) return;
    await sleep(Math.min(left + 5, 250));
  }
}

const failureCodes = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Internal,
  Code.Unknown,
  Code.Aborted,
  Code.Canceled,
]);

export interface BuyAttempt {
  requestId: string;
  res: BuyResponse;
  /** Calls that failed (an instance died, …) and were retried with the same request id. */
  failures: number;
  /** Calls shed by a limit (RESOURCE_EXHAUSTED, OVERLOADED, RATE_LIMITED) and retried later. */
  sheds: number;
  errors: string[];
}

const retryAfter = (err: ConnectError) => Number(err.metadata.get("retry-after-ms") ?? 50);

/** GetBuyToken with retries on load shedding; throws other errors. */
export async function buyToken(c: EdgeClients, s: Session, activityId: string): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    try {
      return (await c.app.getBuyToken({ activityId }, { headers: s.headers, timeoutMs: 5000 }))
        .buyToken;
    } catch (err) {
      const e = ConnectError.from(err);
      const retriable = e.code === Code.ResourceExhausted || failureCodes.has(e.code);
      if (!retriable || attempt >= 20) throw e;
      await sleep(e.code === Code.ResourceExhausted ? retryAfter(e) : 50);
    }
  }
}

/** One buy as a careful client does it: one request id, retried until a definite answer. */
export async function buy(
  c: EdgeClients,
  s: Session,
  activityId: string,
  token: string,
  quantity = 1,
  requestId: string = randomUUID(),
): Promise<BuyAttempt> {
  const out: Omit<BuyAttempt, "res"> = { requestId, failures: 0, sheds: 0, errors: [] };
  for (;;) {
    try {
      const res = await c.app.buy(
        { activityId, quantity, buyToken: token, requestId },
        { headers: s.headers, timeoutMs: 8000 },
      );
      if (res.result === BuyResult.OVERLOADED || res.result === BuyResult.RATE_LIMITED) {
        out.sheds++;
        await sleep(res.retryAfterMs || 50);
        continue;
      }
      return { ...out, res };
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.ResourceExhausted) {
        out.sheds++;
        await sleep(retryAfter(e));
        continue;
      }
      if (!failureCodes.has(e.code) || out.failures >= 10) throw e;
      out.failures++;
      out.errors.push(`${Code[e.code]}: ${e.rawMessage}`);
      await sleep(50);
    }
  }
}

/** Runs `fn` over items with at most `concurrency` at once. */
export async function pool<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]!, i);
      }
    }),
  );
  return results;
}

// ---------------------------------------------------------------------------
// The stores, read-only

export interface OrderRow {
  id: string;
  user_id: string;
  request_id: string;
  quantity: number;
  status: string;
}

export class Stores {
  private constructor(
    readonly db: mysql.Pool,
    readonly redis: Redis,
  ) {}

  static open(mysqlUri: string, redisUrl: string): Stores {
    return new Stores(mysql.createPool({ uri: mysqlUri, connectionLimit: 2 }), new Redis(redisUrl));
  }

  async orders(activityId: string): Promise<OrderRow[]> {
    const [rows] = await this.db.query(
      "SELECT id, user_id, request_id, quantity, status FROM orders WHERE activity_id = ?",
      [activityId],
    );
    return rows as OrderRow[];
  }

  async counters(activityId: string) {
    const k = activityKeys(activityId);
    const [stock, reserved, paid, total] = await Promise.all([
      this.redis.get(k.stock),
      this.redis.get(k.reserved),
      this.redis.get(k.paid),
      this.redis.hget(k.meta, "total"),
    ]);
    return {
      stock: Number(stock),
      reserved: Number(reserved),
      paid: Number(paid),
      total: Number(total),
    };
  }

  /** Entries of the activity's stream not yet acknowledged by order. */
  async pending(activityId: string): Promise<number> {
    try {
      const summary = (await this.redis.xpending(
        activityKeys(activityId).orders,
        ORDER_CONSUMER_GROUP,
      )) as [number, ...unknown[]];
      const lag = (await this.redis.xinfo(
        "GROUPS",
        activityKeys(activityId).orders,
      )) as unknown[][];
      const group = lag.find((g) => g[1] === ORDER_CONSUMER_GROUP);
      const lagIndex = group?.indexOf("lag") ?? -1;
      const behind = lagIndex >= 0 ? Number(group![lagIndex + 1] ?? 0) : 0;
      return Number(summary[0]) + behind;
    } catch {
      return -1;
    }
  }

  async close(): Promise<void> {
    await this.db.end();
    this.redis.disconnect();
  }
}
