-- KEYS: active, finished, counts, job, lease, error
-- ARGV: finished jobs to keep, then (id, token) pairs
-- Returns one 1 per pair, or 0 where the lease is not current. Completing many jobs in one call
-- saves a round trip and a script run per job on the workers' hot path.
local ACTIVE, FINISHED, COUNTS, JOB, LEASE, ERROR = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ids = {}
for i = 2, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
local current = hmget_many(LEASE, ids)
local done, finished, taken = {}, {}, {}
for k, id in ipairs(ids) do
  local token = ARGV[2 * k + 1]
  if current[k] and current[k] == token and not taken[id] then
    taken[id] = true
    finished[#finished + 1] = id
    done[k] = 1
    local _, name = token_fields(token)
    if name then
      bump(name, 'active', -1)
      bump(name, 'completed', 1)
    end
  else
    done[k] = 0
  end
end
if #finished > 0 then
  flush_counts(COUNTS)
  zrem_many(ACTIVE, finished)
  -- A finished job keeps only its id (in the finished list, trimmed to a bound) and its place
  -- in the seen set; its record is dropped at once, so memory does not grow with finished jobs.
  hdel_many(LEASE, finished)
  hdel_many(JOB, finished)
  hdel_many(ERROR, finished)
  each_chunk('LPUSH', FINISHED, finished, 1)
  redis.call('LTRIM', FINISHED, 0, tonumber(ARGV[1]) - 1)
end
return done
