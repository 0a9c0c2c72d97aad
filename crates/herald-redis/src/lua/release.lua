-- Gives a leased job back without counting the run as an attempt (graceful shutdown).
-- KEYS: active, wait, seq, wake, counts
-- ARGV: prefix, id, token
local key, j = leased(ARGV[1], ARGV[2], ARGV[3])
if not key then return 0 end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', key, 'lease', 'worker')
redis.call('HINCRBY', key, 'attempts', -1)
redis.call('HSET', key, 'state', 'waiting')
redis.call('ZADD', KEYS[2], wait_score(j[6], redis.call('INCR', KEYS[3])), ARGV[2])
bump(j[3], 'active', -1)
bump(j[3], 'waiting', 1)
flush_counts(KEYS[5])
wake(KEYS[4], 1)
return 1
