import { Code, ConnectError } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import { EchoService } from "../../../gen/seckill/echo/v1/echo_pb.ts";
import type { ServiceContext } from "../runtime/server.ts";
import { sleep } from "../runtime/time.ts";
import type { Routes } from "../transport/grpc-server.ts";

/** The echo service's routes: no business logic, only what the mesh tests and benchmarks probe. */
export function echoRoutes(ctx: Pick<ServiceContext, "config" | "mesh">): Routes {
  const instanceId = ctx.config.INSTANCE_ID;
  let total = 0n;
  return (router) =>
    router.service(EchoService, {
      async echo(req, call) {
        const timeout = call.timeoutMs();
        const deadlineRemainingMs = BigInt(timeout === undefined ? -1 : Math.round(timeout));
        if (req.sleepMs > 0) await sleep(req.sleepMs, call.signal);
        if (call.signal.aborted) throw new ConnectError("cancelled", Code.Canceled);
        if (req.failCode !== 0) {
          if (!(req.failCode in Code))
            throw new ConnectError(`no such code ${req.failCode}`, Code.InvalidArgument);
          throw new ConnectError("failing as asked", req.failCode as Code);
        }
        const forwarded = req.forwardToService
          ? await ctx.mesh
              .client(EchoService, req.forwardToService)
              .echo({ message: req.message }, { signal: call.signal })
          : undefined;
        return {
          message: req.message,
          instanceId,
          traceId: trace.getActiveSpan()?.spanContext().traceId ?? "",
          deadlineRemainingMs,
          forwarded,
        };
      },
      count(req) {
        total += req.delta;
        return { total, instanceId };
      },
      async *echoStream(req, call) {
        for (let index = 0; index < req.count && !call.signal.aborted; index++) {
          if (index > 0 && req.intervalMs > 0) await sleep(req.intervalMs, call.signal);
          yield { message: req.message, index, instanceId };
        }
      },
    });
}
