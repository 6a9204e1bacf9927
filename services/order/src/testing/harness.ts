/** Order service instances in-process on a real stack, and clients with a caller identity. */
import type { Client } from "@connectrpc/connect";
import type { Activity } from "../../../gen/seckill/common/v1/common_pb.ts";
import { OrderService } from "../../../gen/seckill/order/v1/order_pb.ts";
import type { Mesh } from "../../../shared/src/mesh/mesh.ts";
import { loadConfig } from "../../../shared/src/runtime/config.ts";
import { type RunningService, startService } from "../../../shared/src/runtime/server.ts";
import { activityKey, encodeActivity } from "../../../shared/src/sale/activities.ts";
import type { Etcd3 } from "../../../shared/src/stores/etcd.ts";
import { activityFixture } from "../../../shared/src/testing/fixtures.ts";
import { identityHeaders, type Role } from "../../../shared/src/transport/identity.ts";
import { type OrderConfig, orderConfigSchema } from "../config.ts";
import { orderService } from "../service.ts";

export interface StackUrls {
  etcdEndpoints: string[];
  redisUrl: string;
  mysqlUri: string;
}

export function orderConfig(
  urls: StackUrls,
  instanceId: string,
  env: Record<string, string> = {},
): OrderConfig {
  return loadConfig(orderConfigSchema, {
    ETCD_ENDPOINTS: urls.etcdEndpoints.join(","),
    REDIS_URL: urls.redisUrl,
    MYSQL_URI: urls.mysqlUri,
    INSTANCE_ID: instanceId,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
    SHUTDOWN_DELAY_MS: "0",
    REGISTRATION_TTL_SECONDS: "5",
    CONSUMER_BLOCK_MS: "200",
    CLAIM_IDLE_MS: "1000",
    CLAIM_INTERVAL_MS: "500",
    SWEEP_INTERVAL_MS: "100",
    SETTLE_INTERVAL_MS: "300",
    SETTLE_GRACE_MS: "2000",
    WATCH_POLL_MS: "2000",
    ...env,
  });
}

export function startOrder(
  urls: StackUrls,
  instanceId: string,
  env: Record<string, string> = {},
): Promise<RunningService> {
  return startService(orderService(orderConfig(urls, instanceId, env)));
}

export interface ActivityOptions {
  totalStock?: number;
  perUserLimit?: number;
  paymentTimeoutSeconds?: number;
}

/** The activity admin would publish (the kit's activityFixture with order's defaults). */
export function activityDefinition(id: string, o: ActivityOptions = {}): Activity {
  return activityFixture({
    id,
    title: `Test sale ${id}`,
    totalStock: o.totalStock ?? 1000,
    perUserLimit: o.perUserLimit ?? 5,
    paymentTimeoutSeconds: o.paymentTimeoutSeconds,
  });
}

/** Publishes an activity to etcd as admin would: order's catalog then consumes its stream. */
export async function publishActivity(
  etcd: Etcd3,
  id: string,
  o: ActivityOptions = {},
): Promise<void> {
  await etcd.put(activityKey(id)).value(encodeActivity(activityDefinition(id, o)));
}

export type OrderClient = Client<typeof OrderService>;

/** Call options carrying a caller identity, as the gateway would set them. */
export const as = (userId: string, role: Role = "user") => ({
  headers: identityHeaders({ userId, role, ip: undefined }),
});

export function orderClient(mesh: Mesh): OrderClient {
  return mesh.client(OrderService, "order");
}
