-- KEYS: active, finished, counts
-- ARGV: prefix, finished jobs to keep, then (id, token) pairs
-- Returns one 1 per pair, or 0 where the lease is not current. Completing many jobs in one call
-- saves a round trip and a script run per job on the workers' hot path.
local done = {}
local finished = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key, j = leased(ARGV[1], id, token)
  if key then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HSET', key, 'state', 'completed')
    redis.call('HDEL', key, 'lease', 'worker')
    bump(j[3], 'active', -1)
    bump(j[3], 'completed', 1)
    finished[#finished + 1] = id
    done[#done + 1] = 1
  else
    done[#done + 1] = 0
  end
end
flush_counts(KEYS[3])
-- Finished jobs are kept for inspection up to a bound; their ids stay in the seen set.
for s = 1, #finished, CHUNK do
  redis.call('LPUSH', KEYS[2], unpack(finished, s, math.min(s + CHUNK - 1, #finished)))
end
local extra = redis.call('LLEN', KEYS[2]) - tonumber(ARGV[2])
for _ = 1, extra do
  local old = redis.call('RPOP', KEYS[2])
  if old then redis.call('DEL', ARGV[1] .. 'job:' .. old) end
end
return done
