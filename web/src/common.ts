/// <reference lib="dom" />
/**
 * What both pages share: the Connect-Web transport to the gateway that
 * served the page (same origin), the session (tokens only: who the user is
 * and their role always come from the server), the server clock, and plain
 * words for every error.
 */
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AdminService } from "../../services/gen/seckill/admin/v1/admin_pb.ts";
import { SeckillAppService } from "../../services/gen/seckill/app/v1/app_pb.ts";
import {
  AuthService,
  type TokenPair,
  type User,
} from "../../services/gen/seckill/auth/v1/auth_pb.ts";
import { BuyResult, Role } from "../../services/gen/seckill/common/v1/common_pb.ts";
import { GatewayService } from "../../services/gen/seckill/gateway/v1/gateway_pb.ts";
import { OrderService } from "../../services/gen/seckill/order/v1/order_pb.ts";

const ACCESS = "seckill.access";
const REFRESH = "seckill.refresh";

export const session = {
  get access() {
    return localStorage.getItem(ACCESS) ?? "";
  },
  get refresh() {
    return localStorage.getItem(REFRESH) ?? "";
  },
  save(tokens: TokenPair | undefined) {
    if (!tokens) return;
    localStorage.setItem(ACCESS, tokens.accessToken);
    if (tokens.refreshToken) localStorage.setItem(REFRESH, tokens.refreshToken);
  },
  clear() {
    localStorage.removeItem(ACCESS);
    localStorage.removeItem(REFRESH);
  },
};

const bearer: Interceptor = (next) => (req) => {
  if (session.access) req.header.set("Authorization", `Bearer ${session.access}`);
  return next(req);
};

const transport = createConnectTransport({
  baseUrl: location.origin,
  interceptors: [bearer],
});

export const auth = createClient(AuthService, transport);
export const app = createClient(SeckillAppService, transport);
export const orders = createClient(OrderService, transport);
export const admin = createClient(AdminService, transport);
export const edge = createClient(GatewayService, transport);

let refreshing: Promise<boolean> | undefined;
/** Swaps an expired access token for a new one once; false when the user must log in again. */
async function refreshSession(): Promise<boolean> {
  if (!session.refresh) return false;
  refreshing ??= auth
    .refresh({ refreshToken: session.refresh })
    .then((r) => {
      session.save(r.tokens);
      return true;
    })
    .catch(() => {
      session.clear();
      return false;
    })
    .finally(() => {
      refreshing = undefined;
    });
  return refreshing;
}

/** Runs a call, refreshing the access token once when the gateway says it expired. */
export async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unauthenticated && (await refreshSession())) {
      return fn();
    }
    throw err;
  }
}

/** The signed-in user as the server sees them, or undefined. */
export async function currentUser(): Promise<User | undefined> {
  if (!session.access && !session.refresh) return undefined;
  try {
    return (await call(() => auth.getMe({}))).user;
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unauthenticated) session.clear();
    else throw err;
    return undefined;
  }
}

export const isAdmin = (u: User | undefined) => u?.role === Role.ADMIN;

/**
 * The server's clock: GetServerTime once (and again every minute), corrected
 * by half the round trip, then advanced with the monotonic performance.now(),
 * so neither a wrong nor a changed browser clock moves the countdowns.
 */
export const clock = {
  serverAtSync: 0,
  perfAtSync: 0,
  synced: false,
  async sync(): Promise<void> {
    let best = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      const r = await app.getServerTime({});
      const t1 = performance.now();
      if (t1 - t0 < best) {
        best = t1 - t0;
        this.serverAtSync = Number(r.unixMillis) + (t1 - t0) / 2;
        this.perfAtSync = t1;
      }
    }
    this.synced = true;
  },
  now(): number {
    return Math.round(this.serverAtSync + (performance.now() - this.perfAtSync));
  },
};

export const tsMs = (t: Parameters<typeof timestampMs>[0] | undefined) => (t ? timestampMs(t) : 0);

/** "1:02:03", "02:03" */
export function duration(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function money(cents: bigint, currency: string): string {
  try {
    return new Intl.NumberFormat(undefined, {
      style: "currency",
      currency: currency || "USD",
    }).format(Number(cents) / 100);
  } catch {
    return `${(Number(cents) / 100).toFixed(2)} ${currency}`;
  }
}

export const BUY_RESULT_TEXT: Record<BuyResult, string> = {
  [BuyResult.UNSPECIFIED]: "Something unexpected happened. Please try again.",
  [BuyResult.RESERVED]: "You got one! Follow your order below.",
  [BuyResult.SOLD_OUT]: "Sold out — every item has been taken.",
  [BuyResult.LIMIT_REACHED]: "You have already bought as many as allowed for this sale.",
  [BuyResult.NOT_STARTED]: "The sale has not started yet.",
  [BuyResult.ENDED]: "The sale has ended.",
  [BuyResult.TOKEN_INVALID]: "Your buy ticket expired. Please press Buy again.",
  [BuyResult.RATE_LIMITED]: "Too many requests — please wait a few seconds and try again.",
  [BuyResult.BLACKLISTED]: "Your account cannot take part in this sale.",
  [BuyResult.NOT_FOUND]: "This sale does not exist (any more).",
  [BuyResult.INVALID_QUANTITY]: "That quantity is not allowed.",
  [BuyResult.OVERLOADED]: "The shop is very busy right now. Please try again in a moment.",
};

/** Plain words for an error from the network, the gateway or a service. */
export function describeError(err: unknown): string {
  if (err instanceof DOMException && err.name === "AbortError") return "Cancelled.";
  const e = ConnectError.from(err);
  switch (e.code) {
    case Code.Unauthenticated:
      return "Please log in (your session may have expired).";
    case Code.PermissionDenied:
      return "You are not allowed to do this.";
    case Code.ResourceExhausted: {
      const ms = Number(e.metadata.get("retry-after-ms") ?? 0);
      return ms > 0
        ? `Too many requests — please wait ${Math.ceil(ms / 1000)} s and try again.`
        : "Too many requests — please wait a moment and try again.";
    }
    case Code.Unavailable:
      return "The shop cannot be reached right now. Check your connection and try again.";
    case Code.DeadlineExceeded:
      return "The shop took too long to answer. Please try again.";
    case Code.NotFound:
      return `Not found: ${e.rawMessage}`;
    case Code.InvalidArgument:
      return `Please check the form: ${e.rawMessage}`;
    case Code.AlreadyExists:
      return `Already exists: ${e.rawMessage}`;
    case Code.FailedPrecondition:
      return `Not possible right now: ${e.rawMessage}`;
    case Code.Canceled:
      return "Cancelled.";
    case Code.Unknown:
    case Code.Internal:
      return e.rawMessage.includes("fetch")
        ? "The shop cannot be reached right now. Check your connection and try again."
        : "Something went wrong on our side. Please try again.";
    default:
      return e.rawMessage || "Something went wrong. Please try again.";
  }
}

export function $(selector: string, root: ParentNode = document): HTMLElement {
  const el = root.querySelector<HTMLElement>(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
}

/** document.createElement with attributes and children (text is always set as text, never HTML). */
export function h(
  tag: string,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: (Node | string | undefined | false)[]
): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c) el.append(c);
  return el;
}

/** Shows a message in the page's status line; kind error is announced to screen readers. */
export function notice(text: string, kind: "info" | "error" | "ok" = "info"): void {
  const el = $("#notice");
  el.textContent = text;
  el.className = `notice ${kind}`;
  el.hidden = text === "";
}

export function randomId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The log-in / register form; resolves once the user is signed in. */
export function loginForm(onDone: () => void): HTMLElement {
  const user = h("input", { name: "username", autocomplete: "username", required: true });
  const pass = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const login = h("button", { type: "submit", value: "login" }, "Log in");
  const register = h(
    "button",
    { type: "submit", value: "register", class: "secondary" },
    "Register",
  );
  const form = h(
    "form",
    { class: "card login", id: "login" },
    h("h2", {}, "Log in or register"),
    h("label", {}, "User name", user),
    h("label", {}, "Password", pass),
    h("div", { class: "row" }, login, register),
  ) as HTMLFormElement;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const which = (ev.submitter as HTMLButtonElement | null)?.value ?? "login";
    const username = (user as HTMLInputElement).value.trim();
    const password = (pass as HTMLInputElement).value;
    for (const b of [login, register]) (b as HTMLButtonElement).disabled = true;
    try {
      const r =
        which === "register"
          ? await auth.register({ username, password })
          : await auth.login({ username, password });
      session.save(r.tokens);
      notice("");
      onDone();
    } catch (err) {
      const e = ConnectError.from(err);
      notice(
        e.code === Code.Unauthenticated || e.code === Code.NotFound
          ? "Wrong user name or password."
          : describeError(err),
        "error",
      );
    } finally {
      for (const b of [login, register]) (b as HTMLButtonElement).disabled = false;
    }
  });
  return form;
}
