/** The order service process: `node --import tsx services/order/src/main.ts` (config from env). */
import { loadConfig } from "../../shared/src/runtime/config.ts";
import { runService } from "../../shared/src/runtime/server.ts";
import { orderConfigSchema } from "./config.ts";
import { orderService } from "./service.ts";

await runService(() => orderService(loadConfig(orderConfigSchema)));
