-- Gives a leased job back without counting the run as an attempt (graceful shutdown).
-- KEYS: active, wait, seq, wake, counts, job, lease
-- ARGV: id, token
local id = ARGV[1]
if redis.call('HGET', KEYS[7], id) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[7], id)
-- The record still holds the run count from before this lease: the run does not count.
local name, priority = job_fields(redis.call('HGET', KEYS[6], id))
if not name then return 1 end
redis.call('ZADD', KEYS[2], wait_score(priority, redis.call('INCR', KEYS[3])), id)
bump(name, 'active', -1)
bump(name, 'waiting', 1)
flush_counts(KEYS[5])
wake(KEYS[4], 1)
return 1
