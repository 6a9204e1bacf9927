/** The gateway process: `node --import tsx services/gateway/src/main.ts` (env: see config.ts). */
import { loadConfig } from "../../shared/src/runtime/config.ts";
import { gatewayConfigSchema } from "./config.ts";
import { runEdgeService } from "./edge-server.ts";
import { gatewaySpec } from "./service.ts";

await runEdgeService(() => gatewaySpec(loadConfig(gatewayConfigSchema)));
