/**
 * Page tokens: opaque to clients (base64url of a tagged cursor), checked on the
 * way in so a forged or stale token is INVALID_ARGUMENT, never a SQL surprise.
 */
import { invalid } from "./validation.ts";

export function encodeToken(kind: string, cursor: readonly string[]): string {
  return Buffer.from(JSON.stringify([kind, ...cursor])).toString("base64url");
}

/** The cursor of a token made by `encodeToken(kind, …)` with `parts` strings, or undefined for "". */
export function decodeToken(kind: string, token: string, parts: number): string[] | undefined {
  if (token === "") return undefined;
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalid("page_token is not valid (use next_page_token of the previous page)");
  }
  if (
    !Array.isArray(decoded) ||
    decoded.length !== parts + 1 ||
    decoded[0] !== kind ||
    !decoded.every((x) => typeof x === "string" && x.length <= 256)
  )
    throw invalid("page_token is not valid (use next_page_token of the previous page)");
  return decoded.slice(1) as string[];
}
