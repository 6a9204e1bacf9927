/**
 * Ids checked at the edge: a body id that breaks the data-plane id grammar
 * (shared data-plane/ids.ts) is refused here with INVALID_ARGUMENT, the same
 * rule and message seckill-app and seckill-core apply, before any sold-out
 * short-circuit (bad input gets INVALID_ARGUMENT, never a sale answer).
 */
import type { DescMessage, DescMethodUnary, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { idProblem } from "../../shared/src/data-plane/ids.ts";
import type { UnaryHooks } from "./forwarder.ts";
import { refusals } from "./metrics.ts";

/** Hooks of `method` that check the id fields `ids`, then run `inner`'s hooks. */
export function checkIds<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  ids: readonly (keyof MessageShape<I> & string)[],
  inner: UnaryHooks<I, O> = {},
): UnaryHooks<I, O> {
  // Messages name the proto field (activity_id), as the services behind do.
  const fields = ids.map((id) => {
    const desc = method.input.field[id];
    if (!desc) throw new Error(`${method.input.typeName} has no field ${id}`);
    return [id, desc.name] as const;
  });
  return {
    ...inner,
    shortCircuit(req, call) {
      for (const [field, name] of fields) {
        const problem = idProblem(name, String(req[field] ?? ""));
        if (problem) {
          refusals.inc({ reason: "invalid_id", service: call.method.parent.typeName });
          throw new ConnectError(problem, Code.InvalidArgument);
        }
      }
      return inner.shortCircuit?.(req, call);
    },
  };
}
