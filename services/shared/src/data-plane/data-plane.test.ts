/**
 * The data-plane contract: the module and docs/data-plane.md agree (every key,
 * stream, channel, stream field and the group are on the page, and every key
 * on the page is built by the module); the id grammar; the order-intent codec;
 * the Redis error mapping; and no source file under services/*\/src keeps a
 * copy of what the module owns.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { ReplyError } from "ioredis";
import type { Logger } from "../runtime/log.ts";
import { orderIntentFixture, withField } from "../testing/fixtures.ts";
import {
  ID_PATTERN,
  idProblem,
  MAX_ID_LENGTH,
  newId,
  ORDER_ID_MAX_LENGTH,
  orderIdProblem,
} from "./ids.ts";
import * as keys from "./keys.ts";
import {
  DEAD_LETTER_FIELDS,
  deadLetterStream,
  decodeOrderIntent,
  encodeDeadLetter,
  encodeOrderIntent,
  ORDER_CONSUMER_GROUP,
  ORDER_INTENT_FIELDS,
  type OrderIntent,
  orderIntentLuaFields,
  orderIntentStream,
} from "./order-intent.ts";
import { isTransientRedisError, redisErrorMapper, withRedisErrors } from "./redis-errors.ts";

const repoRoot = fileURLToPath(new URL("../../../../", import.meta.url));
const page = readFileSync(path.join(repoRoot, "docs/data-plane.md"), "utf8");

/** The body of the page's `## <title>` section. */
function section(title: string): string {
  const start = page.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `docs/data-plane.md has a "## ${title}" section`);
  const end = page.indexOf("\n## ", start + 1);
  return page.slice(start, end < 0 ? undefined : end);
}

/** The rows of the first table in `text` after `after`, as cells (header and rule skipped). */
function table(text: string, after = ""): string[][] {
  const lines = text.slice(text.indexOf(after)).split("\n");
  const first = lines.findIndex((l) => l.startsWith("|"));
  const rows: string[][] = [];
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith("|")) break;
    rows.push(
      line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((cell) => cell.trim().replaceAll("\\|", "|")),
    );
  }
  return rows;
}

/** The text of a cell's first `code span`. */
const code = (cell: string) => /`([^`]+)`/.exec(cell)?.[1] ?? "";

// Placeholders, as the page writes them.
const ID = "<id>";

/**
 * What each export of keys.ts builds, with the page's placeholders. A new
 * export fails the test until it is added here (and so, on the page).
 */
const built: Record<string, () => string[]> = {
  activityTag: () => [],
  activityKeys: () =>
    Object.values(keys.activityKeys(ID)).map((v) =>
      typeof v === "function" ? v("<orderId>") : String(v),
    ),
  restockChannel: () => [keys.restockChannel(ID)],
  RESTOCK_PATTERN: () => [],
  activityOfRestockChannel: () => [],
  buyTokenClaimKey: () => [keys.buyTokenClaimKey(ID, "<nonce>")],
  buyRateKey: () => [keys.buyRateKey(ID, "<userId>")],
  buyTokenRateKey: () => [keys.buyTokenRateKey(ID, "<userId>")],
  orderChannel: () => [keys.orderChannel("<orderId>")],
  blacklistKey: () => [keys.blacklistKey("user"), keys.blacklistKey("ip")],
  BLACKLIST_CHANNEL: () => [keys.BLACKLIST_CHANNEL],
  LOGIN_RATE_PREFIX: () => [],
  loginUserKey: () => [keys.loginUserKey("<username>")],
  loginIpKey: () => [keys.loginIpKey("<ip>")],
};

describe("the data-plane page and module agree", () => {
  const keyTable = table(section("Keys, streams and channels"), "| key or channel");
  const documented = keyTable.map((row) => code(row[0]!));

  it("every key builder of the module is in the page's table, and nothing else is", () => {
    const unknown = Object.keys(keys).filter((name) => !(name in built));
    assert.deepEqual(unknown, [], "new exports of keys.ts: add them to `built` and to the page");
    const fromModule = new Set([
      ...Object.values(built).flatMap((build) => build()),
      orderIntentStream(ID),
      deadLetterStream(ID),
    ]);
    assert.ok(fromModule.size >= 18, `the module builds ${fromModule.size} names`);
    for (const name of fromModule)
      assert.ok(documented.includes(name), `${name} is not in docs/data-plane.md's table`);
    for (const name of documented)
      assert.ok(fromModule.has(name), `the page lists ${name}, which the module does not build`);
    assert.equal(new Set(documented).size, documented.length, "each key once");
  });

  it("every row names its type, builder, writers, readers and TTL", () => {
    for (const row of keyTable) {
      assert.equal(row.length, 6, row.join(" | "));
      for (const cell of row) assert.ok(cell.length > 0, `empty cell in ${row[0]}`);
    }
  });

  it("names the tag, the restock pattern, the login prefix and the group", () => {
    assert.ok(page.includes(`\`${keys.activityTag(ID)}\``));
    assert.ok(page.includes(`\`${keys.RESTOCK_PATTERN}\``));
    assert.ok(page.includes(`\`${keys.LOGIN_RATE_PREFIX}\` is \`LOGIN_RATE_PREFIX\``));
    assert.ok(page.includes(`\`${ORDER_CONSUMER_GROUP}\` (\`ORDER_CONSUMER_GROUP\`)`));
    for (const id of ["a", "act-1", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "x}y", ""])
      assert.equal(keys.activityOfRestockChannel(keys.restockChannel(id)), id);
    assert.equal(keys.activityOfRestockChannel(keys.orderChannel("X")), undefined);
  });

  it("documents every stream field, in the order an entry carries them", () => {
    const rows = table(section("The order-intent stream"), "| field | property");
    assert.deepEqual(
      rows.map((r) => [code(r[0]!), code(r[1]!)]),
      Object.entries(ORDER_INTENT_FIELDS).map(([property, field]) => [field, property]),
    );
  });

  it("documents the dead-letter fields", () => {
    const rows = table(section("The order-intent stream"), "| field | value");
    const { fields, ...added } = DEAD_LETTER_FIELDS;
    assert.deepEqual(
      rows.map((r) => code(r[0]!)),
      Object.values(added),
    );
    assert.ok(section("The order-intent stream").includes(`field \`${fields}\``));
  });

  it("states the id grammar the module enforces", () => {
    const ids = section("Ids");
    assert.ok(ids.includes(`\`${ID_PATTERN.source}\``), ID_PATTERN.source);
    assert.ok(ids.includes(`1 to ${MAX_ID_LENGTH} (\`MAX_ID_LENGTH\`)`));
    assert.ok(ids.includes(`1..${ORDER_ID_MAX_LENGTH} letters and digits`));
  });
});

describe("the id grammar", () => {
  it("accepts the ids the system makes and the tests and load generators use", () => {
    for (const id of [
      newId(),
      randomUUID(),
      "req-1",
      "u1",
      "act-1",
      "k6-lz3x9-42",
      "test-req-123-7",
      "a.b:c_d-e",
      "x".repeat(MAX_ID_LENGTH),
    ])
      assert.equal(idProblem("request_id", id), undefined, id);
  });

  it("refuses empty, long, and anything that could break a key or a hash tag", () => {
    assert.equal(idProblem("request_id", ""), "request_id is required");
    assert.equal(
      idProblem("request_id", "x".repeat(MAX_ID_LENGTH + 1)),
      `request_id is longer than ${MAX_ID_LENGTH} characters`,
    );
    for (const bad of ["{x}", "a}b", "a b", "a/b", "a\nb", "a\u0000", "é", "a*", "a,b", "a|b"])
      assert.match(idProblem("activity_id", bad) ?? "", /^activity_id may only contain/, bad);
  });

  it("takes order ids as core makes them (ULIDs), nothing longer or odder", () => {
    assert.equal(orderIdProblem("order_id", newId()), undefined);
    assert.equal(orderIdProblem("order_id", "nope"), undefined);
    assert.equal(orderIdProblem("order_id", ""), "order_id is required");
    for (const bad of ["0".repeat(ORDER_ID_MAX_LENGTH + 1), "AB-CD", "abc'; drop", "a b"])
      assert.match(orderIdProblem("order_id", bad) ?? "", /alphanumeric/, bad);
    // Every order id is an id.
    assert.equal(idProblem("order_id", "Z".repeat(ORDER_ID_MAX_LENGTH)), undefined);
  });
});

describe("the order-intent codec", () => {
  const intent = orderIntentFixture();
  const set = withField;
  const reason = (fields: readonly string[], activityId = "act-1") => {
    const decoded = decodeOrderIntent(activityId, fields);
    assert.equal(decoded.ok, false, JSON.stringify(fields));
    return (decoded as { reason: string }).reason;
  };
  const F = ORDER_INTENT_FIELDS;

  it("round-trips, with the fields in the contract's order", () => {
    const fields = encodeOrderIntent(intent);
    assert.deepEqual(
      fields.filter((_, i) => i % 2 === 0),
      Object.values(ORDER_INTENT_FIELDS),
    );
    assert.deepEqual(decodeOrderIntent("act-1", fields), { ok: true, intent });
    const longest = {
      ...intent,
      userId: "u".repeat(MAX_ID_LENGTH),
      requestId: "r".repeat(MAX_ID_LENGTH),
      productId: "",
    };
    assert.deepEqual(decodeOrderIntent("act-1", encodeOrderIntent(longest)), {
      ok: true,
      intent: longest,
    });
  });

  it("gives core's script the same field list as the encoder", () => {
    const lua = orderIntentLuaFields(
      Object.fromEntries(
        Object.keys(F).map((k) => [k, `'${String(intent[k as keyof OrderIntent])}'`]),
      ) as Record<keyof OrderIntent, string>,
    );
    assert.equal(
      lua,
      encodeOrderIntent(intent)
        .map((v) => `'${v}'`)
        .join(", "),
    );
  });

  it("accepts every id core accepts, and refuses what core refuses, naming the field", () => {
    const f = encodeOrderIntent(intent);
    // The lost-order bug: core took ids up to 256 characters, the decoder 128.
    assert.match(reason(set(f, F.requestId, "r".repeat(129))), /rid must have 1\.\.128/);
    assert.match(reason(set(f, F.userId, "a b")), /uid may only contain/);
    assert.match(reason(set(f, F.requestId, "{r}")), /rid may only contain/);
    assert.match(reason(set(f, F.orderId, "AB-CD")), /oid is not an order id.*alphanumeric/);
    assert.match(reason(set(f, F.orderId, "0".repeat(27))), /oid must have 1\.\.26/);
    assert.match(reason(f, "act-2"), /act "act-1" does not match the stream's activity/);
  });

  it("refuses malformed entries with a reason naming every problem", () => {
    const f = encodeOrderIntent(intent);
    assert.match(reason(set(f, F.quantity, "0")), /qty must be an integer in 1\.\./);
    assert.match(reason(set(f, F.quantity, "1.5")), /qty must be an integer/);
    assert.match(reason(set(f, F.unitPriceCents, "1e3")), /price/);
    assert.match(reason(set(f, F.currency, "DOLLARS!!")), /cur must have 1\.\.8/);
    assert.match(reason(set(f, F.createdMs, "253402300800000")), /beyond year 9999/);
    assert.match(
      reason(set(set(f, F.quantity, "900000"), F.unitPriceCents, "90000000000000")),
      /overflows/,
    );
    assert.match(reason(["oid", ""]), /oid must have.*act missing.*uid missing.*ts missing/);
    assert.match(reason([]), /oid missing/);
  });

  it("ignores unknown fields and takes the first of repeated ones", () => {
    const fields = [...encodeOrderIntent(intent), "extra", "1", F.quantity, "9"];
    assert.deepEqual(decodeOrderIntent("act-1", fields), { ok: true, intent });
  });

  it("writes dead letters with the original fields, or them as JSON when they do not pair up", () => {
    const base = { entryId: "1-0", reason: "bad", consumer: "order-1", atMs: 5 };
    assert.deepEqual(encodeDeadLetter({ ...base, fields: ["a", "1"] }), [
      "a",
      "1",
      "_entry_id",
      "1-0",
      "_reason",
      "bad",
      "_consumer",
      "order-1",
      "_at",
      "5",
    ]);
    assert.deepEqual(encodeDeadLetter({ ...base, fields: ["odd"] }).slice(0, 2), [
      "fields",
      '["odd"]',
    ]);
  });
});

describe("Redis errors", () => {
  const logged: { level: string; msg: string }[] = [];
  const log = {
    warn: (_o: object, msg: string) => logged.push({ level: "warn", msg }),
    error: (_o: object, msg: string) => logged.push({ level: "error", msg }),
  } as unknown as Logger;

  it("knows which errors are worth a retry", () => {
    assert.equal(isTransientRedisError(new Error("Connection is closed.")), true);
    assert.equal(isTransientRedisError(new ReplyError("LOADING Redis is loading")), true);
    assert.equal(isTransientRedisError(new ReplyError("READONLY You can't write")), true);
    assert.equal(isTransientRedisError(new ReplyError("ERR order id 1 already exists")), false);
    assert.equal(isTransientRedisError("nope"), false);
  });

  it("maps them to UNAVAILABLE or INTERNAL, passes ConnectErrors, and throttles the warnings", async () => {
    let now = 0;
    const map = redisErrorMapper({ store: "stock store", log, now: () => now });
    const down = map(new Error("Connection is closed."), "reserve");
    assert.equal(down.code, Code.Unavailable);
    assert.equal(down.rawMessage, "stock store unavailable: Connection is closed.");
    const failed = map(new ReplyError("ERR script: secret detail"), "reserve");
    assert.equal(failed.code, Code.Internal);
    assert.equal(failed.rawMessage, "stock store failed", "the Redis message stays in the log");
    const own = new ConnectError("x", Code.NotFound);
    assert.equal(map(own, "reserve"), own);
    map(new Error("closed"), "reserve"); // within the second: counted, not logged
    now = 1000;
    map(new Error("closed"), "reserve");
    assert.deepEqual(
      logged.map((l) => l.level),
      ["warn", "error", "warn"],
    );
    await assert.rejects(
      withRedisErrors(map, "get_stock", () => Promise.reject(new Error("timeout"))),
      (err: ConnectError) => err.code === Code.Unavailable,
    );
    assert.equal(await withRedisErrors(map, "get_stock", async () => 7), 7);
  });
});

// ---------------------------------------------------------------------------
// No copies: what the module owns is written nowhere else.

/** Source text with comments removed (strings, templates and regexes kept). */
export function withoutComments(text: string): string {
  let out = "";
  let i = 0;
  let quote: string | undefined;
  while (i < text.length) {
    const c = text[i]!;
    const next = text[i + 1];
    if (quote) {
      out += c;
      if (c === "\\") {
        out += next ?? "";
        i += 2;
        continue;
      }
      if (c === quote) quote = undefined;
      i++;
    } else if (c === "/" && next === "/") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2);
      const skipped = text.slice(i, end < 0 ? undefined : end + 2);
      out += skipped.replace(/[^\n]/g, ""); // keep line numbers
      i += skipped.length;
    } else {
      if (c === '"' || c === "'" || c === "`") quote = c;
      out += c;
      i++;
    }
  }
  return out;
}

const F = ORDER_INTENT_FIELDS;
/** `qty` is also a field of the reservation hash (`res:<orderId>`), so a quoted "qty" is no copy. */
const streamOnlyFields = Object.values(F).filter((f) => f !== F.quantity);
const deadLetterFields = Object.values(DEAD_LETTER_FIELDS).filter((f) => f.startsWith("_"));
const activitySuffixes = [
  ...new Set(
    Object.keys(built)
      .flatMap((name) => built[name]!())
      .filter((k) => k.startsWith(keys.activityTag(ID)))
      .map((k) => k.slice(keys.activityTag(ID).length).split(":")[1]!),
  ),
];
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const quoted = (words: readonly string[]) =>
  new RegExp(`(["'\`])(${words.map(escapeRegExp).join("|")})\\1`);

/** What counts as a copy, each with why. Applied to code without comments. */
const copyRules: { rule: string; test: (code: string) => RegExp | undefined }[] = [
  { rule: "builds an activity key (`{act:`)", test: () => /\{act:/ },
  {
    rule: "builds an activity key from its tag (`}:<suffix>`)",
    test: () => new RegExp(`\\}:(${activitySuffixes.map(escapeRegExp).join("|")})\\b`),
  },
  {
    rule: "builds a blacklist, login or order-channel name",
    test: () =>
      new RegExp(
        `(["'\`])(${[keys.blacklistKey("user").split(":").slice(0, 2).join(":"), keys.LOGIN_RATE_PREFIX, keys.orderChannel("")].map(escapeRegExp).join("|")})`,
      ),
  },
  {
    rule: "names the consumer group in a stream command's file",
    test: (code) =>
      /\b(XGROUP|XREADGROUP|XPENDING|XACK|XAUTOCLAIM|XCLAIM|xreadgroup|xpending|xack|xautoclaim|xclaim)\b/.test(
        code,
      )
        ? quoted([ORDER_CONSUMER_GROUP])
        : undefined,
  },
  {
    rule: "names an order-intent or dead-letter stream field in a file that talks to Redis",
    test: (code) =>
      /\bioredis\b|stores\/redis\.ts|redis\.call\(|\bXADD\b|\.xadd\(|\.xrange\(|\.pipeline\(/.test(
        code,
      )
        ? quoted([...streamOnlyFields, ...deadLetterFields])
        : undefined,
  },
  {
    rule: "defines an id rule (MAX_ID_LENGTH, idProblem, ID_PATTERN)",
    test: () =>
      /\b(MAX_ID_LENGTH|ID_PATTERN|ORDER_ID_MAX_LENGTH)\s*=|function\s+(idProblem|orderIdProblem)\b/,
  },
  {
    rule: "limits a data-plane id's length with a number of its own",
    test: () => idLengthCheck,
  },
  {
    rule: "tests a data-plane id against a pattern of its own",
    test: () => /\/\.test\(\s*(\w+\.)?(activity|user|request|order|reservation)(Id|_id)\s*\)/,
  },
  {
    rule: "declares an id length limit of its own",
    test: () => /\b(id|idMax|orderId|activityId|userId|requestId)\s*:\s*\d+\b/,
  },
];

/**
 * A length check with a literal number (or a regex quantifier) on a line about
 * one of the data plane's ids. Other lengths (page tokens, JWT key ids, file
 * sizes) are not the contract's.
 */
const idLengthCheck = {
  test: (line: string) =>
    /\.length\s*(>|>=|<|<=|===|!==)\s*\d+\b|\{1,\d+\}/.test(line) &&
    /\b(activity|user|request|order|reservation)(_id|Id)\b|\b(activity|user|request|order|reservation) id\b/.test(
      line,
    ),
} as RegExp;

/** The copies in one file's text: "line: rule". */
export function copiesIn(text: string): string[] {
  const code = withoutComments(text);
  const found: string[] = [];
  for (const { rule, test } of copyRules) {
    const pattern = test(code);
    if (!pattern) continue;
    code.split("\n").forEach((line, i) => {
      if (pattern.test(line)) found.push(`${i + 1}: ${rule}: ${line.trim()}`);
    });
  }
  return found;
}

/** services/<service>/src/**\/*.ts, tests, test helpers (testing/ folders) and this folder aside. */
function sourceFiles(): string[] {
  const services = path.join(repoRoot, "services");
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name === "testing" || entry.name === "node_modules") continue;
        if (full === path.join(services, "shared", "src", "data-plane")) continue;
        walk(full);
      } else if (entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts")) {
        out.push(path.relative(repoRoot, full).split(path.sep).join("/"));
      }
    }
  };
  for (const service of readdirSync(services, { withFileTypes: true })) {
    const src = path.join(services, service.name, "src");
    if (service.isDirectory() && service.name !== "gen")
      try {
        walk(src);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
  }
  return out.sort();
}

describe("no copies of the contract", () => {
  it("no source file under services/*/src builds a key or names a field, the group or an id rule itself", () => {
    const files = sourceFiles();
    for (const expected of [
      "services/order/src/consumer.ts",
      "services/seckill-core/src/scripts.ts",
      "services/seckill-app/src/limits.ts",
      "services/admin/src/reconcile-rules.ts",
    ])
      assert.ok(files.includes(expected), `the scan sees ${expected}`);
    const copies = files.flatMap((file) =>
      copiesIn(readFileSync(path.join(repoRoot, file), "utf8")).map((c) => `${file}:${c}`),
    );
    assert.deepEqual(
      copies,
      [],
      `use services/shared/src/data-plane instead:\n${copies.join("\n")}`,
    );
  });

  it("the scan finds copies in code and ignores comments", () => {
    // Lines of a sample source file ("#{" stands for a template placeholder).
    const sample = [
      "// the stream `{act:<id>}:orders` (a comment is no copy)",
      "/* and 'order' in XGROUP, \"oid\" */",
      "const k = `{act:#{id}}:stock`;",
      "const s = `#{tag}:orders`;",
      'redis.call("XGROUP", "CREATE", key, "order", "0");',
      'const at = fields.indexOf("oid"); redis.xadd(k, "*");',
      "export const MAX_ID_LENGTH = 256;",
      "if (value.length > 128) throw invalid(); // not about an id: no copy",
      'if (requestId.length > 128) throw invalid("request_id is too long");',
      'const url = "http://x"; // not a comment start inside a string',
      "const ch = `order:#{orderId}`;",
      "if (!/^[0-9A-Za-z]+$/.test(orderId)) throw invalid();",
    ]
      .join("\n")
      .replaceAll("#{", "$" + "{");
    assert.deepEqual(
      copiesIn(sample)
        .map((c) => Number(c.split(":")[0]))
        .sort((a, b) => a - b),
      [3, 3, 4, 5, 6, 7, 9, 11, 12],
    );
    assert.deepEqual(copiesIn("const q = 'qty'; redis.call('HGET', k, 'qty');"), []);
    assert.deepEqual(copiesIn("if (token.length > 256 || kid.length > 128) fail();"), []);
    assert.deepEqual(
      copiesIn("const LIMITS = { orderId: 26, id: 128 };").map((c) => c.split(": ")[1]),
      ["declares an id length limit of its own"],
    );
  });
});
