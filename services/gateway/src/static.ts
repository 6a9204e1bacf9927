/**
 * The web pages (web/, built into dist/web by `npm run build:web`) served by
 * the edge next to the RPCs. The folder is read once at start-up into memory
 * (a few hundred kB) and every file is compressed then with brotli and gzip,
 * so a request never touches the file system: a path that is not one of the
 * files read is a 404, which also makes directory traversal impossible.
 *
 * Caching, for a CDN in front of the gateway: files under assets/ carry a
 * content hash in their name and are `immutable` for a year; HTML (and
 * anything else) is `no-cache` (revalidated with its ETag every time), so a
 * new deployment is picked up at once.
 *
 * Only GET and HEAD of paths that do not look like an RPC
 * (`/package.Service/Method`) are answered here; everything else goes on to
 * the Connect router.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { extname, join, relative, sep } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

export const IMMUTABLE = "public, max-age=31536000, immutable";
export const NO_CACHE = "no-cache";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".woff2": "font/woff2",
};
const COMPRESSIBLE = new Set([".html", ".js", ".mjs", ".css", ".map", ".json", ".txt", ".svg"]);

/** The pages may only talk to their own origin; product images may come from anywhere. */
const HTML_CSP =
  "default-src 'self'; img-src 'self' data: https: http:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

interface StaticFile {
  type: string;
  cacheControl: string;
  etag: string;
  identity: Buffer;
  br?: Buffer;
  gzip?: Buffer;
  html: boolean;
}

type Req = IncomingMessage | Http2ServerRequest;
type Res = ServerResponse | Http2ServerResponse;

/** Answers the request and returns true, or returns false to pass it on. */
export type StaticHandler = (req: Req, res: Res) => boolean;

export interface StaticSite {
  handler: StaticHandler;
  /** URL paths served ("/", "/admin", "/assets/buy-XXXX.js", ...). */
  paths: string[];
}

/** `/seckill.app.v1.SeckillAppService/Buy`, `/grpc.health.v1.Health/Check`: left to the router. */
const RPC_PATH = /^\/[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+\/[A-Za-z_]\w*$/;

/** Reads every file under root. Undefined when root is missing, so the gateway starts without pages. */
export function loadStaticSite(root: string): StaticSite | undefined {
  if (!existsSync(root) || !statSync(root).isDirectory()) return undefined;
  const files = new Map<string, StaticFile>();
  for (const abs of walk(root)) {
    const rel = relative(root, abs).split(sep).join("/");
    if (rel.endsWith(".gz") || rel.endsWith(".br")) continue;
    const ext = extname(rel).toLowerCase();
    const identity = readFileSync(abs);
    const file: StaticFile = {
      type: TYPES[ext] ?? "application/octet-stream",
      cacheControl: rel.startsWith("assets/") ? IMMUTABLE : NO_CACHE,
      etag: `"${createHash("sha256").update(identity).digest("base64url").slice(0, 22)}"`,
      identity,
      html: ext === ".html",
    };
    if (COMPRESSIBLE.has(ext) && identity.length > 256) {
      const br = brotliCompressSync(identity, {
        params: {
          [constants.BROTLI_PARAM_QUALITY]: 11,
          [constants.BROTLI_PARAM_SIZE_HINT]: identity.length,
        },
      });
      const gz = gzipSync(identity, { level: 9 });
      if (br.length < identity.length) file.br = br;
      if (gz.length < identity.length) file.gzip = gz;
    }
    files.set(`/${rel}`, file);
    // Pretty URLs: /index.html is also /, /admin.html also /admin.
    if (rel === "index.html") files.set("/", file);
    else if (ext === ".html") files.set(`/${rel.slice(0, -".html".length)}`, file);
  }

  const handler: StaticHandler = (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const rawPath = (req.url ?? "/").split("?")[0]!;
    if (RPC_PATH.test(rawPath)) return false;
    let path: string;
    try {
      path = decodeURIComponent(rawPath);
    } catch {
      return send(res, 400, "bad request: malformed path");
    }
    // Never resolved against the disk, but refuse traversal attempts plainly anyway.
    if (path.includes("\0") || path.includes("\\") || path.split("/").some((s) => s === "..")) {
      return send(res, 400, "bad request: path not allowed");
    }
    const file = files.get(path);
    if (!file) return send(res, 404, "not found");

    const encoding = chooseEncoding(header(req, "accept-encoding"), file);
    const body = encoding === "br" ? file.br! : encoding === "gzip" ? file.gzip! : file.identity;
    res.setHeader("Content-Type", file.type);
    res.setHeader("Cache-Control", file.cacheControl);
    res.setHeader("ETag", file.etag);
    res.setHeader("X-Content-Type-Options", "nosniff");
    if (file.br || file.gzip) res.setHeader("Vary", "Accept-Encoding");
    if (file.html) {
      res.setHeader("Content-Security-Policy", HTML_CSP);
      res.setHeader("Referrer-Policy", "no-referrer");
    }
    if (etagMatches(header(req, "if-none-match"), file.etag)) {
      res.statusCode = 304;
      res.end();
      return true;
    }
    if (encoding !== "identity") res.setHeader("Content-Encoding", encoding);
    res.setHeader("Content-Length", body.length);
    res.statusCode = 200;
    if (req.method === "HEAD") res.end();
    else res.end(body);
    return true;
  };
  return { handler, paths: [...files.keys()].sort() };
}

function* walk(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const abs = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(abs);
    else if (entry.isFile()) yield abs;
  }
}

function header(req: Req, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(",") : v;
}

/** br if accepted, else gzip, else identity; `q=0` refuses an encoding. */
export function chooseEncoding(
  acceptEncoding: string | undefined,
  available: { br?: Buffer; gzip?: Buffer },
): "br" | "gzip" | "identity" {
  if (!acceptEncoding) return "identity";
  const accepted = new Map<string, number>();
  for (const part of acceptEncoding.split(",")) {
    const [name, ...params] = part.trim().toLowerCase().split(";");
    if (!name) continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    accepted.set(name, q ? Number(q.slice(2)) || 0 : 1);
  }
  const ok = (enc: string) => (accepted.get(enc) ?? accepted.get("*") ?? 0) > 0;
  if (available.br && ok("br")) return "br";
  if (available.gzip && ok("gzip")) return "gzip";
  return "identity";
}

function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  return ifNoneMatch.split(",").some((t) => {
    const v = t.trim();
    return v === "*" || v === etag || v === `W/${etag}`;
  });
}

function send(res: Res, status: number, text: string): true {
  res.statusCode = status;
  res.setHeader("Content-Type", "text/plain; charset=utf-8");
  res.setHeader("Cache-Control", NO_CACHE);
  res.setHeader("X-Content-Type-Options", "nosniff");
  res.end(`${text}\n`);
  return true;
}
