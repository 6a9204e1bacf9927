/**
 * CORS for browsers calling the edge with Connect-Web or gRPC-Web, built on
 * connect's own lists of the headers and methods its protocols need.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";

export interface CorsOptions {
  /** Exact origins ("https://shop.example"), or "*" for any. Empty: no CORS headers at all. */
  allowedOrigins: readonly string[];
  maxAgeSeconds: number;
  /** Request headers browsers may send beyond connect's own (e.g. authorization). */
  extraAllowedHeaders?: readonly string[];
  /** Response headers scripts may read beyond connect's own. */
  extraExposedHeaders?: readonly string[];
}

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

/** What both response kinds offer (their union's methods are not callable as such). */
interface Writable {
  writeHead(status: number, headers?: Record<string, string>): unknown;
  setHeader(name: string, value: string): unknown;
  end(): unknown;
}

/**
 * Wraps a node request handler: sets the CORS response headers for allowed
 * origins and answers preflights itself (204, or 403 for other origins).
 */
export function withCors<Q extends Req, R extends Res>(
  opts: CorsOptions,
  handler: (req: Q, res: R) => void,
): (req: Q, res: R) => void {
  if (opts.allowedOrigins.length === 0) return handler;
  const any = opts.allowedOrigins.includes("*");
  const origins = new Set(opts.allowedOrigins);
  const allowMethods = connectCors.allowedMethods.join(", ");
  const allowHeaders = [...connectCors.allowedHeaders, ...(opts.extraAllowedHeaders ?? [])].join(
    ", ",
  );
  const exposeHeaders = [...connectCors.exposedHeaders, ...(opts.extraExposedHeaders ?? [])].join(
    ", ",
  );
  return (req, response) => {
    const res = response as unknown as Writable;
    const origin = req.headers.origin;
    const preflight = req.method === "OPTIONS" && req.headers["access-control-request-method"];
    if (typeof origin !== "string" || origin === "") {
      handler(req, response);
      return;
    }
    const allowed = any || origins.has(origin);
    if (preflight) {
      if (!allowed) {
        res.writeHead(403, { vary: "Origin" });
        res.end();
        return;
      }
      res.writeHead(204, {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": allowMethods,
        "access-control-allow-headers": allowHeaders,
        "access-control-max-age": String(opts.maxAgeSeconds),
        vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
      });
      res.end();
      return;
    }
    if (allowed) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("access-control-expose-headers", exposeHeaders);
      res.setHeader("vary", "Origin");
    }
    handler(req, response);
  };
}
