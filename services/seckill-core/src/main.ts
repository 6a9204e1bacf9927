/** seckill-core: the stock of every activity in Redis (see service.ts). */
import { loadConfig } from "../../shared/src/runtime/config.ts";
import { runService } from "../../shared/src/runtime/server.ts";
import { coreConfigSchema } from "./config.ts";
import { coreService } from "./service.ts";

await runService(() => coreService(loadConfig(coreConfigSchema)));
