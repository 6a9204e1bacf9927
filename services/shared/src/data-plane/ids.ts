import { randomBytes } from "node:crypto";

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; // Crockford base32

/**
 * A ULID: 26 characters, 48 bits of millisecond time then 80 random bits.
 * Sortable by creation time, unique across instances without coordination,
 * and not guessable (order ids are shown to buyers).
 */
export function newId(now = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = alphabet[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const bytes = randomBytes(16);
  let random = "";
  for (let i = 0; i < 16; i++) random += alphabet[bytes[i]! & 31];
  return time + random;
}

/** The creation time encoded in an id made by `newId`. */
export function idTime(id: string): number {
  let t = 0;
  for (const ch of id.slice(0, 10)) t = t * 32 + alphabet.indexOf(ch);
  return t;
}

/**
 * The grammar of every id that travels the data plane (activity, user, request
 * and order ids, and the ids of the reservations core keeps): 1 to
 * MAX_ID_LENGTH characters from ID_CHARACTERS. No braces, so an activity id can
 * never break the `{act:<id>}` hash tag; no whitespace, control characters or
 * `/` (an activity id is also an etcd key segment). Every id that fits here fits
 * the orders table's columns, so nothing core accepts is refused downstream.
 */
export const MAX_ID_LENGTH = 128;

/** The characters an id may use, as a regular-expression character class body. */
export const ID_CHARACTERS = "A-Za-z0-9._:-";

/** A whole id: 1..MAX_ID_LENGTH characters of ID_CHARACTERS. */
export const ID_PATTERN = new RegExp(`^[${ID_CHARACTERS}]{1,${MAX_ID_LENGTH}}$`);

/** Why `value` is not a usable id (naming `field`), or undefined when it is. */
export function idProblem(field: string, value: string): string | undefined {
  if (value.length === 0) return `${field} is required`;
  if (value.length > MAX_ID_LENGTH) return `${field} is longer than ${MAX_ID_LENGTH} characters`;
  if (!ID_PATTERN.test(value))
    return `${field} may only contain letters, digits and . _ : - (got ${JSON.stringify(value.slice(0, 40))})`;
  return undefined;
}

/**
 * Order ids are made by seckill-core (`newId`, a ULID): a stricter shape than
 * the general grammar, 1..ORDER_ID_MAX_LENGTH letters and digits. The order id
 * is also the reservation id and the orders table's primary key (varchar(26)).
 */
export const ORDER_ID_MAX_LENGTH = 26;

const orderIdPattern = new RegExp(`^[0-9A-Za-z]{1,${ORDER_ID_MAX_LENGTH}}$`);

/** Why `value` is not an order id (naming `field`), or undefined when it is. */
export function orderIdProblem(field: string, value: string): string | undefined {
  if (value.length === 0) return `${field} is required`;
  if (!orderIdPattern.test(value))
    return `${field} is not an order id: it must be 1..${ORDER_ID_MAX_LENGTH} alphanumeric characters`;
  return undefined;
}
