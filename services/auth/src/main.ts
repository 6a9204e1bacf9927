/** The auth service process: `node --import tsx services/auth/src/main.ts` (env: see config.ts). */
import { runService } from "../../shared/src/runtime/server.ts";
import { authSpec } from "./app.ts";
import { loadAuthConfig } from "./config.ts";

await runService(() => authSpec(loadAuthConfig()));
