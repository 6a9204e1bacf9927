/**
 * The Lua scripts that own an activity's stock. They are TypeScript string
 * constants rather than .lua files so that `tsc` carries them into dist/
 * unchanged; store.ts loads them with ioredis `defineCommand` (EVALSHA, with
 * the script sent once per connection and on NOSCRIPT).
 *
 * Every key a script touches is passed in KEYS and shares the activity's hash
 * tag (shared data-plane/keys.ts), so each script runs unchanged on Redis
 * Cluster. The order-intent entry's field names and the consumer group come
 * from the data-plane contract (data-plane/order-intent.ts), interpolated into
 * the script text when this module loads.
 * "Now" is always `redis.call('TIME')`: one clock for every core instance.
 *
 * Result codes are seckill.common.v1.BuyResult numbers:
 *   1 RESERVED, 2 SOLD_OUT, 3 LIMIT_REACHED, 4 NOT_STARTED, 5 ENDED,
 *   9 NOT_FOUND, 10 INVALID_QUANTITY.
 *
 * Conservation (I5) holds after every script: stock + reserved + paid == total.
 */
import {
  ORDER_CONSUMER_GROUP,
  orderIntentLuaFields,
} from "../../shared/src/data-plane/order-intent.ts";

/** Prelude of the scripts that write: Redis TIME in epoch ms, and integers as plain digits. */
const PRELUDE = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(n) return string.format('%d', n) end
`;

/**
 * Reserves stock for one buy request, atomically.
 *
 * KEYS: 1 meta, 2 stock, 3 reserved, 4 users, 5 req, 6 orders (stream), 7 res:<order_id>
 * ARGV: 1 activity id, 2 user id, 3 quantity, 4 request id, 5 order id (a fresh ULID, used
 *       only when this call reserves)
 * Returns {code, order_id, deadline_ms, remaining, replayed}:
 *   - code: a BuyResult number (see above);
 *   - order_id, deadline_ms: set with RESERVED ("" and 0 otherwise);
 *   - remaining: stock after the call (0 when the activity is not warmed);
 *   - replayed: 1 when request_id was seen before and this is the original answer.
 *
 * Checks, in order: warmed (meta exists) → NOT_FOUND; request id already reserved →
 * the original RESERVED answer, nothing changes; quantity not in 1..limit →
 * INVALID_QUANTITY; status ENDED or now >= end → ENDED; now < start → NOT_STARTED;
 * held + quantity > limit → LIMIT_REACHED; stock < quantity → SOLD_OUT. Otherwise:
 * stock -= q, reserved += q, users[uid] += q, the reservation hash, the request id's
 * answer, and the order intent on the stream, all in this one script.
 *
 * Only reservations are remembered under the request id. Refusals change nothing and
 * may stop being true (stock and holdings come back on Release, admin may move the
 * window), so a retried refusal is evaluated again; it can reserve at most once.
 */
export const RESERVE_LUA = `${PRELUDE}
local m = redis.call('HMGET', KEYS[1], 'status', 'start_ms', 'end_ms', 'limit',
  'pay_timeout_s', 'price_cents', 'currency', 'product_id')
if not m[1] then return {9, '', 0, 0, 0} end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')

local seen = redis.call('HGET', KEYS[5], ARGV[4])
if seen then
  local oid, dl = string.match(seen, '^R|([^|]+)|(%d+)$')
  if oid then return {1, oid, tonumber(dl), stock, 1} end
end

local qty = tonumber(ARGV[3])
local limit = tonumber(m[4])
if not qty or qty < 1 or qty ~= math.floor(qty) or qty > limit then
  return {10, '', 0, stock, 0}
end
local now = now_ms()
if m[1] == 'ENDED' or now >= tonumber(m[3]) then return {5, '', 0, stock, 0} end
if now < tonumber(m[2]) then return {4, '', 0, stock, 0} end
local held = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
if held + qty > limit then return {3, '', 0, stock, 0} end
if stock < qty then return {2, '', 0, stock, 0} end

if redis.call('EXISTS', KEYS[7]) == 1 then
  return redis.error_reply('ERR order id ' .. ARGV[5] .. ' already exists')
end
local deadline = now + tonumber(m[5]) * 1000
local deadline_ms, created_ms = int(deadline), int(now)
stock = redis.call('DECRBY', KEYS[2], qty)
redis.call('INCRBY', KEYS[3], qty)
redis.call('HINCRBY', KEYS[4], ARGV[2], qty)
redis.call('HSET', KEYS[7], 'user', ARGV[2], 'qty', ARGV[3], 'status', 'RESERVED',
  'deadline_ms', deadline_ms, 'request_id', ARGV[4], 'created_ms', created_ms)
redis.call('HSET', KEYS[5], ARGV[4], 'R|' .. ARGV[5] .. '|' .. deadline_ms)
redis.call('XADD', KEYS[6], '*', ${orderIntentLuaFields({
  orderId: "ARGV[5]",
  activityId: "ARGV[1]",
  userId: "ARGV[2]",
  quantity: "ARGV[3]",
  unitPriceCents: "m[6]",
  currency: "m[7]",
  productId: "m[8]",
  deadlineMs: "deadline_ms",
  requestId: "ARGV[4]",
  createdMs: "created_ms",
})})
return {1, ARGV[5], deadline, stock, 0}
`;

/**
 * Returns a reservation's stock, exactly once.
 *
 * KEYS: 1 meta, 2 stock, 3 reserved, 4 users, 5 res:<reservation_id>
 * ARGV: 1 restock channel, 2 reason
 * Returns {code, remaining, status}:
 *   - code 1: released now (RESERVED → RELEASED; stock += q, reserved -= q,
 *     users[uid] -= q; the new stock is published on the restock channel);
 *   - code 0: nothing changed, the reservation is PAID or already RELEASED (status says which);
 *   - code -1: no such reservation; code -2: activity not warmed.
 */
export const RELEASE_LUA = `${PRELUDE}
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, 0, ''} end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
local r = redis.call('HMGET', KEYS[5], 'status', 'user', 'qty')
if not r[1] then return {-1, stock, ''} end
if r[1] ~= 'RESERVED' then return {0, stock, r[1]} end
local qty = tonumber(r[3])
redis.call('HSET', KEYS[5], 'status', 'RELEASED', 'released_ms', int(now_ms()),
  'release_reason', ARGV[2])
stock = redis.call('INCRBY', KEYS[2], qty)
redis.call('DECRBY', KEYS[3], qty)
if redis.call('HINCRBY', KEYS[4], r[2], -qty) <= 0 then redis.call('HDEL', KEYS[4], r[2]) end
redis.call('PUBLISH', ARGV[1], stock)
return {1, stock, 'RELEASED'}
`;

/**
 * Marks a reservation paid.
 *
 * KEYS: 1 meta, 2 reserved, 3 paid, 4 res:<reservation_id>
 * ARGV: none
 * Returns {code}:
 *   - code 1: paid now (RESERVED → PAID; reserved -= q, paid += q; users unchanged,
 *     it counts reserved + paid);
 *   - code 2: was already PAID (nothing changed);
 *   - code 0: was RELEASED (nothing changed, cannot be paid);
 *   - code -1: no such reservation; code -2: activity not warmed.
 */
export const CONFIRM_PAYMENT_LUA = `${PRELUDE}
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local r = redis.call('HMGET', KEYS[4], 'status', 'qty')
if not r[1] then return {-1} end
if r[1] == 'PAID' then return {2} end
if r[1] ~= 'RESERVED' then return {0} end
local qty = tonumber(r[2])
redis.call('HSET', KEYS[4], 'status', 'PAID', 'paid_ms', int(now_ms()))
redis.call('DECRBY', KEYS[2], qty)
redis.call('INCRBY', KEYS[3], qty)
return {1}
`;

/**
 * Loads or updates an activity's definition.
 *
 * KEYS: 1 meta, 2 stock, 3 reserved, 4 paid, 5 orders (stream)
 * ARGV: 1 total, 2 start_ms, 3 end_ms, 4 limit, 5 pay_timeout_s, 6 revision,
 *       7 price_cents, 8 currency, 9 product_id, 10 status ("PUBLISHED" | "ENDED"),
 *       11 create ("1": create the stock when not warmed; "0": only update a warmed one)
 * Returns {already_warm, remaining, applied, revision, total}:
 *   - first time (and create = "1"): stock = total, reserved = paid = 0, the meta, and
 *     the stream with order's consumer group → {0, total, 1, revision, total};
 *   - not warmed and create = "0": nothing → {0, 0, 0, -1, 0};
 *   - warmed: the counters and total are never touched; the meta (window, limit, price,
 *     status, ...) is replaced when revision >= the stored one → applied 1, else 0;
 *     revision and total are the stored ones after the call.
 * Errors if the stock exists without its meta (never written that way).
 */
export const WARM_UP_LUA = `${PRELUDE}
local stored = redis.call('HGET', KEYS[1], 'revision')
if not stored then
  if ARGV[11] ~= '1' then return {0, 0, 0, -1, 0} end
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return redis.error_reply('ERR stock exists without its meta: refusing to warm up again')
  end
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[3], 0)
  redis.call('SET', KEYS[4], 0)
  redis.call('HSET', KEYS[1], 'total', ARGV[1], 'start_ms', ARGV[2], 'end_ms', ARGV[3],
    'limit', ARGV[4], 'pay_timeout_s', ARGV[5], 'revision', ARGV[6], 'price_cents', ARGV[7],
    'currency', ARGV[8], 'product_id', ARGV[9], 'status', ARGV[10], 'warmed_ms', int(now_ms()))
  redis.pcall('XGROUP', 'CREATE', KEYS[5], '${ORDER_CONSUMER_GROUP}', '0', 'MKSTREAM')
  return {0, tonumber(ARGV[1]), 1, tonumber(ARGV[6]), tonumber(ARGV[1])}
end
local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
if tonumber(ARGV[6]) < tonumber(stored) then return {1, stock, 0, tonumber(stored), total} end
redis.call('HSET', KEYS[1], 'start_ms', ARGV[2], 'end_ms', ARGV[3], 'limit', ARGV[4],
  'pay_timeout_s', ARGV[5], 'revision', ARGV[6], 'price_cents', ARGV[7], 'currency', ARGV[8],
  'product_id', ARGV[9], 'status', ARGV[10], 'updated_ms', int(now_ms()))
return {1, stock, 1, tonumber(ARGV[6]), total}
`;

/**
 * Reads the stock counters in one consistent snapshot.
 *
 * KEYS: 1 meta, 2 stock, 3 reserved, 4 paid
 * ARGV: none
 * Returns {found, total, remaining, reserved, paid}; found 0 (and zeros) when not warmed.
 */
export const GET_STOCK_LUA = `
local total = redis.call('HGET', KEYS[1], 'total')
if not total then return {0, 0, 0, 0, 0} end
return {1, tonumber(total), tonumber(redis.call('GET', KEYS[2]) or '0'),
  tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(redis.call('GET', KEYS[4]) or '0')}
`;
