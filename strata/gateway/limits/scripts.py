"""The two Lua scripts `RedisLimiter` runs: each is one atomic step on the Redis server.

Key layout (all under `strata:limits:`, all with a TTL so nothing outlives its use):

    strata:limits:<kind>:<scope id>:<meter>:<window>   string: the window's count
                                                        (requests, tokens or micro-dollars);
                                                        expires a grace period after the window
    strata:limits:<kind>:<scope id>:concurrent          sorted set: reservation id -> lease
                                                        expiry (epoch ms); expires with its
                                                        newest lease

Lua numbers are doubles: counts stay exact up to 2**53 (9e15 tokens or micro-dollars).
"""

from __future__ import annotations

# KEYS[i]: check i's counter or lease set.
# ARGV: now_ms, lease_until_ms, reservation_id, then four per check:
#   "c" (counter) or "s" (slots), limit, amount, expire_at_ms.
# Returns {} when everything was taken, else {i, used, j, used, ...} for each check that did
# not fit; then nothing was taken. Expired leases (dead gateways' slots) are purged first.
RESERVE = """
local now = tonumber(ARGV[1])
local lease_until = ARGV[2]
local id = ARGV[3]
local function arg(i, j) return ARGV[3 + (i - 1) * 4 + j] end

local failed = {}
for i, key in ipairs(KEYS) do
  local used
  if arg(i, 1) == 's' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    used = redis.call('ZCARD', key)
  else
    used = tonumber(redis.call('GET', key) or '0')
  end
  if used + tonumber(arg(i, 3)) > tonumber(arg(i, 2)) then
    failed[#failed + 1] = i
    failed[#failed + 1] = used
  end
end
if #failed > 0 then return failed end

for i, key in ipairs(KEYS) do
  if arg(i, 1) == 's' then
    redis.call('ZADD', key, lease_until, id)
    redis.call('PEXPIREAT', key, lease_until)
  else
    redis.call('INCRBY', key, arg(i, 3))
    redis.call('PEXPIREAT', key, arg(i, 4))
  end
end
return {}
"""

# KEYS[i]: a counter or lease set the reservation took from.
# ARGV: reservation_id, then two per key: "c" or "s", amount to give back.
# A counter that has expired (its window is over) is left alone rather than recreated.
GIVE_BACK = """
local id = ARGV[1]
for i, key in ipairs(KEYS) do
  if ARGV[2 * i] == 's' then
    redis.call('ZREM', key, id)
  elseif redis.call('EXISTS', key) == 1 then
    if redis.call('DECRBY', key, ARGV[2 * i + 1]) < 0 then
      redis.call('SET', key, 0, 'KEEPTTL')
    end
  end
end
return 0
"""
