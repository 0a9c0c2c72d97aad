-- KEYS: active, delayed, dead, counts
-- ARGV: prefix, id, token, error, retry_ms, now_ms
-- Returns 1, or 0 when the lease is not current.
local key, j = leased(ARGV[1], ARGV[2], ARGV[3])
if not key then return 0 end
local id, now = ARGV[2], tonumber(ARGV[6])
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', key, 'lease', 'worker')
bump(j[3], 'active', -1)
bump(j[3], 'failed', 1)
if tonumber(j[4]) >= tonumber(j[5]) then
  redis.call('ZADD', KEYS[3], now, id)
  redis.call('HSET', key, 'state', 'dead', 'last_error', ARGV[4])
  bump(j[3], 'dead', 1)
else
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), id)
  redis.call('HSET', key, 'state', 'delayed', 'last_error', ARGV[4])
  bump(j[3], 'delayed', 1)
end
flush_counts(KEYS[4])
return 1
