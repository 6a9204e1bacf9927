/**
 * The buy page: activities, one activity with a countdown on the server's
 * clock, the throttled buy button, and the order followed live (WatchOrder).
 * Routes: #/ (list), #/a/<activityId> (one activity).
 */
import type { User } from "../../services/gen/seckill/auth/v1/auth_pb.ts";
import {
  type Activity,
  ActivityStatus,
  BuyResult,
  OrderStatus,
} from "../../services/gen/seckill/common/v1/common_pb.ts";
import type { Order } from "../../services/gen/seckill/order/v1/order_pb.ts";
import {
  $,
  app,
  BUY_RESULT_TEXT,
  call,
  clock,
  currentUser,
  describeError,
  duration,
  edge,
  h,
  loginForm,
  money,
  notice,
  orders,
  randomId,
  session,
  tsMs,
} from "./common.ts";

/** After a click the button stays off this long, whatever the answer. */
const THROTTLE_MS = 3000;

let user: User | undefined;
/** Stops the timers and streams of the view being left. */
let leave = new AbortController();

async function main() {
  try {
    await clock.sync();
  } catch (err) {
    notice(describeError(err), "error");
  }
  setInterval(() => void clock.sync().catch(() => {}), 60_000);
  try {
    user = await currentUser();
  } catch (err) {
    notice(describeError(err), "error");
  }
  window.addEventListener("hashchange", () => void route());
  await route();
}

function header() {
  const who = $("#who");
  who.replaceChildren();
  if (user) {
    const out = h("button", { class: "link", id: "logout" }, "Log out");
    out.addEventListener("click", () => {
      session.clear();
      user = undefined;
      void route();
    });
    who.append(h("span", { id: "username" }, user.username), " ", out);
  }
}

async function route() {
  leave.abort();
  leave = new AbortController();
  header();
  const view = $("#view");
  const m = /^#\/a\/([\w-]+)/.exec(location.hash);
  if (!user) {
    view.replaceChildren(
      loginForm(async () => {
        user = await currentUser();
        void route();
      }),
    );
    return;
  }
  if (m) await activityView(view, m[1]!, leave.signal);
  else await listView(view);
}

function statusText(a: Activity, soldOut: boolean, now: number): string {
  if (a.status === ActivityStatus.ENDED || (tsMs(a.endTime) && now >= tsMs(a.endTime)))
    return "Ended";
  if (soldOut || a.status === ActivityStatus.SOLD_OUT) return "Sold out";
  if (now < tsMs(a.startTime)) return `Starts in ${duration(tsMs(a.startTime) - now)}`;
  return "On sale now";
}

async function listView(view: HTMLElement) {
  view.replaceChildren(h("p", {}, "Loading sales…"));
  try {
    const r = await app.listActivities({});
    const now = clock.now();
    const items = r.activities.map((a) =>
      h(
        "li",
        {},
        h(
          "a",
          { href: `#/a/${a.id}`, class: "card activity-link" },
          h("strong", {}, a.title),
          h("span", {}, `${a.productName} · ${money(a.priceCents, a.currency)}`),
          h("span", { class: "badge" }, statusText(a, false, now)),
        ),
      ),
    );
    view.replaceChildren(
      h("h2", {}, "Flash sales"),
      items.length
        ? h("ul", { class: "list", id: "activities" }, ...items)
        : h("p", {}, "No sales right now."),
    );
  } catch (err) {
    view.replaceChildren(h("p", { class: "error" }, describeError(err)));
  }
}

async function activityView(view: HTMLElement, id: string, signal: AbortSignal) {
  view.replaceChildren(h("p", {}, "Loading…"));
  let activity: Activity;
  let soldOut: boolean;
  let remaining: bigint | undefined;
  try {
    const [r, flags] = await Promise.all([app.getActivity({ activityId: id }), edgeSoldOut()]);
    if (!r.activity) throw new Error("missing activity");
    activity = r.activity;
    remaining = r.remaining;
    soldOut = r.soldOut || flags.has(id) || remaining === 0n;
  } catch (err) {
    view.replaceChildren(
      h("p", { class: "error" }, describeError(err)),
      h("a", { href: "#/" }, "← All sales"),
    );
    return;
  }
  const a = activity;
  const stockLine = h("p", { id: "stock" });
  const showStock = () => {
    const left = remaining === undefined ? "" : `${remaining} of `;
    stockLine.textContent = `${left}${a.totalStock} left · at most ${a.perUserLimit || 1} per person`;
  };
  showStock();
  const countdown = h("p", { class: "countdown", id: "countdown", "aria-live": "polite" });
  const button = h(
    "button",
    { id: "buy", class: "buy", disabled: true },
    "Buy now",
  ) as HTMLButtonElement;
  const result = h("p", { id: "result", role: "status" });
  const orderBox = h("section", { id: "order", class: "card", hidden: true });
  view.replaceChildren(
    h("a", { href: "#/" }, "← All sales"),
    h(
      "article",
      { class: "card" },
      a.productImageUrl
        ? h("img", { src: a.productImageUrl, alt: a.productName, class: "product" })
        : undefined,
      h("h2", { id: "title" }, a.title),
      h("p", { class: "product-name" }, a.productName),
      a.description ? h("p", {}, a.description) : undefined,
      h("p", { class: "price", id: "price" }, money(a.priceCents, a.currency)),
      stockLine,
      countdown,
      button,
      result,
    ),
    orderBox,
  );

  let throttledUntil = 0;
  let busy = false;
  const render = () => {
    const now = clock.now();
    const start = tsMs(a.startTime);
    const end = tsMs(a.endTime);
    const text = statusText(a, soldOut, now);
    countdown.textContent = text;
    countdown.dataset.state =
      text === "Sold out"
        ? "sold-out"
        : text === "Ended"
          ? "ended"
          : now < start
            ? "waiting"
            : "live";
    const live =
      now >= start && (!end || now < end) && !soldOut && a.status !== ActivityStatus.ENDED;
    button.disabled = !live || busy || performance.now() < throttledUntil;
    button.textContent = soldOut ? "Sold out" : busy ? "Buying…" : "Buy now";
  };
  // 100 ms ticks: the button lights up within a tenth of a second of the start.
  const tick = setInterval(render, 100);
  signal.addEventListener("abort", () => clearInterval(tick));
  render();

  // The sold-out flags can change under us (stock sold, or restocked by cancellations).
  const poll = setInterval(async () => {
    try {
      const [r, flags] = await Promise.all([app.getActivity({ activityId: id }), edgeSoldOut()]);
      if (r.activity) Object.assign(a, { status: r.activity.status, endTime: r.activity.endTime });
      remaining = r.remaining ?? remaining;
      soldOut = r.soldOut || flags.has(id) || remaining === 0n;
      showStock();
    } catch {
      // The next poll tries again; the countdown keeps running on the synced clock.
    }
  }, 5000);
  signal.addEventListener("abort", () => clearInterval(poll));

  button.addEventListener("click", async () => {
    throttledUntil = performance.now() + THROTTLE_MS;
    busy = true;
    render();
    result.className = "";
    result.textContent = "Getting your ticket…";
    try {
      const token = await call(() => app.getBuyToken({ activityId: id }));
      result.textContent = "Buying…";
      const r = await call(() =>
        app.buy({ activityId: id, quantity: 1, buyToken: token.buyToken, requestId: randomId() }),
      );
      result.textContent = BUY_RESULT_TEXT[r.result] ?? BUY_RESULT_TEXT[BuyResult.UNSPECIFIED];
      result.className = r.result === BuyResult.RESERVED ? "ok" : "error";
      if (r.soldOut || r.result === BuyResult.SOLD_OUT) soldOut = true;
      if (r.retryAfterMs > 0)
        throttledUntil = Math.max(throttledUntil, performance.now() + r.retryAfterMs);
      if (r.result === BuyResult.RESERVED && r.orderId) watch(orderBox, r.orderId, id, signal);
    } catch (err) {
      result.textContent = describeError(err);
      result.className = "error";
    } finally {
      busy = false;
      render();
    }
  });
}

/**
 * The sales the gateway knows are sold out (its flags, raised by the answers
 * of the Buys it forwarded): asking it costs no request to the sale itself.
 */
async function edgeSoldOut(): Promise<Set<string>> {
  try {
    return new Set((await edge.getEdgeStatus({})).soldOutActivityIds);
  } catch {
    return new Set();
  }
}

const ORDER_STATUS_TEXT: Record<OrderStatus, string> = {
  [OrderStatus.UNSPECIFIED]: "Unknown",
  [OrderStatus.CREATING]: "Creating your order…",
  [OrderStatus.PENDING_PAYMENT]: "Waiting for payment",
  [OrderStatus.PAID]: "Paid — thank you!",
  [OrderStatus.CANCELLED]: "Cancelled",
};

/** Follows the order through WatchOrder, reconnecting after network errors until it is final. */
function watch(box: HTMLElement, orderId: string, activityId: string, signal: AbortSignal) {
  box.hidden = false;
  const status = h(
    "p",
    { id: "order-status", class: "order-status" },
    ORDER_STATUS_TEXT[OrderStatus.CREATING],
  );
  const deadline = h("p", { id: "deadline" });
  const pay = h("button", { id: "pay", disabled: true }, "Pay now") as HTMLButtonElement;
  const cancel = h(
    "button",
    { id: "cancel", class: "secondary", disabled: true },
    "Cancel order",
  ) as HTMLButtonElement;
  const info = h("p", { id: "order-info", role: "status" });
  box.replaceChildren(
    h("h3", {}, "Your order"),
    h("p", { class: "muted" }, `Order ${orderId}`),
    status,
    deadline,
    h("div", { class: "row" }, pay, cancel),
    info,
  );
  let order: Order | undefined;
  const show = () => {
    if (!order) return;
    status.textContent = ORDER_STATUS_TEXT[order.status];
    status.dataset.status = OrderStatus[order.status];
    const pending = order.status === OrderStatus.PENDING_PAYMENT;
    pay.disabled = !pending;
    cancel.disabled = !pending;
    if (pending) {
      const left = tsMs(order.paymentDeadline) - clock.now();
      deadline.textContent = left > 0 ? `Pay within ${duration(left)}` : "The payment time is up.";
    } else if (order.status === OrderStatus.CANCELLED) {
      deadline.textContent = order.cancelReason ? `Reason: ${order.cancelReason}` : "";
    } else {
      deadline.textContent =
        order.status === OrderStatus.PAID
          ? `Amount paid: ${money(order.amountCents, order.currency)}`
          : "";
    }
  };
  const tick = setInterval(show, 250);
  signal.addEventListener("abort", () => clearInterval(tick));

  pay.addEventListener("click", async () => {
    pay.disabled = true;
    info.textContent = "Paying…";
    try {
      const r = await call(() => orders.pay({ orderId, paymentId: `web-${randomId()}` }));
      if (r.order) order = r.order;
      info.textContent = "";
      show();
    } catch (err) {
      info.textContent = describeError(err);
      show();
    }
  });
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      const r = await call(() => orders.cancel({ orderId, reason: "cancelled by the buyer" }));
      if (r.order) order = r.order;
      show();
    } catch (err) {
      info.textContent = describeError(err);
    }
  });

  void (async () => {
    let attempt = 0;
    while (!signal.aborted) {
      try {
        for await (const r of orders.watchOrder({ orderId, activityId }, { signal })) {
          attempt = 0;
          if (r.order) order = r.order;
          info.textContent = "";
          show();
        }
        if (order && (order.status === OrderStatus.PAID || order.status === OrderStatus.CANCELLED))
          return;
      } catch (err) {
        if (signal.aborted) return;
        info.textContent = `${describeError(err)} Reconnecting…`;
      }
      if (order && (order.status === OrderStatus.PAID || order.status === OrderStatus.CANCELLED))
        return;
      await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** attempt++)));
    }
  })();
}

void main();
