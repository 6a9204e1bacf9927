/**
 * Reconciliation rules, pure: one activity's Redis state (core's keys, read
 * only), its order rows in MySQL, its definition in MySQL and etcd in, the
 * mismatches out. reconcile.ts reads the snapshot; this file decides.
 *
 * Work in flight is not a mismatch: a reservation whose stream entry order has
 * not acknowledged yet has no row; a PAID or CANCELLED order core was not told
 * about yet (stock_settled = 0) still shows RESERVED in Redis. Both are
 * expected for a little while and become mismatches after `graceMs`.
 */
import { MismatchKind } from "../../gen/seckill/admin/v1/admin_pb.ts";
import { type ActivityKeys, activityKeys } from "../../shared/src/data-plane/keys.ts";

export type ReservationStatusName = "RESERVED" | "PAID" | "RELEASED";
export type OrderStatusName = "PENDING_PAYMENT" | "PAID" | "CANCELLED";

export interface ReservationFacts {
  user: string;
  qty: number;
  status: string;
  createdMs: number;
}

export interface OrderFacts {
  user: string;
  qty: number;
  status: OrderStatusName;
  /** order's stock_settled: 0 core not told yet, 1 told, 2 core disagreed. */
  settled: number;
  /** When the order reached its final state (paid_at / cancelled_at), else undefined. */
  finalMs: number | undefined;
}

/** The consumer group's state, read before the order rows. */
export interface StreamState {
  groupExists: boolean;
  /** last-delivered-id of the group ("0-0" when nothing was delivered). */
  lastDeliveredId: string;
  /** Entries delivered and not acknowledged. */
  pending: ReadonlySet<string>;
}

export interface ExpectedDefinition {
  revision: number;
  totalStock: number;
  perUserLimit: number;
  /** The highest per-user limit in force while published. */
  maxPerUserLimit: number;
  startMs: number;
  endMs: number;
  status: "PUBLISHED" | "ENDED";
  paymentTimeoutSeconds: number;
  /** What etcd should hold (encodeActivity of the MySQL row). */
  json: string;
}

export interface Counters {
  total: number;
  remaining: number;
  reserved: number;
  paid: number;
}

export interface ActivitySnapshot {
  activityId: string;
  expected: ExpectedDefinition;
  /** The etcd value; undefined when the key is absent. */
  etcdJson: string | undefined;
  /** etcd value's revision (-1 unreadable), when present. */
  etcdRevision: number | undefined;
  /** core's meta hash (empty when not warmed). */
  meta: Record<string, string>;
  /** undefined when core has no stock for the activity. */
  counters: Counters | undefined;
  users: ReadonlyMap<string, number>;
  /** Stream entries (order intents) up to the snapshot's head, in order. */
  entries: readonly { streamId: string; orderId: string }[];
  /** Reservation records by order id; undefined when the hash is missing. */
  reservations: ReadonlyMap<string, ReservationFacts | undefined>;
  stream: StreamState;
  orders: ReadonlyMap<string, OrderFacts>;
}

export interface Finding {
  activityId: string;
  kind: MismatchKind;
  key: string;
  redisValue: string;
  mysqlValue: string;
  detail: string;
}

/** Stream ids "ms-seq", compared as numbers. */
export function compareStreamIds(a: string, b: string): number {
  const [am = "0", as = "0"] = a.split("-");
  const [bm = "0", bs = "0"] = b.split("-");
  const byMs = BigInt(am) - BigInt(bm);
  if (byMs !== 0n) return byMs < 0n ? -1 : 1;
  const bySeq = BigInt(as) - BigInt(bs);
  return bySeq === 0n ? 0 : bySeq < 0n ? -1 : 1;
}

const streamMs = (id: string) => Number(id.split("-")[0]);

/** Not yet acknowledged by order when the group state was read: the row may still be coming. */
export function unacknowledged(streamId: string, s: StreamState): boolean {
  if (!s.groupExists) return true;
  return compareStreamIds(streamId, s.lastDeliveredId) > 0 || s.pending.has(streamId);
}

const units = (facts: { qty: number }) => facts.qty;
const showRes = (r: ReservationFacts) => `${r.status} qty=${r.qty} user=${r.user}`;
const showOrder = (o: OrderFacts) =>
  `${o.status} qty=${o.qty} user=${o.user} stock_settled=${o.settled}`;

/** Everything that disagrees for one activity; empty when consistent. */
export function compareActivity(s: ActivitySnapshot, nowMs: number, graceMs: number): Finding[] {
  const out: Finding[] = [];
  const k = activityKeys(s.activityId);
  const add = (
    kind: MismatchKind,
    key: string,
    redisValue: string,
    mysqlValue: string,
    detail: string,
  ) => out.push({ activityId: s.activityId, kind, key, redisValue, mysqlValue, detail });

  configFindings(s, add, k);
  if (!s.counters) {
    add(
      MismatchKind.CONFIG,
      k.meta,
      "",
      `revision ${s.expected.revision}`,
      "published in MySQL but core has no stock for it in Redis (never warmed up, or Redis lost it)",
    );
    return out;
  }
  const c = s.counters;

  // I5 and I1, Redis alone.
  if (c.remaining + c.reserved + c.paid !== c.total)
    add(
      MismatchKind.CONSERVATION,
      k.stock,
      `remaining ${c.remaining} + reserved ${c.reserved} + paid ${c.paid} = ${c.remaining + c.reserved + c.paid}`,
      `total ${c.total}`,
      "remaining + reserved + paid != total in Redis (I5)",
    );
  if (c.remaining < 0)
    add(
      MismatchKind.CONSERVATION,
      k.stock,
      String(c.remaining),
      "",
      "remaining stock is negative: oversold (I1)",
    );
  if (c.total !== s.expected.totalStock)
    add(
      MismatchKind.COUNTER,
      `${k.meta} total`,
      String(c.total),
      String(s.expected.totalStock),
      "core's total stock differs from the activity's total_stock",
    );

  // Reservation by reservation.
  let recordsReserved = 0;
  let recordsPaid = 0;
  let inFlightNew = 0; // reserved in Redis, row not written yet
  let inFlightCancel = 0; // cancelled in MySQL, core not told yet
  let inFlightPaid = 0; // paid in MySQL, core not told yet
  const heldByUser = new Map<string, number>();
  const seen = new Set<string>();
  for (const { streamId, orderId } of s.entries) {
    if (seen.has(orderId)) {
      add(
        MismatchKind.COUNTER,
        orderId,
        "twice on the stream",
        "",
        "an order id appears twice on the order-intent stream",
      );
      continue;
    }
    seen.add(orderId);
    const res = s.reservations.get(orderId);
    const row = s.orders.get(orderId);
    if (!res) {
      add(
        row ? MismatchKind.ORPHAN_ORDER : MismatchKind.MISSING_ORDER,
        orderId,
        "",
        row ? showOrder(row) : "",
        "the stream has this order intent but its reservation record is missing in Redis",
      );
      continue;
    }
    if (res.status === "RESERVED") recordsReserved += res.qty;
    if (res.status === "PAID") recordsPaid += res.qty;
    if (res.status !== "RELEASED")
      heldByUser.set(res.user, (heldByUser.get(res.user) ?? 0) + res.qty);

    if (!row) {
      const ageMs = nowMs - streamMs(streamId);
      if (res.status === "RESERVED" && unacknowledged(streamId, s.stream) && ageMs <= graceMs) {
        inFlightNew += units(res);
        continue;
      }
      add(
        MismatchKind.MISSING_ORDER,
        orderId,
        showRes(res),
        "",
        unacknowledged(streamId, s.stream)
          ? `no order row yet, and the intent has waited ${Math.round(ageMs / 1000)} s in the stream (is order consuming?)`
          : "reservation without an order row, and its stream entry was acknowledged: lost order (I2)",
      );
      continue;
    }
    if (row.user !== res.user || row.qty !== res.qty)
      add(
        MismatchKind.QUANTITY,
        orderId,
        `user=${res.user} qty=${res.qty}`,
        `user=${row.user} qty=${row.qty}`,
        "reservation and order disagree on user or quantity",
      );
    const statusProblem = pairStatus(res, row, nowMs, graceMs);
    if (statusProblem === "in_flight_paid") inFlightPaid += units(row);
    else if (statusProblem === "in_flight_cancel") inFlightCancel += units(row);
    else if (statusProblem)
      add(MismatchKind.STATUS, orderId, showRes(res), showOrder(row), statusProblem);
  }
  for (const [orderId, row] of s.orders) {
    if (seen.has(orderId)) continue;
    add(
      MismatchKind.ORPHAN_ORDER,
      orderId,
      "",
      showOrder(row),
      "order row without a reservation (no order intent on the activity's stream)",
    );
  }

  // Redis counters against Redis records.
  if (c.reserved !== recordsReserved)
    add(
      MismatchKind.COUNTER,
      k.reserved,
      String(c.reserved),
      "",
      `reserved counter != ${recordsReserved} units in RESERVED reservation records`,
    );
  if (c.paid !== recordsPaid)
    add(
      MismatchKind.COUNTER,
      k.paid,
      String(c.paid),
      "",
      `paid counter != ${recordsPaid} units in PAID reservation records`,
    );

  // Redis counters against MySQL.
  let pendingUnits = 0;
  let paidUnits = 0;
  for (const row of s.orders.values()) {
    if (row.status === "PENDING_PAYMENT") pendingUnits += row.qty;
    if (row.status === "PAID") paidUnits += row.qty;
  }
  const expectedPaid = paidUnits - inFlightPaid;
  if (c.paid !== expectedPaid)
    add(
      MismatchKind.COUNTER,
      k.paid,
      String(c.paid),
      String(paidUnits),
      inFlightPaid > 0
        ? `Redis paid units != PAID units in MySQL (${paidUnits}) minus ${inFlightPaid} paid units core was not told about yet`
        : "Redis paid units != PAID units in MySQL",
    );
  const heldRedis = c.reserved + c.paid;
  const heldMysql = pendingUnits + paidUnits;
  const expectedHeld = heldMysql + inFlightNew + inFlightCancel;
  if (heldRedis !== expectedHeld)
    add(
      MismatchKind.COUNTER,
      `${k.reserved}+paid`,
      String(heldRedis),
      String(heldMysql),
      `Redis reserved + paid != PENDING_PAYMENT + PAID units in MySQL` +
        (inFlightNew + inFlightCancel > 0
          ? ` plus ${inFlightNew} units not yet written by order and ${inFlightCancel} cancelled units not yet returned`
          : ""),
    );

  // Per user: the users hash against the records, and the limit (I3).
  for (const [user, held] of s.users) {
    const fromRecords = heldByUser.get(user) ?? 0;
    if (held !== fromRecords)
      add(
        MismatchKind.COUNTER,
        `${k.users} ${user}`,
        String(held),
        "",
        `the users hash says ${held} units, the reservation records ${fromRecords}`,
      );
    if (held > s.expected.maxPerUserLimit)
      add(
        MismatchKind.USER_LIMIT,
        `${k.users} ${user}`,
        String(held),
        String(s.expected.maxPerUserLimit),
        `user ${user} holds ${held} units; the per-user limit never exceeded ${s.expected.maxPerUserLimit} (I3)`,
      );
  }
  for (const [user, held] of heldByUser)
    if (!s.users.has(user))
      add(
        MismatchKind.COUNTER,
        `${k.users} ${user}`,
        "",
        "",
        `the reservation records give ${user} ${held} units but the users hash has no entry`,
      );
  return out;
}

/**
 * A reservation / order status pair: undefined when consistent, "in_flight_*"
 * when order has not told core yet (within the grace), else the problem.
 */
function pairStatus(
  res: ReservationFacts,
  row: OrderFacts,
  nowMs: number,
  graceMs: number,
): string | "in_flight_paid" | "in_flight_cancel" | undefined {
  const recent = row.finalMs === undefined || nowMs - row.finalMs <= graceMs;
  if (row.settled === 2)
    return "order marked this order stock_settled = 2: core disagreed when told about its final state";
  switch (row.status) {
    case "PENDING_PAYMENT":
      if (res.status === "RESERVED") return undefined;
      return res.status === "PAID"
        ? "paid in Redis but still PENDING_PAYMENT in MySQL"
        : "stock returned in Redis but the order is still PENDING_PAYMENT in MySQL (the unit can be sold twice)";
    case "PAID":
      if (res.status === "PAID") return undefined;
      if (res.status === "RESERVED" && row.settled === 0 && recent) return "in_flight_paid";
      return res.status === "RESERVED"
        ? "PAID in MySQL but core still counts it as reserved, unpaid"
        : "PAID in MySQL but its stock was returned in Redis (sold twice)";
    case "CANCELLED":
      if (res.status === "RELEASED") return undefined;
      if (res.status === "RESERVED" && row.settled === 0 && recent) return "in_flight_cancel";
      return res.status === "RESERVED"
        ? "CANCELLED in MySQL but the stock was never returned in Redis"
        : "CANCELLED in MySQL but PAID in Redis";
    default:
      return `unknown order status ${String(row.status)}`;
  }
}

type Add = (
  kind: MismatchKind,
  key: string,
  redisValue: string,
  mysqlValue: string,
  detail: string,
) => void;

/** etcd and core's meta against the MySQL definition. */
function configFindings(s: ActivitySnapshot, add: Add, k: ActivityKeys): void {
  const e = s.expected;
  const key = `/seckill/activities/${s.activityId}`;
  if (s.etcdJson === undefined) {
    add(
      MismatchKind.CONFIG,
      key,
      "",
      `revision ${e.revision}`,
      "published in MySQL but missing from etcd (apps and gateways do not see it)",
    );
  } else if (s.etcdRevision !== e.revision) {
    add(
      MismatchKind.CONFIG,
      key,
      `etcd revision ${s.etcdRevision}`,
      `revision ${e.revision}`,
      (s.etcdRevision ?? -1) < e.revision
        ? "etcd holds an older definition than MySQL"
        : "etcd holds a newer revision than MySQL",
    );
  } else if (s.etcdJson !== e.json) {
    add(
      MismatchKind.CONFIG,
      key,
      "etcd definition differs",
      `revision ${e.revision}`,
      "etcd and MySQL have the same revision but different definitions",
    );
  }
  if (!s.meta.revision) return; // no stock at all: reported by the caller
  const coreRevision = Number(s.meta.revision);
  if (coreRevision !== e.revision) {
    add(
      MismatchKind.CONFIG,
      k.meta,
      `revision ${coreRevision}`,
      `revision ${e.revision}`,
      coreRevision < e.revision
        ? "core's definition in Redis is older than MySQL's"
        : "core's definition in Redis is newer than MySQL's",
    );
    return;
  }
  const fields: [string, string | undefined, string][] = [
    ["limit", s.meta.limit, String(e.perUserLimit)],
    ["start_ms", s.meta.start_ms, String(e.startMs)],
    ["end_ms", s.meta.end_ms, String(e.endMs)],
    ["pay_timeout_s", s.meta.pay_timeout_s, String(e.paymentTimeoutSeconds)],
    ["status", s.meta.status, e.status],
  ];
  for (const [field, redis, mysql] of fields)
    if (redis !== mysql)
      add(
        MismatchKind.CONFIG,
        `${k.meta} ${field}`,
        redis ?? "",
        mysql,
        `core's ${field} differs from MySQL at the same revision`,
      );
}
