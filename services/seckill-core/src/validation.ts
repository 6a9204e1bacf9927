/**
 * Request checks shared by the handlers and the client helper (pure, no I/O).
 * Ids follow the data-plane id grammar (shared data-plane/ids.ts).
 */
import { idProblem } from "../../shared/src/data-plane/ids.ts";

export interface ReserveItemFields {
  activityId: string;
  userId: string;
  quantity: number;
  requestId: string;
}

/** Why a Reserve item is malformed (fails the whole batch), or undefined if it is not. */
export function reserveItemProblem(item: ReserveItemFields): string | undefined {
  return (
    idProblem("activity_id", item.activityId) ??
    idProblem("user_id", item.userId) ??
    idProblem("request_id", item.requestId)
  );
}

/** Why a Reserve batch is malformed, or undefined. Quantity is checked per item, as an outcome. */
export function reserveBatchProblem(
  items: readonly ReserveItemFields[],
  maxBatch: number,
): string | undefined {
  if (items.length === 0) return "items is empty: send at least one item";
  if (items.length > maxBatch)
    return `items has ${items.length} entries; this server takes at most ${maxBatch} per call`;
  for (const [index, item] of items.entries()) {
    const problem = reserveItemProblem(item);
    if (problem) return `items[${index}]: ${problem}`;
  }
  return undefined;
}
