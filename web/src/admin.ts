/**
 * The admin console: products, activities (create, edit, publish, end
 * early), live stats with a chart, the blacklist and reconciliation. The page
 * asks the server who the user is; the gateway refuses the data calls of a
 * non-admin anyway (PERMISSION_DENIED).
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { BlacklistKind, MismatchKind } from "../../services/gen/seckill/admin/v1/admin_pb.ts";
import type { User } from "../../services/gen/seckill/auth/v1/auth_pb.ts";
import {
  type Activity,
  ActivityStatus,
  type Product,
} from "../../services/gen/seckill/common/v1/common_pb.ts";
import {
  $,
  admin,
  call,
  clock,
  currentUser,
  describeError,
  h,
  isAdmin,
  loginForm,
  money,
  notice,
  session,
  tsMs,
} from "./common.ts";

let user: User | undefined;
let products: Product[] = [];
let activities: Activity[] = [];
let listTimer: ReturnType<typeof setInterval> | undefined;

async function main() {
  try {
    await clock.sync();
    user = await currentUser();
  } catch (err) {
    notice(describeError(err), "error");
  }
  render();
}

function render() {
  const who = $("#who");
  who.replaceChildren();
  const view = $("#view");
  if (!user) {
    view.replaceChildren(
      loginForm(async () => {
        user = await currentUser();
        render();
      }),
    );
    return;
  }
  const out = h("button", { class: "link", id: "logout" }, "Log out");
  out.addEventListener("click", () => {
    session.clear();
    user = undefined;
    render();
  });
  who.append(h("span", { id: "username" }, user.username), " ", out);
  if (!isAdmin(user)) {
    view.replaceChildren(
      h(
        "p",
        { class: "card error", id: "forbidden" },
        "This console is for administrators only. Log in with an admin account.",
      ),
    );
    return;
  }
  view.replaceChildren(
    productsSection(),
    activitiesSection(),
    statsSection(),
    blacklistSection(),
    reconcileSection(),
  );
  void refresh();
  // Statuses move by themselves (published → live → sold out): redraw the lists now and then.
  if (!listTimer) {
    listTimer = setInterval(() => {
      if (document.visibilityState === "visible" && isAdmin(user)) void refresh();
    }, 5000);
  }
}

/** Loads products and activities, then redraws their tables and pickers. */
async function refresh() {
  try {
    const [p, a] = await Promise.all([
      call(() => admin.listProducts({ pageSize: 200 })),
      call(() => admin.listActivities({ pageSize: 200 })),
    ]);
    products = p.products;
    activities = a.activities;
    drawProducts();
    drawActivities();
  } catch (err) {
    notice(describeError(err), "error");
  }
}

const input = (name: string, attrs: Record<string, string | boolean> = {}) =>
  h("input", { name, id: name, ...attrs }) as HTMLInputElement;
const field = (label: string, el: HTMLElement) => h("label", {}, label, el);
const val = (form: HTMLFormElement, name: string) =>
  (form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement).value.trim();
const cents = (s: string) => BigInt(Math.round(Number(s) * 100));

/** Runs an action from a form or button, with its outcome in the notice line. */
async function act(what: string, fn: () => Promise<unknown>) {
  try {
    await call(fn);
    notice(`${what}: done`, "ok");
    await refresh();
  } catch (err) {
    notice(`${what}: ${describeError(err)}`, "error");
  }
}

// ---- products ------------------------------------------------------------

function productsSection() {
  const form = h(
    "form",
    { id: "product-form", class: "grid" },
    h("input", { type: "hidden", name: "productId" }),
    field("Name", input("p-name", { required: true })),
    field("Price", input("p-price", { type: "number", step: "0.01", min: "0", required: true })),
    field("Currency", input("p-currency", { value: "USD", maxlength: "3" })),
    field("Image URL", input("p-image")),
    field("Description", input("p-description")),
    h("div", { class: "row" }, h("button", { type: "submit", id: "p-save" }, "Save product")),
  ) as HTMLFormElement;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = val(form, "productId");
    const fields = {
      name: val(form, "p-name"),
      priceCents: cents(val(form, "p-price")),
      currency: val(form, "p-currency") || "USD",
      imageUrl: val(form, "p-image"),
      description: val(form, "p-description"),
    };
    void act(id ? "Update product" : "Create product", async () => {
      if (id) await admin.updateProduct({ productId: id, ...fields });
      else await admin.createProduct(fields);
      form.reset();
      (form.elements.namedItem("productId") as HTMLInputElement).value = "";
    });
  });
  return h(
    "section",
    { class: "card", id: "products" },
    h("h2", {}, "Products"),
    h("div", { class: "scroll" }, h("table", { id: "product-table" })),
    form,
  );
}

function drawProducts() {
  const table = $("#product-table");
  table.replaceChildren(
    h("tr", {}, h("th", {}, "Name"), h("th", {}, "Price"), h("th", {}, "")),
    ...products.map((p) => {
      const edit = h("button", { class: "small secondary" }, "Edit");
      edit.addEventListener("click", () => {
        const form = $("#product-form") as HTMLFormElement;
        (form.elements.namedItem("productId") as HTMLInputElement).value = p.id;
        ($("#p-name") as HTMLInputElement).value = p.name;
        ($("#p-price") as HTMLInputElement).value = (Number(p.priceCents) / 100).toFixed(2);
        ($("#p-currency") as HTMLInputElement).value = p.currency;
        ($("#p-image") as HTMLInputElement).value = p.imageUrl;
        ($("#p-description") as HTMLInputElement).value = p.description;
      });
      return h(
        "tr",
        {},
        h("td", {}, p.name),
        h("td", {}, money(p.priceCents, p.currency)),
        h("td", {}, edit),
      );
    }),
  );
  const select = $("#a-product") as HTMLSelectElement;
  const chosen = select.value;
  select.replaceChildren(
    ...products.map((p) => h("option", { value: p.id, selected: p.id === chosen }, p.name)),
  );
}

// ---- activities ----------------------------------------------------------

function activitiesSection() {
  const form = h(
    "form",
    { id: "activity-form", class: "grid" },
    h("input", { type: "hidden", name: "activityId" }),
    field("Product", h("select", { name: "a-product", id: "a-product" })),
    field("Title", input("a-title", { required: true })),
    field("Price", input("a-price", { type: "number", step: "0.01", min: "0", required: true })),
    field("Stock", input("a-stock", { type: "number", min: "1", value: "10", required: true })),
    field("Per person", input("a-limit", { type: "number", min: "1", value: "1" })),
    field("Starts in (s, server clock)", input("a-start", { type: "number", value: "60" })),
    field("Lasts (minutes)", input("a-duration", { type: "number", min: "1", value: "60" })),
    field("Pay within (s)", input("a-pay", { type: "number", min: "10", value: "300" })),
    h("div", { class: "row" }, h("button", { type: "submit", id: "a-save" }, "Save activity")),
  ) as HTMLFormElement;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = val(form, "activityId");
    const startText = val(form, "a-start");
    const startMs = clock.now() + Number(startText || 0) * 1000;
    const endMs = startMs + Number(val(form, "a-duration") || 60) * 60_000;
    const common = {
      title: val(form, "a-title"),
      priceCents: cents(val(form, "a-price")),
      totalStock: BigInt(val(form, "a-stock") || "0"),
      perUserLimit: Number(val(form, "a-limit") || 1),
      paymentTimeoutSeconds: Number(val(form, "a-pay") || 300),
    };
    void act(id ? "Update activity" : "Create activity", async () => {
      if (id) {
        await admin.updateActivity({
          activityId: id,
          ...common,
          // Blank "starts in" keeps the schedule.
          ...(startText
            ? { startTime: timestampFromMs(startMs), endTime: timestampFromMs(endMs) }
            : {}),
        });
      } else {
        const product = products.find((p) => p.id === val(form, "a-product"));
        await admin.createActivity({
          productId: val(form, "a-product"),
          currency: product?.currency || "USD",
          ...common,
          startTime: timestampFromMs(startMs),
          endTime: timestampFromMs(endMs),
        });
      }
      (form.elements.namedItem("activityId") as HTMLInputElement).value = "";
      $("#a-save").textContent = "Save activity";
    });
  });
  return h(
    "section",
    { class: "card", id: "activities" },
    h("h2", {}, "Activities"),
    h("div", { class: "scroll" }, h("table", { id: "activity-table" })),
    form,
  );
}

function drawActivities() {
  const now = clock.now();
  const table = $("#activity-table");
  table.replaceChildren(
    h(
      "tr",
      {},
      h("th", {}, "Title"),
      h("th", {}, "Status"),
      h("th", {}, "Starts"),
      h("th", {}, "Stock"),
      h("th", {}, ""),
    ),
    ...activities.map((a) => {
      const buttons: HTMLElement[] = [];
      const button = (label: string, fn: () => void) => {
        const b = h(
          "button",
          { class: "small secondary", "data-action": label.toLowerCase() },
          label,
        );
        b.addEventListener("click", fn);
        buttons.push(b);
      };
      button("Edit", () => {
        const form = $("#activity-form") as HTMLFormElement;
        (form.elements.namedItem("activityId") as HTMLInputElement).value = a.id;
        ($("#a-title") as HTMLInputElement).value = a.title;
        ($("#a-price") as HTMLInputElement).value = (Number(a.priceCents) / 100).toFixed(2);
        ($("#a-stock") as HTMLInputElement).value = String(a.totalStock);
        ($("#a-limit") as HTMLInputElement).value = String(a.perUserLimit);
        ($("#a-pay") as HTMLInputElement).value = String(a.paymentTimeoutSeconds);
        ($("#a-start") as HTMLInputElement).value = "";
        $("#a-save").textContent = "Update activity";
      });
      if (a.status === ActivityStatus.DRAFT) {
        button(
          "Publish",
          () => void act("Publish", () => admin.publishActivity({ activityId: a.id })),
        );
      }
      if (a.status !== ActivityStatus.ENDED && a.status !== ActivityStatus.DRAFT) {
        button("End", () => {
          if (confirm(`End "${a.title}" now?`)) {
            void act("End activity", () =>
              admin.endActivity({ activityId: a.id, reason: "ended early by an admin" }),
            );
          }
        });
      }
      button("Stats", () => watchStats(a.id));
      const start = tsMs(a.startTime);
      const starts =
        start > now ? `in ${Math.round((start - now) / 1000)} s` : new Date(start).toLocaleString();
      return h(
        "tr",
        { "data-id": a.id },
        h("td", {}, a.title),
        h("td", { class: "status" }, ActivityStatus[a.status].toLowerCase().replace("_", " ")),
        h("td", {}, starts),
        h("td", {}, String(a.totalStock)),
        h("td", { class: "actions" }, ...buttons),
      );
    }),
  );
}

// ---- live stats ----------------------------------------------------------

interface Point {
  remaining: number;
  reserved: number;
  paid: number;
  rate: number;
}
let statsTimer: ReturnType<typeof setInterval> | undefined;

function statsSection() {
  return h(
    "section",
    { class: "card", id: "stats" },
    h("h2", {}, "Live sale"),
    h("p", { id: "stats-title", class: "muted" }, "Press Stats on an activity."),
    h("dl", { id: "stats-numbers", class: "numbers" }),
    h("canvas", { id: "chart", width: "600", height: "200", "aria-label": "stats chart" }),
    h(
      "p",
      { class: "legend" },
      h("span", { class: "k-remaining" }, "remaining"),
      h("span", { class: "k-reserved" }, "reserved"),
      h("span", { class: "k-paid" }, "paid"),
      h("span", { class: "k-rate" }, "buys/s"),
    ),
  );
}

/** GetStats every second; the last two minutes drawn. */
function watchStats(activityId: string) {
  if (statsTimer) clearInterval(statsTimer);
  const a = activities.find((x) => x.id === activityId);
  $("#stats-title").textContent = a ? a.title : activityId;
  $("#stats").scrollIntoView({ behavior: "smooth" });
  const points: Point[] = [];
  const poll = async () => {
    try {
      const s = await call(() => admin.getStats({ activityId }));
      points.push({
        remaining: Number(s.remaining),
        reserved: Number(s.reserved),
        paid: Number(s.paid),
        rate: s.buyRatePerSecond,
      });
      if (points.length > 120) points.shift();
      const dl = $("#stats-numbers");
      const item = (k: string, v: string) =>
        h("div", {}, h("dt", {}, k), h("dd", { "data-key": k }, v));
      dl.replaceChildren(
        item("status", ActivityStatus[s.status].toLowerCase().replace("_", " ")),
        item("total", String(s.total)),
        item("remaining", String(s.remaining)),
        item("reserved", String(s.reserved)),
        item("paid", String(s.paid)),
        item("cancelled", String(s.cancelled)),
        item("orders", String(s.orders)),
        item("buys/s", s.buyRatePerSecond.toFixed(1)),
        item("sold out", s.soldOut ? "yes" : "no"),
      );
      draw(points, Number(s.total));
    } catch (err) {
      notice(`Stats: ${describeError(err)}`, "error");
    }
  };
  void poll();
  statsTimer = setInterval(poll, 1000);
}

function draw(points: Point[], total: number) {
  const canvas = $("#chart") as HTMLCanvasElement;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#ddd";
  ctx.strokeRect(0.5, 0.5, width - 1, height - 1);
  const maxRate = Math.max(1, ...points.map((p) => p.rate));
  const series: [keyof Point, string, number][] = [
    ["remaining", "#1f6feb", Math.max(1, total)],
    ["reserved", "#d29922", Math.max(1, total)],
    ["paid", "#2da44e", Math.max(1, total)],
    ["rate", "#cf222e", maxRate],
  ];
  const step = width / 119;
  for (const [key, color, max] of series) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = i * step;
      const y = height - 4 - (p[key] / max) * (height - 8);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

// ---- blacklist -----------------------------------------------------------

function blacklistSection() {
  const kind = h(
    "select",
    { name: "b-kind", id: "b-kind" },
    h("option", { value: String(BlacklistKind.USER) }, "user id"),
    h("option", { value: String(BlacklistKind.IP) }, "IP address"),
  );
  const form = h(
    "form",
    { id: "blacklist-form", class: "grid" },
    field("Kind", kind),
    field("Value", input("b-value", { required: true })),
    field("Reason", input("b-reason")),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Block")),
  ) as HTMLFormElement;
  const table = h("table", { id: "blacklist-table" });
  const load = async () => {
    try {
      const r = await call(() => admin.listBlacklist({ pageSize: 200 }));
      table.replaceChildren(
        h(
          "tr",
          {},
          h("th", {}, "Kind"),
          h("th", {}, "Value"),
          h("th", {}, "Reason"),
          h("th", {}, ""),
        ),
        ...r.entries.map((e) => {
          const remove = h("button", { class: "small secondary" }, "Remove");
          remove.addEventListener(
            "click",
            () =>
              void act("Unblock", () =>
                admin.removeBlacklistEntry({ kind: e.kind, value: e.value }),
              ).then(load),
          );
          return h(
            "tr",
            {},
            h("td", {}, e.kind === BlacklistKind.IP ? "IP" : "user"),
            h("td", {}, e.value),
            h("td", {}, e.reason),
            h("td", {}, remove),
          );
        }),
      );
    } catch (err) {
      notice(`Blacklist: ${describeError(err)}`, "error");
    }
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void act("Block", () =>
      admin.addBlacklistEntry({
        kind: Number(val(form, "b-kind")) as BlacklistKind,
        value: val(form, "b-value"),
        reason: val(form, "b-reason"),
      }),
    ).then(() => {
      form.reset();
      return load();
    });
  });
  void load();
  return h(
    "section",
    { class: "card", id: "blacklist" },
    h("h2", {}, "Blacklist"),
    h("div", { class: "scroll" }, table),
    form,
  );
}

// ---- reconcile -----------------------------------------------------------

function reconcileSection() {
  const out = h("div", { id: "reconcile-result", class: "scroll" });
  const button = h(
    "button",
    { id: "reconcile" },
    "Reconcile Redis with MySQL",
  ) as HTMLButtonElement;
  button.addEventListener("click", async () => {
    button.disabled = true;
    out.replaceChildren(h("p", {}, "Checking…"));
    try {
      const r = await call(() => admin.reconcile({}));
      out.replaceChildren(
        h(
          "p",
          { class: r.ok ? "ok" : "error", id: "reconcile-summary" },
          r.ok
            ? `All ${r.checkedActivities} activities match.`
            : `${r.mismatches.length} mismatches in ${r.checkedActivities} activities.`,
        ),
        r.mismatches.length
          ? h(
              "table",
              {},
              h(
                "tr",
                {},
                h("th", {}, "Activity"),
                h("th", {}, "Kind"),
                h("th", {}, "Redis"),
                h("th", {}, "MySQL"),
                h("th", {}, "Detail"),
              ),
              ...r.mismatches.map((m) =>
                h(
                  "tr",
                  {},
                  h("td", {}, m.activityId),
                  h("td", {}, MismatchKind[m.kind].toLowerCase().replace("_", " ")),
                  h("td", {}, m.redisValue),
                  h("td", {}, m.mysqlValue),
                  h("td", {}, m.detail),
                ),
              ),
            )
          : "",
      );
    } catch (err) {
      out.replaceChildren(h("p", { class: "error" }, describeError(err)));
    } finally {
      button.disabled = false;
    }
  });
  return h(
    "section",
    { class: "card", id: "reconcile-section" },
    h("h2", {}, "Reconcile"),
    button,
    out,
  );
}

void main();
