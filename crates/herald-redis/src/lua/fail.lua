-- KEYS: active, delayed, dead, counts, job, lease, error
-- ARGV: id, token, error, retry_ms, now_ms
-- Returns 1, or 0 when the lease is not current.
local id, now = ARGV[1], tonumber(ARGV[5])
if redis.call('HGET', KEYS[6], id) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[6], id)
redis.call('HSET', KEYS[7], id, ARGV[3])
local name, priority, max_attempts, runs, payload = job_fields(redis.call('HGET', KEYS[5], id))
if not name then return 1 end
-- The failed run counts: the record takes the run count from the lease's token.
runs = token_fields(ARGV[2]) or runs + 1
redis.call('HSET', KEYS[5], id, pack_job(name, priority, max_attempts, runs, payload))
bump(name, 'active', -1)
bump(name, 'failed', 1)
if runs >= tonumber(max_attempts) then
  redis.call('ZADD', KEYS[3], now, id)
  bump(name, 'dead', 1)
else
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), id)
  bump(name, 'delayed', 1)
end
flush_counts(KEYS[4])
return 1
