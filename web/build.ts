/**
 * `npm run build:web`: bundles web/src with esbuild into dist/web (or the
 * folder given as the first argument): content-hashed assets under assets/
 * (cached for a year by browsers and CDNs), and the HTML pages pointing at
 * them (never cached without revalidation). The gateway serves the folder
 * (WEB_ROOT) and compresses each file once when it starts.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const webDir = fileURLToPath(new URL(".", import.meta.url));
const repoRoot = resolve(webDir, "..");

export async function buildWeb(outDir = join(repoRoot, "dist/web")): Promise<string[]> {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const result = await build({
    absWorkingDir: repoRoot,
    entryPoints: {
      buy: "web/src/buy.ts",
      admin: "web/src/admin.ts",
      style: "web/src/style.css",
    },
    outdir: outDir,
    entryNames: "assets/[name]-[hash]",
    chunkNames: "assets/chunk-[hash]",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "browser",
    target: ["es2022", "chrome100", "safari16", "firefox100"],
    minify: true,
    sourcemap: "linked",
    metafile: true,
    legalComments: "none",
    logLevel: "warning",
  });
  // Entry name ("buy.js", "style.css") → its hashed URL.
  const urls = new Map<string, string>();
  for (const [out, meta] of Object.entries(result.metafile.outputs)) {
    if (!meta.entryPoint) continue;
    const file = relative(outDir, resolve(repoRoot, out)).split("\\").join("/");
    const name = basename(file).replace(/-[A-Z0-9]+\./, ".");
    urls.set(name, `/${file}`);
  }
  const written = [...Object.keys(result.metafile.outputs)];
  for (const page of ["index.html", "admin.html"]) {
    const html = readFileSync(join(webDir, page), "utf8").replace(
      /\{\{([\w.]+)\}\}/g,
      (_, name) => {
        const url = urls.get(name);
        if (!url) throw new Error(`${page}: no asset named ${name}`);
        return url;
      },
    );
    writeFileSync(join(outDir, page), html);
    written.push(page);
  }
  return written;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  const files = await buildWeb(process.argv[2] ? resolve(process.argv[2]) : undefined);
  console.log(`web: ${files.length} files into dist/web in ${Date.now() - started} ms`);
}
