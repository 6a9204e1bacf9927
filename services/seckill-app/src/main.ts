/** seckill-app: the buyer-facing sale logic (see service.ts). Env: see config.ts and README.md. */
import { loadConfig } from "../../shared/src/runtime/config.ts";
import { runService } from "../../shared/src/runtime/server.ts";
import { appConfigSchema } from "./config.ts";
import { appService } from "./service.ts";

await runService(() => appService(loadConfig(appConfigSchema)));
