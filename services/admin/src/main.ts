/** The admin service process: `node --import tsx services/admin/src/main.ts` (env: see config.ts). */
import { loadConfig } from "../../shared/src/runtime/config.ts";
import { runService } from "../../shared/src/runtime/server.ts";
import { adminConfigSchema } from "./config.ts";
import { adminService } from "./service.ts";

await runService(() => adminService(loadConfig(adminConfigSchema, process.env)));
