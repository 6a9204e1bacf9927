/**
 * Input checks of the admin RPCs, pure: each throws INVALID_ARGUMENT naming the
 * field and the rule, or returns the normalized value.
 */
import { isIPv4, isIPv6 } from "node:net";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { idProblem } from "../../shared/src/data-plane/ids.ts";

export const LIMITS = {
  nameMax: 200,
  titleMax: 200,
  descriptionMax: 5000,
  imageUrlMax: 1024,
  /** Stock and prices stay exact in Lua doubles and JS numbers with a wide margin. */
  totalStockMax: 1_000_000_000,
  perUserLimitMax: 10_000,
  priceCentsMax: 1_000_000_000_000,
  reasonMax: 500,
  blacklistValueMax: 128,
} as const;

/** 2000-01-01 .. 9999-12-31: what DATETIME stores and what a sale can sensibly use. */
const MIN_TIME_MS = Date.UTC(2000, 0, 1);
const MAX_TIME_MS = Date.UTC(9999, 11, 31);

export const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

/** An id of the data-plane grammar (shared data-plane/ids.ts). */
export function requireId(field: string, value: string): string {
  const problem = idProblem(field, value);
  if (problem) throw invalid(problem);
  return value;
}

function text(field: string, value: string, max: number, required: boolean): string {
  const v = value.trim();
  if (required && v === "") throw invalid(`${field} is required`);
  if ([...v].length > max) throw invalid(`${field} is longer than ${max} characters`);
  return v;
}

export function currency(field: string, value: string): string {
  const v = value.trim().toUpperCase();
  if (!/^[A-Z]{3}$/.test(v))
    throw invalid(`${field} must be an ISO 4217 code such as "USD" (got ${JSON.stringify(value)})`);
  return v;
}

export function priceCents(field: string, value: bigint): number {
  if (value < 0n) throw invalid(`${field} must be >= 0 (got ${value})`);
  if (value > BigInt(LIMITS.priceCentsMax))
    throw invalid(`${field} must be <= ${LIMITS.priceCentsMax} (got ${value})`);
  return Number(value);
}

function imageUrl(value: string): string {
  const v = text("image_url", value, LIMITS.imageUrlMax, false);
  if (v === "" || (v.startsWith("/") && !v.startsWith("//"))) return v;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw invalid("image_url must be an http(s) URL or a site-relative path starting with /");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw invalid("image_url must be an http(s) URL or a site-relative path starting with /");
  return v;
}

/** A proto timestamp as whole milliseconds (what DATETIME(3) keeps), inside the usable range. */
export function timeMs(field: string, ts: Timestamp | undefined): number {
  if (!ts) throw invalid(`${field} is required`);
  const ms = Math.floor(Number(ts.seconds) * 1000 + ts.nanos / 1_000_000);
  if (!Number.isFinite(ms) || ms < MIN_TIME_MS || ms > MAX_TIME_MS)
    throw invalid(`${field} is out of range (years 2000 to 9999)`);
  return ms;
}

export interface ProductFields {
  name: string;
  description: string;
  imageUrl: string;
  priceCents: number;
  currency: string;
}

export interface ProductInput {
  name: string;
  description: string;
  imageUrl: string;
  priceCents: bigint;
  currency: string;
}

export function checkProduct(p: ProductInput): ProductFields {
  return {
    name: text("name", p.name, LIMITS.nameMax, true),
    description: text("description", p.description, LIMITS.descriptionMax, false),
    imageUrl: imageUrl(p.imageUrl),
    priceCents: priceCents("price_cents", p.priceCents),
    currency: currency("currency", p.currency),
  };
}

/** The editable definition of an activity, normalized. */
export interface ActivityFields {
  title: string;
  description: string;
  priceCents: number;
  currency: string;
  totalStock: number;
  perUserLimit: number;
  startMs: number;
  endMs: number;
  paymentTimeoutSeconds: number;
}

export interface PaymentTimeoutBounds {
  min: number;
  max: number;
  fallback: number;
}

/** 0 means the server default; anything else must lie inside the bounds. */
export function paymentTimeout(value: number, bounds: PaymentTimeoutBounds): number {
  if (value === 0) return bounds.fallback;
  if (!Number.isInteger(value) || value < bounds.min || value > bounds.max)
    throw invalid(
      `payment_timeout_seconds must be between ${bounds.min} and ${bounds.max} (got ${value}; 0 means the default ${bounds.fallback})`,
    );
  return value;
}

/** Checks a whole definition (after defaults and after merging an update). */
export function checkActivity(a: ActivityFields, bounds: PaymentTimeoutBounds): ActivityFields {
  const title = text("title", a.title, LIMITS.titleMax, true);
  const description = text("description", a.description, LIMITS.descriptionMax, false);
  if (!Number.isSafeInteger(a.totalStock) || a.totalStock <= 0)
    throw invalid(`total_stock must be > 0 (got ${a.totalStock})`);
  if (a.totalStock > LIMITS.totalStockMax)
    throw invalid(`total_stock must be <= ${LIMITS.totalStockMax} (got ${a.totalStock})`);
  if (!Number.isInteger(a.perUserLimit) || a.perUserLimit < 1)
    throw invalid(`per_user_limit must be >= 1 (got ${a.perUserLimit})`);
  if (a.perUserLimit > LIMITS.perUserLimitMax)
    throw invalid(`per_user_limit must be <= ${LIMITS.perUserLimitMax} (got ${a.perUserLimit})`);
  if (!(a.endMs > a.startMs))
    throw invalid(
      `end_time (${new Date(a.endMs).toISOString()}) must be after start_time (${new Date(a.startMs).toISOString()})`,
    );
  return {
    ...a,
    title,
    description,
    paymentTimeoutSeconds: paymentTimeout(a.paymentTimeoutSeconds, bounds),
  };
}

/** Reason texts (end reason, blacklist reason). */
export const reason = (field: string, value: string) => text(field, value, LIMITS.reasonMax, false);

/**
 * A blacklist value in the form readers compare against: user ids as given;
 * IPs validated, IPv6 lower-cased and compressed, IPv4-mapped IPv6
 * ("::ffff:1.2.3.4", what a dual-stack socket reports) written as plain IPv4.
 */
export function blacklistValue(kind: "user" | "ip", value: string): string {
  const v = value.trim();
  if (v === "") throw invalid("value is required");
  if (v.length > LIMITS.blacklistValueMax)
    throw invalid(`value is longer than ${LIMITS.blacklistValueMax} characters`);
  if (kind === "user") return v;
  return normalizeIp(v);
}

export function normalizeIp(value: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(value);
  const v = mapped ? mapped[1]! : value;
  if (isIPv4(v)) return v;
  if (isIPv6(v)) return new URL(`http://[${v}]/`).hostname.slice(1, -1);
  throw invalid(`value ${JSON.stringify(value.slice(0, 80))} is not an IPv4 or IPv6 address`);
}

/** page_size: 0 → the default, above the maximum → the maximum (AIP-158), negative → error. */
export function pageSize(value: number, fallback = 50, max = 500): number {
  if (value < 0) throw invalid(`page_size must be >= 0 (got ${value})`);
  return value === 0 ? fallback : Math.min(value, max);
}
