/** An echo service process: `SERVICE_NAME=echo ETCD_ENDPOINTS=… node --import tsx echo-main.ts`. */
import { baseConfigSchema, loadConfig } from "../runtime/config.ts";
import { runService } from "../runtime/server.ts";
import { echoRoutes } from "./echo-service.ts";

await runService(() => ({
  name: process.env.SERVICE_NAME ?? "echo",
  config: loadConfig(baseConfigSchema),
  setup: (ctx) => echoRoutes(ctx),
}));
