import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { pathToFileURL } from "node:url";
import { Etcd3 } from "etcd3";
import { Redis } from "ioredis";
import { createConnection } from "mysql2/promise";
import {
  canConnect,
  ensureBinary,
  INSTALL_HINT,
  STACK_DIR_PREFIX,
  startEtcd,
  startMariaDb,
  startRedis,
  startStack,
  stopAllServers,
  sweepOrphans,
} from "./index.ts";
import { waitFor } from "./wait.ts";

// Whatever a failing test leaves running is stopped here, not by a later test.
after(() => stopAllServers());

function assertStackDir(dir: string): void {
  assert.ok(dir.startsWith(join(tmpdir(), STACK_DIR_PREFIX)), `${dir} is not a stack dir`);
}

/** Alive and not a zombie: a killed server may wait to be reaped by an init that never does. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

describe("ensureBinary", () => {
  test("finds an installed binary, also in sbin", async () => {
    assert.equal(await ensureBinary("redis-server", "redis-server"), "/usr/bin/redis-server");
    assert.match(await ensureBinary("mariadbd", "mariadb-server"), /\/mariadbd$/);
  });

  test("says exactly what to install when it may not install", async () => {
    await assert.rejects(
      ensureBinary("seckill-no-such-server", "seckill-no-such-package", { allowInstall: false }),
      (error: Error) => {
        assert.match(error.message, /seckill-no-such-server not found/);
        assert.match(error.message, /package seckill-no-such-package/);
        assert.ok(error.message.includes(INSTALL_HINT), error.message);
        assert.equal(
          INSTALL_HINT,
          "sudo apt-get install -y redis-server mariadb-server etcd-server",
        );
        return true;
      },
    );
  });

  test("runs apt-get update once, then install, and reports a failed install", async () => {
    const calls: string[] = [];
    const runCommand = async (command: string, args: string[]) => {
      calls.push([command, ...args].join(" "));
      if (args.includes("install")) throw new Error("E: Unable to locate package");
    };
    for (const binary of ["seckill-no-such-a", "seckill-no-such-b"]) {
      await assert.rejects(
        ensureBinary(binary, "seckill-no-such-package", { allowInstall: true, runCommand }),
        (error: Error) => {
          assert.match(
            error.message,
            /installing the Debian package seckill-no-such-package failed/,
          );
          assert.match(error.message, /Unable to locate package/);
          assert.ok(error.message.includes(INSTALL_HINT));
          return true;
        },
      );
    }
    assert.equal(calls.filter((call) => call.endsWith(" update")).length, 1);
    assert.equal(
      calls.filter((call) => / install -y seckill-no-such-package$/.test(call)).length,
      2,
    );
    assert.ok(calls[0]?.startsWith("/usr/bin/apt-get"));
  });

  test("reports a binary still missing after a successful install", async () => {
    const runCommand = async () => {};
    await assert.rejects(
      ensureBinary("seckill-no-such-c", "seckill-pkg", { allowInstall: true, runCommand }),
      /installed the Debian package seckill-pkg but seckill-no-such-c is still not found/,
    );
  });
});

describe("redis", { timeout: 60_000 }, () => {
  test("serves SET/GET, and stop() closes the port and removes the directory", async () => {
    const redis = await startRedis();
    assertStackDir(redis.dataDir);
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    assert.notEqual(redis.port, 6379);
    const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    try {
      await client.set("greeting", "hello");
      assert.equal(await client.get("greeting"), "hello");
    } finally {
      client.disconnect();
    }
    const pid = redis.pid;
    await redis.stop();
    assert.equal(await canConnect(redis.port), false);
    assert.equal(existsSync(redis.dataDir), false);
    assert.equal(isAlive(pid), false);
    await redis.stop(); // idempotent
  });

  test("with appendfsync always, keys survive kill -9 and restart() on the same port", async () => {
    const redis = await startRedis({ appendonly: true, appendfsync: "always" });
    try {
      const client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
      for (let i = 0; i < 100; i++) await client.set(`key:${i}`, String(i));
      await client.incrby("counter", 42);
      client.disconnect();

      const crashedPid = redis.pid;
      await redis.kill("SIGKILL");
      assert.equal(isAlive(crashedPid), false);
      assert.equal(await canConnect(redis.port), false);
      assert.ok(existsSync(redis.dataDir), "kill() must not clean up");

      await redis.restart();
      assert.notEqual(redis.pid, crashedPid);
      const again = new Redis(redis.url, { maxRetriesPerRequest: 1 });
      try {
        assert.equal(await again.dbsize(), 101);
        assert.equal(await again.get("key:99"), "99");
        assert.equal(await again.get("counter"), "42");
      } finally {
        again.disconnect();
      }
    } finally {
      await redis.stop();
    }
    assert.equal(existsSync(redis.dataDir), false);
  });
});

describe("mariadb", { timeout: 90_000 }, () => {
  test("creates, inserts, selects; committed rows survive kill -9; stop() removes the dir", async () => {
    const db = await startMariaDb();
    assertStackDir(db.dataDir);
    assert.equal(db.uri, `mysql://root@127.0.0.1:${db.port}/seckill`);
    assert.notEqual(db.port, 3306);
    try {
      const connection = await createConnection(db.uri);
      await connection.query(
        "CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL) ENGINE=InnoDB",
      );
      await connection.query("INSERT INTO item VALUES (1, 'phone'), (2, '手机')");
      const [rows] = await connection.query("SELECT id, name FROM item ORDER BY id");
      assert.deepEqual(rows, [
        { id: 1, name: "phone" },
        { id: 2, name: "手机" },
      ]);
      const [[settings]] = (await connection.query(
        "SELECT @@character_set_server AS charset, @@innodb_flush_log_at_trx_commit AS flush",
      )) as unknown as [[{ charset: string; flush: number }]];
      assert.deepEqual(settings, { charset: "utf8mb4", flush: 1 });
      await connection.end();

      await db.kill("SIGKILL");
      await db.restart();
      const after = await createConnection(db.uri);
      const [survivors] = await after.query("SELECT COUNT(*) AS n FROM item");
      assert.deepEqual(survivors, [{ n: 2 }]);
      await after.end();
    } finally {
      await db.stop();
    }
    assert.equal(existsSync(db.dataDir), false);
    assert.equal(await canConnect(db.port), false);
  });
});

describe("etcd", { timeout: 60_000 }, () => {
  test("a key survives kill -9 and restart(); stop() removes the dir", async () => {
    const etcd = await startEtcd();
    assertStackDir(etcd.dataDir);
    assert.deepEqual(etcd.endpoints, [`http://127.0.0.1:${etcd.clientPort}`]);
    try {
      const client = new Etcd3({ hosts: etcd.endpoints });
      await client.put("/seckill/test").value("kept");
      assert.equal(await client.get("/seckill/test").string(), "kept");
      client.close();

      await etcd.kill("SIGKILL");
      assert.equal(await canConnect(etcd.clientPort), false);
      await etcd.restart();
      const again = new Etcd3({ hosts: etcd.endpoints });
      try {
        assert.equal(await again.get("/seckill/test").string(), "kept");
      } finally {
        again.close();
      }
    } finally {
      await etcd.stop();
    }
    assert.equal(existsSync(etcd.dataDir), false);
    assert.equal(await canConnect(etcd.clientPort), false);
  });
});

describe("startStack", { timeout: 90_000 }, () => {
  test("starts all three in parallel and stops them", async () => {
    const began = performance.now();
    const stack = await startStack({ redis: true, mariadb: true, etcd: true });
    const wallMs = Math.round(performance.now() - began);
    const servers = [stack.redis, stack.mariadb, stack.etcd];
    try {
      console.log(
        `stack startup (parallel): wall ${wallMs} ms; redis ${stack.redis.startupMs} ms, ` +
          `mariadb ${stack.mariadb.startupMs} ms, etcd ${stack.etcd.startupMs} ms`,
      );
      console.log(stack.describe());
      assert.equal(stack.describe().split("\n").length, 3);
      for (const server of servers) assert.ok(isAlive(server.pid));
      assert.ok(await canConnect(stack.redis.port));
      assert.ok(await canConnect(stack.mariadb.port));
      assert.ok(await canConnect(stack.etcd.clientPort));
    } finally {
      await stack.stop();
    }
    for (const server of servers) {
      assert.equal(existsSync(server.dataDir), false);
      assert.equal(isAlive(server.pid), false);
    }
  });

  test("starts only what is asked for", async () => {
    const stack = await startStack({ redis: { appendonly: true } });
    try {
      assert.equal(stack.mariadb, undefined);
      assert.equal(stack.etcd, undefined);
      assert.match(stack.redis.describe(), /aof everysec/);
    } finally {
      await stack.stop();
    }
  });
});

describe("cleanup when the owning process ends", { timeout: 60_000 }, () => {
  const stackUrl = pathToFileURL(join(import.meta.dirname, "index.ts")).href;
  // A node process that starts redis, prints its details, and then, by MODE:
  // "idle" does nothing more (node must exit by itself), "signals" installs the
  // signal cleanup and waits, "hang" just waits.
  const childCode = `
    import { startRedis, installSignalCleanup } from ${JSON.stringify(stackUrl)};
    const mode = process.env.MODE;
    if (mode === "signals") installSignalCleanup();
    const redis = await startRedis();
    console.log(JSON.stringify({ pid: redis.pid, port: redis.port, dataDir: redis.dataDir }));
    if (mode !== "idle") setInterval(() => {}, 1000);
  `;

  function startChild(mode: string) {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", childCode],
      { env: { ...process.env, MODE: mode }, stdio: ["ignore", "pipe", "inherit"] },
    );
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const started = new Promise<{ pid: number; port: number; dataDir: string }>(
      (resolve, reject) => {
        let out = "";
        child.stdout.on("data", (chunk) => {
          out += chunk;
          if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0] ?? ""));
        });
        void exited.then((status) =>
          reject(new Error(`child ended early: ${JSON.stringify(status)}`)),
        );
      },
    );
    return { child, exited, started };
  }

  test("a process that forgets stop() still exits, and its server and dir are gone", async () => {
    const { started, exited } = startChild("idle");
    const redis = await started;
    assert.deepEqual(await exited, { code: 0, signal: null });
    // The exit handler sends SIGKILL; the kernel takes a moment to finish the process.
    await waitFor(() => !isAlive(redis.pid), {
      timeoutMs: 5000,
      what: "the forgotten redis to die",
    });
    assert.equal(existsSync(redis.dataDir), false);
  });

  test("SIGINT with installSignalCleanup() stops the server and exits with 130", async () => {
    const { child, started, exited } = startChild("signals");
    const redis = await started;
    assert.ok(isAlive(redis.pid));
    child.kill("SIGINT");
    assert.deepEqual(await exited, { code: 130, signal: null });
    assert.equal(isAlive(redis.pid), false);
    assert.equal(existsSync(redis.dataDir), false);
  });

  test("after a SIGKILL of the owner the server dies with it and the next sweep removes the dir", async () => {
    const { child, started, exited } = startChild("hang");
    const redis = await started;
    child.kill("SIGKILL");
    await exited;
    await waitFor(() => !isAlive(redis.pid), { timeoutMs: 5000, what: "orphaned redis to die" });
    assert.ok(existsSync(redis.dataDir), "nothing could clean up yet");
    assert.ok(sweepOrphans().includes(redis.dataDir));
    assert.equal(existsSync(redis.dataDir), false);
  });
});
