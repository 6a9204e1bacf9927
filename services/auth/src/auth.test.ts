/**
 * The auth service on real servers: MariaDB (users, refresh tokens), Redis
 * (login limits) and etcd (registration), served in-process over grpc-js, and
 * once as its own process to read its logs.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Client, Code, createClient } from "@connectrpc/connect";
import { createPool, type Pool } from "mysql2/promise";
import { AuthService } from "../../gen/seckill/auth/v1/auth_pb.ts";
import { Role } from "../../gen/seckill/common/v1/common_pb.ts";
import { createLogger } from "../../shared/src/runtime/log.ts";
import { type RunningService, startService } from "../../shared/src/runtime/server.ts";
import {
  type EtcdServer,
  type MariaDbServer,
  type RedisServer,
  startEtcd,
  startMariaDb,
  startRedis,
} from "../../shared/src/stack/index.ts";
import { createDb } from "../../shared/src/stores/mysql.ts";
import { expectCode } from "../../shared/src/testing/codes.ts";
import {
  type ServiceProcess,
  startServiceProcess,
} from "../../shared/src/testing/service-process.ts";
import { createGrpcTransport, type GrpcTransport } from "../../shared/src/transport/grpc-client.ts";
import {
  type Caller,
  CLIENT_IP_HEADER,
  identityHeaders,
} from "../../shared/src/transport/identity.ts";
import { authSpec, openAuth } from "./app.ts";
import { BAD_CREDENTIALS } from "./auth.ts";
import { createJwtVerifier } from "./client.ts";
import { loadAuthConfig } from "./config.ts";
import { generateSigningKey } from "./keys.ts";
import type { AuthDatabase } from "./schema.ts";
import { SessionStore } from "./sessions.ts";

const ADMIN = { username: "root", password: "admin-password-for-tests" };
const k1 = generateSigningKey("k1");
const k2 = generateSigningKey("k2");
const log = createLogger("auth-test", process.env.AUTH_TEST_LOG_LEVEL ?? "silent");

let mariadb: MariaDbServer;
let redis: RedisServer;
let etcd: EtcdServer;
let sqlPool: Pool;
const running: { service: RunningService; transport: GrpcTransport }[] = [];
const children: ServiceProcess[] = [];

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    MYSQL_URI: mariadb.uri,
    REDIS_URL: redis.url,
    ETCD_ENDPOINTS: etcd.endpoints.join(","),
    LOG_LEVEL: process.env.AUTH_TEST_LOG_LEVEL ?? "silent",
    SHUTDOWN_DELAY_MS: "0",
    REGISTRATION_TTL_SECONDS: "5",
    JWT_PRIVATE_KEYS: JSON.stringify([k1.entry]),
    ADMIN_USERNAME: ADMIN.username,
    ADMIN_PASSWORD: ADMIN.password,
    LOGIN_MAX_FAILURES_PER_IP: "20",
    ...extra,
  };
}

interface Instance {
  service: RunningService;
  client: Client<typeof AuthService>;
  stop(): Promise<void>;
}

async function startAuth(extra: Record<string, string> = {}): Promise<Instance> {
  const service = await startService(authSpec(loadAuthConfig(env(extra))));
  const transport = createGrpcTransport({
    address: `127.0.0.1:${service.port}`,
    channelOptions: { "grpc.max_receive_message_length": 16 * 1024 * 1024 },
  });
  const entry = { service, transport };
  running.push(entry);
  return {
    service,
    client: createClient(AuthService, transport),
    stop: async () => {
      transport.close();
      await service.shutdown("test");
      running.splice(running.indexOf(entry), 1);
    },
  };
}

const verifierOf = (client: Client<typeof AuthService>) =>
  createJwtVerifier({
    fetchKeys: async () => (await client.getPublicKeys({})).keys,
    issuer: "seckill-auth",
    audience: "seckill",
  });

/** What the gateway does: identity headers from a verified access token. */
async function asCaller(
  client: Client<typeof AuthService>,
  accessToken: string,
): Promise<{ headers: Record<string, string> }> {
  const { userId, role } = await verifierOf(client).verify(accessToken);
  const caller: Caller = { userId, role, ip: undefined };
  return { headers: identityHeaders(caller) };
}

before(async () => {
  [mariadb, redis, etcd] = await Promise.all([startMariaDb(), startRedis(), startEtcd()]);
  sqlPool = createPool({ uri: mariadb.uri, connectionLimit: 2 });
});

after(async () => {
  for (const child of children) child.kill("SIGKILL");
  for (const { service, transport } of running.splice(0)) {
    transport.close();
    await service.shutdown("test done").catch(() => {});
  }
  await sqlPool?.end();
  await Promise.all([mariadb?.stop(), redis?.stop(), etcd?.stop()]);
});

describe("auth service", { timeout: 120_000 }, () => {
  let a: Instance;
  before(async () => {
    a = await startAuth();
  });

  it("registers, logs in, refreshes and answers GetMe; the JWKS verifies its tokens", async () => {
    const registered = await a.client.register({
      username: "Alice",
      password: "alice's long password",
    });
    assert.equal(registered.user?.username, "alice", "usernames are stored in lower case");
    assert.equal(registered.user?.role, Role.USER);
    assert.equal(registered.tokens?.tokenType, "Bearer");
    const userId = registered.user!.id;
    assert.match(userId, /^[0-9A-HJKMNP-TV-Z]{26}$/, "a ULID");

    const login = await a.client.login({ username: "ALICE", password: "alice's long password" });
    assert.equal(login.user?.id, userId);
    const tokens = login.tokens!;
    const accessTtl = timestampDate(tokens.accessExpiresAt!).getTime() - Date.now();
    assert.ok(accessTtl > 14 * 60_000 && accessTtl <= 15 * 60_000, `access TTL ${accessTtl} ms`);
    assert.ok(timestampDate(tokens.refreshExpiresAt!).getTime() > Date.now() + 6 * 24 * 3600_000);

    const verified = await verifierOf(a.client).verify(tokens.accessToken);
    assert.equal(verified.userId, userId);
    assert.equal(verified.role, "user");

    const me = await a.client.getMe({}, await asCaller(a.client, tokens.accessToken));
    assert.equal(me.user?.id, userId);
    assert.equal(me.user?.username, "alice");
    await expectCode(a.client.getMe({}), Code.Unauthenticated, /authentication required/);

    const refreshed = await a.client.refresh({ refreshToken: tokens.refreshToken });
    assert.notEqual(refreshed.tokens?.refreshToken, tokens.refreshToken);
    assert.equal((await verifierOf(a.client).verify(refreshed.tokens!.accessToken)).userId, userId);
  });

  it("rotates refresh tokens: a replayed one is refused and revokes its whole session", async () => {
    const { tokens } = await a.client.register({ username: "rita", password: "rita's password!" });
    const first = tokens!.refreshToken;
    const second = (await a.client.refresh({ refreshToken: first })).tokens!.refreshToken;
    await expectCode(
      a.client.refresh({ refreshToken: first }),
      Code.Unauthenticated,
      /already used/,
    );
    await expectCode(a.client.refresh({ refreshToken: second }), Code.Unauthenticated, /revoked/);
    // A new login is a new session.
    const again = await a.client.login({ username: "rita", password: "rita's password!" });
    await a.client.refresh({ refreshToken: again.tokens!.refreshToken });
    // An access token is not a refresh token, and garbage is garbage.
    await expectCode(
      a.client.refresh({ refreshToken: again.tokens!.accessToken }),
      Code.Unauthenticated,
      /not a refresh token/,
    );
    await expectCode(a.client.refresh({ refreshToken: "x.y.z" }), Code.Unauthenticated, /invalid/);
    await expectCode(a.client.refresh({ refreshToken: "" }), Code.InvalidArgument, /required/);
  });

  it("refuses a taken username with ALREADY_EXISTS and bad input with INVALID_ARGUMENT", async () => {
    await a.client.register({ username: "bob", password: "bob's password" });
    await expectCode(
      a.client.register({ username: "BOB", password: "another password" }),
      Code.AlreadyExists,
      /"bob" is already taken/,
    );
    await expectCode(
      a.client.register({ username: "b", password: "long enough" }),
      Code.InvalidArgument,
      /3 to 64 characters/,
    );
    await expectCode(
      a.client.register({ username: "bob smith", password: "long enough" }),
      Code.InvalidArgument,
      /only letters, digits/,
    );
    await expectCode(
      a.client.register({ username: "bobby", password: "short" }),
      Code.InvalidArgument,
      /at least 8 characters/,
    );
    await expectCode(
      a.client.login({ username: "", password: "whatever1" }),
      Code.InvalidArgument,
      /required/,
    );
  });

  it("answers a wrong password and an unknown user with the same UNAUTHENTICATED", async () => {
    await a.client.register({ username: "erin", password: "erin's password" });
    const wrong = await expectCode(
      a.client.login({ username: "erin", password: "not erin's password" }),
      Code.Unauthenticated,
    );
    const unknown = await expectCode(
      a.client.login({ username: "nobody-here", password: "erin's password" }),
      Code.Unauthenticated,
    );
    assert.equal(wrong.rawMessage, BAD_CREDENTIALS);
    assert.equal(unknown.rawMessage, wrong.rawMessage);
  });

  it("rate-limits failed logins per username, across instances, with a retry-after", async () => {
    await a.client.register({ username: "carol", password: "carol's password" });
    for (let i = 0; i < 10; i++) {
      await expectCode(
        a.client.login({ username: "carol", password: `guess number ${i}` }),
        Code.Unauthenticated,
      );
    }
    const limited = await expectCode(
      a.client.login({ username: "carol", password: "carol's password" }),
      Code.ResourceExhausted,
      /too many failed login attempts for this username; retry in \d+ s/,
    );
    const retryAfter = Number(limited.metadata.get("retry-after"));
    assert.ok(retryAfter > 250 && retryAfter <= 300, `retry-after ${retryAfter}`);
    // Another instance sees the same counter (Redis).
    const other = await startAuth();
    await expectCode(
      other.client.login({ username: "carol", password: "carol's password" }),
      Code.ResourceExhausted,
    );
    await other.stop();
  });

  it("clears a username's failures on a successful login", async () => {
    await a.client.register({ username: "dave", password: "dave's password" });
    const fail = () =>
      expectCode(
        a.client.login({ username: "dave", password: "wrong password" }),
        Code.Unauthenticated,
      );
    for (let i = 0; i < 9; i++) await fail();
    await a.client.login({ username: "dave", password: "dave's password" });
    for (let i = 0; i < 9; i++) await fail();
  });

  it("rate-limits failed logins per client IP, whatever the usernames", async () => {
    const headers = { [CLIENT_IP_HEADER]: "203.0.113.7" };
    for (let i = 0; i < 20; i++) {
      await expectCode(
        a.client.login({ username: `ghost-${i}`, password: "any password" }, { headers }),
        Code.Unauthenticated,
      );
    }
    await expectCode(
      a.client.login({ username: "ghost-x", password: "any password" }, { headers }),
      Code.ResourceExhausted,
      /for this address/,
    );
    // Another address is not affected.
    await a.client.register({ username: "frank", password: "frank's password" });
    await a.client.login(
      { username: "frank", password: "frank's password" },
      { headers: { [CLIENT_IP_HEADER]: "198.51.100.1" } },
    );
  });

  it("creates the bootstrap admin once, keeps it, and refuses a name owned by a user", async () => {
    const login = await a.client.login(ADMIN);
    assert.equal(login.user?.role, Role.ADMIN);
    assert.equal((await verifierOf(a.client).verify(login.tokens!.accessToken)).role, "admin");
    const other = await startAuth({ ADMIN_PASSWORD: "a different password" });
    const again = await other.client.login(ADMIN);
    assert.equal(again.user?.id, login.user?.id, "kept, password unchanged");
    await other.stop();
    await assert.rejects(
      openAuth(
        loadAuthConfig(env({ ADMIN_USERNAME: "bob", ADMIN_PASSWORD: "pw of the admin" })),
        log,
      ),
      /ADMIN_USERNAME "bob" belongs to an existing non-admin user/,
    );
  });

  it("rotates signing keys: old tokens verify while their key is published, not after", async () => {
    const { tokens } = await a.client.register({ username: "kim", password: "kim's password" });
    const oldAccess = tokens!.accessToken;
    // Step 2 of a rotation: k2 signs, k1 still published.
    const b = await startAuth({ JWT_PRIVATE_KEYS: JSON.stringify([k2.entry, k1.entry]) });
    assert.deepEqual(
      (await b.client.getPublicKeys({})).keys.map((k) => k.kid),
      ["k2", "k1"],
    );
    const fresh = await b.client.login({ username: "kim", password: "kim's password" });
    const viaB = verifierOf(b.client);
    assert.equal((await viaB.verify(fresh.tokens!.accessToken)).userId, fresh.user?.id);
    assert.equal((await viaB.verify(oldAccess)).userId, fresh.user?.id);
    // Sessions survive the rotation: B accepts a refresh token A signed with k1.
    const viaOld = await b.client.refresh({ refreshToken: tokens!.refreshToken });
    // Step 3: k1 removed.
    const c = await startAuth({ JWT_PRIVATE_KEYS: JSON.stringify([k2.entry]) });
    const viaC = verifierOf(c.client);
    assert.equal((await viaC.verify(fresh.tokens!.accessToken)).userId, fresh.user?.id);
    await expectCode(viaC.verify(oldAccess), Code.Unauthenticated, /unknown key \(kid "k1"\)/);
    await expectCode(
      c.client.refresh({
        refreshToken: (await a.client.login({ username: "kim", password: "kim's password" }))
          .tokens!.refreshToken,
      }),
      Code.Unauthenticated,
      /invalid refresh token/,
    );
    await c.client.refresh({ refreshToken: viaOld.tokens!.refreshToken });
    await Promise.all([b.stop(), c.stop()]);
  });

  it("re-hashes a password made with weaker scrypt parameters at the next login", async () => {
    const weak = await startAuth({ PASSWORD_SCRYPT_LOG_N: "14" });
    await weak.client.register({ username: "wendy", password: "wendy's password" });
    await weak.stop();
    const hashOf = async () => {
      const [rows] = await sqlPool.query(
        "SELECT password_hash FROM users WHERE username = 'wendy'",
      );
      return String((rows as { password_hash: string }[])[0]?.password_hash);
    };
    assert.match(await hashOf(), /^\$scrypt\$ln=14,r=8,p=1\$/);
    await a.client.login({ username: "wendy", password: "wendy's password" });
    const deadline = Date.now() + 10_000;
    while (!/^\$scrypt\$ln=15,/.test(await hashOf()) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(await hashOf(), /^\$scrypt\$ln=15,r=8,p=1\$/);
    await a.client.login({ username: "wendy", password: "wendy's password" });
  });

  it("exports metrics for logins, registrations, hashing and tokens", async () => {
    const body = await (await fetch(`http://127.0.0.1:${a.service.metricsPort}/metrics`)).text();
    assert.match(body, /seckill_auth_logins_total\{outcome="success"\} \d+/);
    assert.match(body, /seckill_auth_logins_total\{outcome="bad_credentials"\} \d+/);
    assert.match(body, /seckill_auth_logins_total\{outcome="rate_limited"\} \d+/);
    assert.match(body, /seckill_auth_registrations_total\{outcome="created"\} \d+/);
    assert.match(body, /seckill_auth_password_hash_seconds_bucket\{le="0.1",op="hash"\} \d+/);
    assert.match(body, /seckill_auth_tokens_issued_total\{type="access",via="login"\} \d+/);
    assert.match(body, /seckill_auth_refreshes_total\{outcome="reused"\} 1/);
  });

  describe("ProvisionUsers", () => {
    let p: Instance;
    let admin: { headers: Record<string, string> };
    let user: { headers: Record<string, string> };
    before(async () => {
      p = await startAuth({ ALLOW_PROVISIONING: "true" });
      admin = await asCaller(p.client, (await p.client.login(ADMIN)).tokens!.accessToken);
      const { tokens } = await p.client.register({
        username: "mallory",
        password: "mallory's pw!",
      });
      user = await asCaller(p.client, tokens!.accessToken);
    });
    const request = {
      count: 3,
      usernamePrefix: "x-",
      password: "load-test-password",
      startIndex: 0,
    };

    it("is disabled by default (FAILED_PRECONDITION) and admin-only", async () => {
      await expectCode(
        a.client.provisionUsers(request, admin),
        Code.FailedPrecondition,
        /ALLOW_PROVISIONING=true/,
      );
      await expectCode(p.client.provisionUsers(request), Code.Unauthenticated);
      await expectCode(p.client.provisionUsers(request, user), Code.PermissionDenied);
      await expectCode(
        p.client.provisionUsers({ ...request, count: 5001 }, admin),
        Code.InvalidArgument,
        /above the cap of 5000/,
      );
      await expectCode(
        p.client.provisionUsers({ ...request, usernamePrefix: "bad prefix " }, admin),
        Code.InvalidArgument,
        /username_prefix makes invalid usernames/,
      );
      await expectCode(
        p.client.provisionUsers({ ...request, password: "short" }, admin),
        Code.InvalidArgument,
        /at least 8/,
      );
    });

    it("provisions 20,000 logged-in buyers in seconds", async () => {
      const total = 20_000;
      const perCall = 5_000;
      const started = performance.now();
      const calls = [];
      for (let start = 0; start < total; start += perCall) {
        const res = await p.client.provisionUsers(
          {
            count: perCall,
            usernamePrefix: "buyer-",
            password: "load-test-password",
            startIndex: start,
            issueTokens: true,
          },
          admin,
        );
        calls.push(res);
      }
      const elapsed = performance.now() - started;
      const users = calls.flatMap((c) => c.users);
      console.log(
        `ProvisionUsers: ${total} users with access tokens in ${Math.round(elapsed)} ms ` +
          `(${calls.length} calls of ${perCall}; server took_ms ${calls.map((c) => c.tookMs).join(", ")})`,
      );
      assert.equal(
        calls.reduce((n, c) => n + c.created, 0),
        total,
      );
      assert.equal(calls[0]!.firstUsername, "buyer-0");
      assert.equal(calls.at(-1)!.lastUsername, "buyer-19999");
      assert.equal(users.length, total);
      assert.equal(new Set(users.map((u) => u.userId)).size, total);
      assert.equal(users[12_345]!.username, "buyer-12345");

      const verifier = verifierOf(p.client);
      for (let i = 0; i < total; i += 97) {
        const verified = await verifier.verify(users[i]!.accessToken);
        assert.equal(verified.userId, users[i]!.userId);
        assert.equal(verified.role, "user");
      }
      // A provisioned user is a real user: the shared password logs it in.
      const login = await p.client.login({ username: "buyer-777", password: "load-test-password" });
      assert.equal(login.user?.id, users[777]!.userId);

      const [rows] = await sqlPool.query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT password_hash) AS hashes, MIN(provisioned) AS flag FROM users WHERE username LIKE 'buyer-%'",
      );
      assert.deepEqual({ ...(rows as object[])[0] }, { n: total, hashes: 4, flag: 1 });

      // Again: nothing created, the same ids, fresh tokens.
      const rerun = await p.client.provisionUsers(
        {
          count: 10,
          usernamePrefix: "buyer-",
          password: "load-test-password",
          startIndex: 19_990,
          issueTokens: true,
        },
        admin,
      );
      assert.equal(rerun.created, 0);
      assert.deepEqual(
        rerun.users.map((u) => u.userId),
        users.slice(19_990).map((u) => u.userId),
      );
      assert.ok(rerun.users.every((u) => u.accessToken !== ""));
    });

    it("never issues a token for a real account whose name falls in the range", async () => {
      const real = await p.client.register({
        username: "probe-7",
        password: "probe's own password",
      });
      const res = await p.client.provisionUsers(
        { count: 10, usernamePrefix: "probe-", password: "load-test-password", issueTokens: true },
        admin,
      );
      assert.equal(res.created, 9);
      const probe = res.users[7]!;
      assert.equal(probe.userId, real.user?.id);
      assert.equal(probe.accessToken, "");
      assert.ok(res.users.filter((u) => u !== probe).every((u) => u.accessToken !== ""));
      // Its password was not touched.
      await p.client.login({ username: "probe-7", password: "probe's own password" });
      const withoutTokens = await p.client.provisionUsers(
        { count: 5, usernamePrefix: "quiet-", password: "load-test-password" },
        admin,
      );
      assert.equal(withoutTokens.created, 5);
      assert.deepEqual(withoutTokens.users, []);
    });
  });
});

describe("refresh token housekeeping", () => {
  it("purges expired refresh tokens", async () => {
    const db = createDb<AuthDatabase>(mariadb.uri);
    try {
      const sessions = new SessionStore(db);
      assert.equal(await sessions.purgeExpired(new Date()), 0, "nothing has expired yet");
      const later = new Date(Date.now() + 8 * 24 * 3600_000);
      assert.ok((await sessions.purgeExpired(later)) > 0);
      const [rows] = await sqlPool.query("SELECT COUNT(*) AS n FROM refresh_tokens");
      assert.equal((rows as { n: number }[])[0]?.n, 0);
    } finally {
      await db.destroy();
    }
  });
});

describe("auth as a process", { timeout: 60_000 }, () => {
  it("refuses to start without signing keys, with a readable message", async () => {
    await assert.rejects(
      startServiceProcess({
        entry: "services/auth/src/main.ts",
        env: { ...env(), JWT_PRIVATE_KEYS: "", AUTH_DEV_KEYS: "false" },
        readyTimeoutMs: 15_000,
      }),
      /exited \(\{"code":1.*JWT_PRIVATE_KEYS: required/s,
    );
  });

  it("never writes a password or a token to its logs, and stops cleanly", async () => {
    const child = await startServiceProcess({
      entry: "services/auth/src/main.ts",
      env: {
        ...env(),
        JWT_PRIVATE_KEYS: "",
        AUTH_DEV_KEYS: "true",
        ALLOW_PROVISIONING: "true",
        INSTANCE_ID: "auth-logs",
        LOG_LEVEL: "info",
      },
    });
    children.push(child);
    assert.ok(child.logs.some((l) => /AUTH_DEV_KEYS/.test(String(l.msg)) && l.level === "warn"));
    const transport = createGrpcTransport({ address: `127.0.0.1:${child.port}` });
    const client = createClient(AuthService, transport);
    const secret = "Pa55-word-that-must-never-be-logged";
    const secrets: string[] = [secret, ADMIN.password];
    const reg = await client.register({ username: "logcheck", password: secret });
    secrets.push(reg.tokens!.accessToken, reg.tokens!.refreshToken);
    await expectCode(
      client.login({ username: "logcheck", password: `${secret}!` }),
      Code.Unauthenticated,
    );
    const login = await client.login({ username: "logcheck", password: secret });
    secrets.push(login.tokens!.accessToken, login.tokens!.refreshToken);
    const refreshed = await client.refresh({ refreshToken: login.tokens!.refreshToken });
    secrets.push(refreshed.tokens!.refreshToken);
    await expectCode(
      client.refresh({ refreshToken: login.tokens!.refreshToken }),
      Code.Unauthenticated,
    );
    const adminLogin = await client.login(ADMIN);
    secrets.push(adminLogin.tokens!.accessToken);
    const admin = await asCaller(client, adminLogin.tokens!.accessToken);
    const provisioned = await client.provisionUsers(
      { count: 3, usernamePrefix: "logged-", password: "provisioned-secret-pw", issueTokens: true },
      admin,
    );
    secrets.push("provisioned-secret-pw", ...provisioned.users.map((u) => u.accessToken));
    await child.waitForLog((l) => l.msg === "users provisioned");
    await child.waitForLog((l) => l.msg === "refresh token replayed: session family revoked");
    transport.close();
    await child.stop();
    assert.deepEqual(await child.exited, { code: 0, signal: null });
    const text = child.logs.map((l) => JSON.stringify(l)).join("\n");
    assert.ok(text.includes("login refused: bad credentials"), "the logs are there");
    for (const s of secrets)
      assert.ok(!text.includes(s), `a secret leaked into the logs: ${s.slice(0, 12)}…`);
  });
});
