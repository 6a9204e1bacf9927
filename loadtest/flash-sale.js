/**
 * A whole flash sale against the gateway over gRPC, with k6 (https://k6.io):
 *
 *   setup     admin logs in, creates a product and an activity that starts a little later,
 *             publishes it;
 *   each VU   provisions its share of the buyers (already logged in, as in reality), waits
 *             for the start by the server's clock, then each of its buyers tries once:
 *             GetBuyToken, then Buy (a transient failure is retried with the same request id);
 *   teardown  waits until every reservation is an order row in MySQL, then checks the books
 *             (no oversell, Reconcile finds no mismatch).
 *
 * In the cluster: the chart's load-test Job (loadtest.enabled=true, tool k6) runs it from the
 * image built by loadtest/Dockerfile. Anywhere else, from the repository root:
 *
 *   k6 run -e SECKILL_TARGET=127.0.0.1:8080 loadtest/flash-sale.js
 *
 * Environment: SECKILL_TARGET (gateway host:port, h2c), SECKILL_BUYERS, SECKILL_STOCK,
 * SECKILL_VUS, SECKILL_MAX_DURATION (e.g. 300s), SECKILL_START_DELAY_MS,
 * SECKILL_ADMIN_USER, SECKILL_ADMIN_PASSWORD, SECKILL_PROTO_DIR (default ../proto next to this
 * file, /loadtest/proto in the image). Auth must allow ProvisionUsers (ALLOW_PROVISIONING=true).
 */
import { check, fail, sleep } from "k6";
import exec from "k6/execution";
import { Counter, Trend } from "k6/metrics";
import grpc from "k6/net/grpc";

const env = (name, fallback) => __ENV[name] ?? fallback;
const TARGET = env("SECKILL_TARGET", "127.0.0.1:8080");
const BUYERS = Number(env("SECKILL_BUYERS", "2000"));
const STOCK = Number(env("SECKILL_STOCK", "100"));
const VUS = Math.min(Number(env("SECKILL_VUS", "200")), BUYERS);
const MAX_DURATION = env("SECKILL_MAX_DURATION", "300s");
const START_DELAY_MS = Number(env("SECKILL_START_DELAY_MS", "20000"));
const ADMIN_USER = env("SECKILL_ADMIN_USER", "admin");
const ADMIN_PASSWORD = env("SECKILL_ADMIN_PASSWORD", "admin-password");
const PROTO_DIR = env("SECKILL_PROTO_DIR", "../proto");
const PER_VU = Math.ceil(BUYERS / VUS);

const AUTH = "seckill.auth.v1.AuthService";
const ADMIN = "seckill.admin.v1.AdminService";
const APP = "seckill.app.v1.SeckillAppService";

const client = new grpc.Client();
client.load(
  [PROTO_DIR],
  "seckill/auth/v1/auth.proto",
  "seckill/admin/v1/admin.proto",
  "seckill/app/v1/app.proto",
);

const outcomes = new Counter("seckill_buy_outcomes");
const reserved = new Counter("seckill_reserved");
const buyLatency = new Trend("seckill_buy_ms", true);
const oversell = new Counter("seckill_oversell");
const mismatches = new Counter("seckill_reconcile_mismatches");

export const options = {
  setupTimeout: "120s",
  teardownTimeout: "180s",
  scenarios: {
    sale: {
      executor: "per-vu-iterations",
      vus: VUS,
      iterations: 1,
      maxDuration: MAX_DURATION,
    },
  },
  thresholds: {
    // The invariants: never more reservations than stock, and the books balance.
    seckill_oversell: ["count==0"],
    seckill_reconcile_mismatches: ["count==0"],
    // Every buyer got an answer: a result, or a precise gRPC status (not UNKNOWN).
    "checks{check:answered}": ["rate>0.99"],
  },
};

const transient = new Set([grpc.StatusUnavailable, grpc.StatusDeadlineExceeded]);

function connect() {
  client.connect(TARGET, { plaintext: true, timeout: "10s" });
}

function call(method, message, token, timeout = "10s") {
  const params = { timeout };
  if (token) params.metadata = { authorization: `Bearer ${token}` };
  return client.invoke(method, message, params);
}

function must(res, what) {
  if (!res || res.status !== grpc.StatusOK) {
    fail(`${what}: gRPC status ${res?.status} ${res?.error?.message ?? ""}`);
  }
  return res.message;
}

function serverNow() {
  return Number(must(call(`${APP}/GetServerTime`, {}), "GetServerTime").unixMillis);
}

export function setup() {
  // The gateway may still be starting (the Job starts with the release): wait for it.
  const until = Date.now() + 120_000;
  for (;;) {
    try {
      connect();
      serverNow();
      break;
    } catch (err) {
      if (Date.now() > until) fail(`gateway ${TARGET} not reachable: ${err}`);
      sleep(2);
    }
  }
  const login = must(
    call(`${AUTH}/Login`, { username: ADMIN_USER, password: ADMIN_PASSWORD }),
    "admin Login",
  );
  const adminToken = login.tokens.accessToken;
  const tag = `${Date.now().toString(36)}`;
  const { product } = must(
    call(
      `${ADMIN}/CreateProduct`,
      { name: `k6 phone ${tag}`, priceCents: "99900", currency: "EUR" },
      adminToken,
    ),
    "CreateProduct",
  );
  const startMs = serverNow() + START_DELAY_MS;
  const { activity } = must(
    call(
      `${ADMIN}/CreateActivity`,
      {
        productId: product.id,
        title: `k6 flash sale ${tag}`,
        priceCents: "49900",
        currency: "EUR",
        totalStock: String(STOCK),
        perUserLimit: 1,
        startTime: new Date(startMs).toISOString(),
        endTime: new Date(startMs + 30 * 60_000).toISOString(),
        paymentTimeoutSeconds: 900,
      },
      adminToken,
    ),
    "CreateActivity",
  );
  must(call(`${ADMIN}/PublishActivity`, { activityId: activity.id }, adminToken), "Publish");
  console.log(
    `activity ${activity.id}: ${STOCK} units for ${BUYERS} buyers (${VUS} VUs), starts ${new Date(startMs).toISOString()}`,
  );
  return {
    adminToken,
    activityId: activity.id,
    startMs,
    prefix: `k6-${tag}-`,
    password: `pw-${tag}-${Math.random().toString(36).slice(2)}`,
  };
}

/** One buyer's attempt; returns the outcome name. */
function attempt(data, token, requestId) {
  for (let n = 0; ; n++) {
    const t = call(`${APP}/GetBuyToken`, { activityId: data.activityId }, token);
    let res = t;
    if (t.status === grpc.StatusOK) {
      const started = Date.now();
      res = call(
        `${APP}/Buy`,
        { activityId: data.activityId, quantity: 1, buyToken: t.message.buyToken, requestId },
        token,
      );
      buyLatency.add(Date.now() - started);
      if (res.status === grpc.StatusOK) {
        return String(res.message.result).replace("BUY_RESULT_", "");
      }
    }
    if (n < 2 && transient.has(res.status)) continue;
    return `STATUS_${res.status}`;
  }
}

export default function (data) {
  connect();
  const vu = exec.vu.idInTest - 1;
  const first = vu * PER_VU;
  const count = Math.min(PER_VU, BUYERS - first);
  if (count <= 0) return;
  const provisioned = must(
    call(
      `${AUTH}/ProvisionUsers`,
      {
        count,
        usernamePrefix: data.prefix,
        password: data.password,
        startIndex: first,
        issueTokens: true,
      },
      data.adminToken,
      "60s",
    ),
    "ProvisionUsers",
  );
  // Everyone waits for the start by the server's clock, then rushes in.
  const offset = serverNow() - Date.now();
  const wait = data.startMs - (Date.now() + offset);
  if (wait > 0) sleep(wait / 1000);
  for (const [i, user] of provisioned.users.entries()) {
    const outcome = attempt(data, user.accessToken, `${data.prefix}${first + i}`);
    outcomes.add(1, { outcome });
    check(outcome, { answered: (o) => o !== "STATUS_2" });
    if (outcome === "RESERVED") reserved.add(1);
  }
}

export function teardown(data) {
  connect();
  // Drain: every reservation must become an order row, then the books must balance.
  const until = Date.now() + 120_000;
  let stats = must(
    call(`${ADMIN}/GetStats`, { activityId: data.activityId }, data.adminToken),
    "GetStats",
  );
  const sold = () => Number(stats.reserved) + Number(stats.paid);
  while (Number(stats.orders) < sold() && Date.now() < until) {
    sleep(0.5);
    stats = must(
      call(`${ADMIN}/GetStats`, { activityId: data.activityId }, data.adminToken),
      "GetStats",
    );
  }
  const reconcile = must(
    call(`${ADMIN}/Reconcile`, { activityId: data.activityId }, data.adminToken, "60s"),
    "Reconcile",
  );
  const found = (reconcile.mismatches ?? []).length;
  oversell.add(Math.max(0, sold() - STOCK));
  mismatches.add(found);
  console.log(
    `sold ${sold()}/${STOCK}, remaining ${stats.remaining}, orders in MySQL ${stats.orders}, reconcile mismatches ${found}`,
  );
}
