/** Request checks shared by the handlers and the client helper (pure, no I/O). */

/** Ids are opaque strings, but not unbounded ones: they become parts of Redis keys. */
export const MAX_ID_LENGTH = 256;

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

/** Why a required id field is unusable, or undefined. */
export function idProblem(field: string, value: string): string | undefined {
  if (value.length === 0) return `${field} is required`;
  if (value.length > MAX_ID_LENGTH) return `${field} is longer than ${MAX_ID_LENGTH} characters`;
  return undefined;
}
