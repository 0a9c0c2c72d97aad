-- KEYS: active, finished, counts
-- ARGV: prefix, id, token, finished jobs to keep
-- Returns 1, or 0 when the lease is not current.
local key, j = leased(ARGV[1], ARGV[2], ARGV[3])
if not key then return 0 end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HSET', key, 'state', 'completed')
redis.call('HDEL', key, 'lease', 'worker')
bump(j[3], 'active', -1)
bump(j[3], 'completed', 1)
flush_counts(KEYS[3])
-- Finished jobs are kept for inspection up to a bound; their ids stay in the seen set.
redis.call('LPUSH', KEYS[2], ARGV[2])
local extra = redis.call('LLEN', KEYS[2]) - tonumber(ARGV[4])
for _ = 1, extra do
  local old = redis.call('RPOP', KEYS[2])
  if old then redis.call('DEL', ARGV[1] .. 'job:' .. old) end
end
return 1
