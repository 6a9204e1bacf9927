import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { chooseEncoding, IMMUTABLE, loadStaticSite, NO_CACHE } from "./static.ts";

const js = `export const x = ${JSON.stringify("flash sale ".repeat(200))};\n`;

describe("static pages", () => {
  let dir: string;
  let server: http.Server;
  let port: number;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "static-test-"));
    const root = join(dir, "web");
    mkdirSync(join(root, "assets"), { recursive: true });
    writeFileSync(join(root, "index.html"), "<!doctype html><title>buy</title>");
    writeFileSync(join(root, "admin.html"), "<!doctype html><title>admin</title>");
    writeFileSync(join(root, "assets", "buy-ABCD1234.js"), js);
    writeFileSync(join(root, "assets", "style-ABCD1234.css"), "body{margin:0}");
    // Outside the root: must never be reachable.
    writeFileSync(join(dir, "secret.txt"), "secret");
    const site = loadStaticSite(root);
    assert.ok(site);
    server = http.createServer((req, res) => {
      if (!site.handler(req, res)) {
        res.statusCode = 418; // "passed on to the RPC router"
        res.end();
      }
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Raw request: the path is sent exactly as given (no URL normalisation). */
  const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>(
      (resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () =>
            resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        });
        req.on("error", reject);
        req.end();
      },
    );

  it("serves the pages as short-lived HTML with a CSP, at / and without .html", async () => {
    for (const [path, title] of [
      ["/", "buy"],
      ["/index.html", "buy"],
      ["/admin", "admin"],
      ["/admin.html", "admin"],
      ["/admin?x=1", "admin"],
    ] as const) {
      const r = await get(path);
      assert.equal(r.status, 200, path);
      assert.equal(r.headers["content-type"], "text/html; charset=utf-8");
      assert.equal(r.headers["cache-control"], NO_CACHE);
      assert.match(String(r.headers["content-security-policy"]), /default-src 'self'/);
      assert.equal(r.headers["x-content-type-options"], "nosniff");
      assert.match(r.body.toString(), new RegExp(`<title>${title}</title>`));
    }
  });

  it("serves hashed assets immutable for a year, with their content type", async () => {
    const r = await get("/assets/buy-ABCD1234.js");
    assert.equal(r.status, 200);
    assert.equal(r.headers["cache-control"], IMMUTABLE);
    assert.equal(r.headers["content-type"], "text/javascript; charset=utf-8");
    assert.equal(r.body.toString(), js);
    const css = await get("/assets/style-ABCD1234.css");
    assert.equal(css.headers["content-type"], "text/css; charset=utf-8");
    assert.equal(css.headers["content-security-policy"], undefined);
  });

  it("compresses with brotli or gzip as the client accepts, and says it varies", async () => {
    const br = await get("/assets/buy-ABCD1234.js", { "accept-encoding": "gzip, deflate, br" });
    assert.equal(br.headers["content-encoding"], "br");
    assert.equal(br.headers.vary, "Accept-Encoding");
    assert.ok(br.body.length < js.length / 5, `${br.body.length} bytes`);
    assert.equal(Number(br.headers["content-length"]), br.body.length);
    assert.equal(brotliDecompressSync(br.body).toString(), js);

    const gz = await get("/assets/buy-ABCD1234.js", { "accept-encoding": "gzip" });
    assert.equal(gz.headers["content-encoding"], "gzip");
    assert.equal(gunzipSync(gz.body).toString(), js);

    const refused = await get("/assets/buy-ABCD1234.js", { "accept-encoding": "br;q=0, gzip" });
    assert.equal(refused.headers["content-encoding"], "gzip");

    const none = await get("/assets/buy-ABCD1234.js");
    assert.equal(none.headers["content-encoding"], undefined);
    assert.equal(none.body.toString(), js);

    // Too small to gain anything: sent as is.
    const tiny = await get("/assets/style-ABCD1234.css", { "accept-encoding": "br, gzip" });
    assert.equal(tiny.headers["content-encoding"], undefined);
  });

  it("chooses encodings by q-values and wildcards", () => {
    const both = { br: Buffer.alloc(1), gzip: Buffer.alloc(1) };
    assert.equal(chooseEncoding(undefined, both), "identity");
    assert.equal(chooseEncoding("*", both), "br");
    assert.equal(chooseEncoding("br;q=0,*;q=1", both), "gzip");
    assert.equal(chooseEncoding("identity", both), "identity");
    assert.equal(chooseEncoding("br", { gzip: Buffer.alloc(1) }), "identity");
  });

  it("answers a matching If-None-Match with 304, and HEAD without a body", async () => {
    const first = await get("/");
    const etag = String(first.headers.etag);
    assert.match(etag, /^".+"$/);
    const again = await get("/", { "if-none-match": etag });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
    const head = await get("/assets/buy-ABCD1234.js", {}, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers["content-length"]), js.length);
    assert.equal(head.body.length, 0);
  });

  it("refuses directory traversal and never reads outside the root", async () => {
    for (const path of [
      "/../secret.txt",
      "/assets/../../secret.txt",
      "/%2e%2e/secret.txt",
      "/assets/..%2f..%2fsecret.txt",
      "/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
      "/..%5csecret.txt",
      "/assets/../index.html",
      "/%00index.html",
    ]) {
      const r = await get(path);
      assert.equal(r.status, 400, path);
      assert.doesNotMatch(r.body.toString(), /secret$/m, path);
    }
    for (const path of ["/secret.txt", "/%E0%A4%A", "//secret.txt", "/web/secret.txt"]) {
      const r = await get(path);
      assert.ok(r.status === 404 || r.status === 400, `${path}: ${r.status}`);
    }
  });

  it("answers 404 for unknown files and directories", async () => {
    for (const path of ["/nope.js", "/assets", "/assets/", "/assets/buy-OTHER.js"]) {
      const r = await get(path);
      assert.equal(r.status, 404, path);
      assert.equal(r.headers["cache-control"], NO_CACHE);
    }
  });

  it("passes RPCs and other methods on to the router", async () => {
    assert.equal((await get("/", {}, "POST")).status, 418);
    assert.equal((await get("/seckill.app.v1.SeckillAppService/GetServerTime")).status, 418);
    assert.equal((await get("/grpc.health.v1.Health/Check", {}, "POST")).status, 418);
  });

  it("is undefined when the folder is missing, so the gateway starts without pages", () => {
    assert.equal(loadStaticSite(join(dir, "missing")), undefined);
    assert.equal(loadStaticSite(join(dir, "secret.txt")), undefined);
  });
});
