/**
 * A whole flash sale through a gateway, as a platform engineer would run it:
 * admin logs in, provisions the buyers (already logged in, as in reality),
 * creates and publishes an activity starting a few seconds later; at the start
 * the buyers rush in; then we wait for the orders to drain into MySQL and
 * check the books (reconcile). Works against any gateway, local or in a cluster.
 */
import { randomBytes } from "node:crypto";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { AdminService } from "../../../gen/seckill/admin/v1/admin_pb.ts";
import { SeckillAppService } from "../../../gen/seckill/app/v1/app_pb.ts";
import { AuthService } from "../../../gen/seckill/auth/v1/auth_pb.ts";
import { sleep } from "../../../shared/src/runtime/time.ts";
import {
  type Buyer,
  type LoadModel,
  type LoadResult,
  type LoadSnapshot,
  runLoad,
} from "./runner.ts";

export interface SaleOptions {
  /** Gateway base URL, e.g. http://127.0.0.1:8080. */
  target: string;
  protocol?: "grpc" | "connect";
  adminUsername: string;
  adminPassword: string;
  stock: number;
  buyers: number;
  perUserLimit?: number;
  /** Delay between publishing and the start of the sale. */
  startDelayMs?: number;
  model: LoadModel;
  maxDurationMs?: number;
  /** How long to wait for every reservation to become an order row. */
  drainTimeoutMs?: number;
  progress?: (line: string) => void;
  onTick?: (snapshot: LoadSnapshot, total: number) => void;
}

export interface SaleReport {
  target: string;
  activityId: string;
  stock: number;
  buyers: number;
  provisionMs: number;
  load: LoadResult;
  successes: number;
  oversell: number;
  ordersInMysql: number;
  drainMs: number;
  drained: boolean;
  reconcileMismatches: number;
  reconcileDetails: string[];
  stats: { remaining: number; reserved: number; paid: number; cancelled: number };
}

export function gatewayTransport(target: string, protocol: "grpc" | "connect" = "grpc"): Transport {
  return protocol === "grpc"
    ? createGrpcTransport({ baseUrl: target })
    : createConnectTransport({ baseUrl: target, httpVersion: "2", useBinaryFormat: true });
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

export async function provisionBuyers(
  auth: Client<typeof AuthService>,
  adminToken: string,
  count: number,
  prefix: string,
  progress: (line: string) => void,
): Promise<Buyer[]> {
  const password = randomBytes(12).toString("base64url");
  const buyers: Buyer[] = [];
  while (buyers.length < count) {
    const res = await auth.provisionUsers(
      {
        count: Math.min(5000, count - buyers.length),
        usernamePrefix: prefix,
        password,
        startIndex: buyers.length,
        issueTokens: true,
      },
      { ...bearer(adminToken), timeoutMs: 60_000 },
    );
    if (res.users.length === 0) throw new Error("ProvisionUsers returned no users");
    for (const u of res.users) buyers.push({ token: u.accessToken });
    progress(`provisioned ${buyers.length}/${count} buyers`);
  }
  return buyers;
}

export interface OpenSaleOptions {
  app: Client<typeof SeckillAppService>;
  admin: Client<typeof AdminService>;
  adminToken: string;
  /** Names the product and the activity. */
  tag: string;
  stock: number;
  perUserLimit: number;
  /** Delay between publishing and the start of the sale. */
  startDelayMs: number;
  progress: (line: string) => void;
}

/** Creates a product and an activity, publishes it, and waits (by the server's clock) until it starts. */
export async function openSale(opts: OpenSaleOptions): Promise<{ activityId: string }> {
  const { app, admin, tag, progress } = opts;
  const asAdmin = bearer(opts.adminToken);
  const { product } = await admin.createProduct(
    {
      name: `Demo phone ${tag}`,
      description: "A phone worth queueing for",
      priceCents: 99_900n,
      currency: "EUR",
    },
    asAdmin,
  );
  const serverNow = Number((await app.getServerTime({})).unixMillis);
  const startMs = serverNow + opts.startDelayMs;
  const { activity } = await admin.createActivity(
    {
      productId: product!.id,
      title: `Flash sale ${tag}`,
      description: `${opts.stock} units, ${opts.perUserLimit} per buyer`,
      priceCents: 49_900n,
      currency: "EUR",
      totalStock: BigInt(opts.stock),
      perUserLimit: opts.perUserLimit,
      startTime: timestampFromMs(startMs),
      endTime: timestampFromMs(startMs + 10 * 60_000),
      paymentTimeoutSeconds: 900,
    },
    asAdmin,
  );
  const activityId = activity!.id;
  await admin.publishActivity({ activityId }, asAdmin);
  progress(
    `activity ${activityId} published: ${opts.stock} units, starts at ${new Date(startMs).toISOString()}`,
  );

  // Wait for the start by the server's clock, not ours.
  for (;;) {
    const now = Number((await app.getServerTime({})).unixMillis);
    if (now >= startMs) break;
    await sleep(Math.min(250, startMs - now));
  }
  return { activityId };
}

export async function runSale(opts: SaleOptions): Promise<SaleReport> {
  const progress = opts.progress ?? (() => {});
  const transport = gatewayTransport(opts.target, opts.protocol);
  const auth = createClient(AuthService, transport);
  const admin = createClient(AdminService, transport);
  const app = createClient(SeckillAppService, transport);

  const login = await auth.login({ username: opts.adminUsername, password: opts.adminPassword });
  const adminToken = login.tokens?.accessToken ?? "";
  if (!adminToken) throw new Error("admin login returned no access token");
  const asAdmin = bearer(adminToken);
  progress(`logged in as ${opts.adminUsername}`);

  const provisionStarted = Date.now();
  const tag = randomBytes(3).toString("hex");
  const buyers = await provisionBuyers(auth, adminToken, opts.buyers, `buyer-${tag}-`, progress);
  const provisionMs = Date.now() - provisionStarted;

  const { activityId } = await openSale({
    app,
    admin,
    adminToken,
    tag,
    stock: opts.stock,
    perUserLimit: opts.perUserLimit ?? 1,
    startDelayMs: opts.startDelayMs ?? 3000,
    progress,
  });
  progress(`sale started: ${opts.buyers} buyers rush in`);
  const load = await runLoad({
    app,
    activityId,
    buyers,
    model: opts.model,
    maxAttempts: opts.buyers,
    maxDurationMs: opts.maxDurationMs ?? 120_000,
    onTick: (s) => opts.onTick?.(s, opts.buyers),
  });
  const successes = load.outcomes.RESERVED ?? 0;

  // Drain: every reservation must become an order row in MySQL.
  const drainStarted = Date.now();
  const drainTimeout = opts.drainTimeoutMs ?? 60_000;
  let stats = await admin.getStats({ activityId }, asAdmin);
  while (Number(stats.orders) < successes && Date.now() - drainStarted < drainTimeout) {
    await sleep(100);
    stats = await admin.getStats({ activityId }, asAdmin);
  }
  const drainMs = Date.now() - drainStarted;
  const drained = Number(stats.orders) >= successes;
  progress(
    drained ? `orders drained into MySQL in ${drainMs} ms` : `drain incomplete after ${drainMs} ms`,
  );

  const reconcile = await admin.reconcile({ activityId }, asAdmin);
  return {
    target: opts.target,
    activityId,
    stock: opts.stock,
    buyers: opts.buyers,
    provisionMs,
    load,
    successes,
    oversell: Math.max(0, successes - opts.stock),
    ordersInMysql: Number(stats.orders),
    drainMs,
    drained,
    reconcileMismatches: reconcile.mismatches.length,
    reconcileDetails: reconcile.mismatches
      .slice(0, 20)
      .map((m) => `${m.key}: redis=${m.redisValue} mysql=${m.mysqlValue} ${m.detail}`),
    stats: {
      remaining: Number(stats.remaining),
      reserved: Number(stats.reserved),
      paid: Number(stats.paid),
      cancelled: Number(stats.cancelled),
    },
  };
}
