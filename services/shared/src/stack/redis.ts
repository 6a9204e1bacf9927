/** A private redis-server on a loopback port, for tests and the demo. */
import { mkdir } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { ensureBinary } from "./binaries.ts";
import {
  handleOf,
  type ManagedServer,
  retryOnPortClash,
  type ServerHandle,
  startManaged,
} from "./managed-server.ts";
import { freePort, LOOPBACK } from "./net.ts";

export interface RedisOptions {
  /** Keep an append-only file, so that a restart after kill() replays the writes. Default false. */
  appendonly?: boolean;
  /** How often the AOF is fsynced; "always" survives SIGKILL with no loss. Default "everysec". */
  appendfsync?: "always" | "everysec" | "no";
  readyTimeoutMs?: number;
}

export interface RedisServer extends ServerHandle {
  readonly host: string;
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
}

export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const binary = await ensureBinary("redis-server", "redis-server");
  const appendonly = options.appendonly ?? false;
  const appendfsync = options.appendfsync ?? "everysec";
  return retryOnPortClash(async () => {
    const port = await freePort();
    const server = await startManaged(
      "redis",
      (dataDir) => ({
        what: `redis-server on ${LOOPBACK}:${port}`,
        command: binary,
        // Foreground, no RDB snapshots (tests want a clean slate and no fork
        // pauses), persistence only through the AOF when asked for.
        args: [
          "--port",
          String(port),
          "--bind",
          LOOPBACK,
          "--dir",
          join(dataDir, "data"),
          "--save",
          "",
          "--appendonly",
          appendonly ? "yes" : "no",
          "--appendfsync",
          appendfsync,
          "--daemonize",
          "no",
          "--logfile",
          join(dataDir, "server.log"),
          "--protected-mode",
          "no",
        ],
        isReady: async () => (await redisPing(port)) === "+PONG",
        readyTimeoutMs: options.readyTimeoutMs ?? 15_000,
      }),
      (dataDir) => mkdir(join(dataDir, "data")).then(() => undefined),
    );
    const persistence = appendonly ? `aof ${appendfsync}` : "no persistence";
    return redisHandle(server, port, persistence);
  });
}

function redisHandle(server: ManagedServer, port: number, persistence: string): RedisServer {
  // Object.assign keeps the shared part's live `pid` getter (a spread would freeze it).
  return Object.assign(handleOf(server), {
    host: LOOPBACK,
    port,
    url: `redis://${LOOPBACK}:${port}`,
    describe: () => `redis-server  redis://${LOOPBACK}:${port}  pid ${server.pid}  ${persistence}`,
  });
}

/**
 * Sends PING over a raw socket: "+PONG" when ready, "-LOADING ..." while the
 * AOF is replayed. No client library, so no reconnect logic to fight with.
 */
function redisPing(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: LOOPBACK, port });
    let reply = "";
    socket.setTimeout(1000, () => socket.destroy(new Error("PING timed out")));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      reply += chunk.toString();
      if (reply.includes("\r\n")) {
        socket.destroy();
        resolve(reply.trim());
      }
    });
    socket.once("error", reject);
    socket.once("close", () => reject(new Error("connection closed before a reply")));
  });
}
