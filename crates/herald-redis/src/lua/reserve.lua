-- Leases up to `max` jobs, after housekeeping: due delayed jobs move to the wait set, and jobs
-- whose lease expired go back to it (a stalled run counts as an attempt and as a failed run;
-- past max_attempts the job goes dead).
-- KEYS: wait, delayed, active, dead, seq, counts
-- ARGV: prefix, now_ms, max, lease_ms, lease token prefix, worker, housekeeping batch size
-- Returns 7 strings per job: id, name, priority, payload, attempts, max_attempts, lease token.
local prefix, now, batch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[7])

-- The due members are the lowest-ranked ones, so ZREMRANGEBYRANK removes exactly them.
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, batch)
if #due > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, #due - 1)
  local base = redis.call('INCRBY', KEYS[5], #due) - #due
  for k, id in ipairs(due) do
    local key = prefix .. 'job:' .. id
    local j = redis.call('HMGET', key, 'name', 'priority')
    -- A member without its hash cannot run; dropping it keeps the queue moving.
    if j[1] then
      redis.call('ZADD', KEYS[1], wait_score(j[2], base + k), id)
      redis.call('HSET', key, 'state', 'waiting')
      bump(j[1], 'delayed', -1)
      bump(j[1], 'waiting', 1)
    end
  end
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, batch)
if #expired > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, #expired - 1)
  local base = redis.call('INCRBY', KEYS[5], #expired) - #expired
  for k, id in ipairs(expired) do
    local key = prefix .. 'job:' .. id
    local j = redis.call('HMGET', key, 'name', 'priority', 'attempts', 'max_attempts')
    if j[1] then
      redis.call('HDEL', key, 'lease', 'worker')
      bump(j[1], 'active', -1)
      bump(j[1], 'failed', 1)
      local err = 'lease expired: the worker stopped or stalled'
      if tonumber(j[3]) >= tonumber(j[4]) then
        redis.call('ZADD', KEYS[4], now, id)
        redis.call('HSET', key, 'state', 'dead', 'last_error', err)
        bump(j[1], 'dead', 1)
      else
        redis.call('ZADD', KEYS[1], wait_score(j[2], base + k), id)
        redis.call('HSET', key, 'state', 'waiting', 'last_error', err)
        bump(j[1], 'waiting', 1)
      end
    end
  end
end

local out = {}
local max = tonumber(ARGV[3])
if max > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], max)
  local expiry = now + tonumber(ARGV[4])
  local n, leased_ = 0, {}
  for k = 1, #popped, 2 do
    local id = popped[k]
    local key = prefix .. 'job:' .. id
    local j = redis.call('HMGET', key, 'name', 'priority', 'payload', 'max_attempts', 'attempts')
    if j[1] then
      n = n + 1
      local token = ARGV[5] .. n
      local attempts = tostring((tonumber(j[5]) or 0) + 1)
      redis.call('HSET', key, 'state', 'active', 'lease', token, 'worker', ARGV[6], 'attempts', attempts)
      leased_[#leased_ + 1] = expiry
      leased_[#leased_ + 1] = id
      bump(j[1], 'waiting', -1)
      bump(j[1], 'active', 1)
      out[#out + 1] = id
      out[#out + 1] = j[1]
      out[#out + 1] = j[2]
      out[#out + 1] = j[3]
      out[#out + 1] = attempts
      out[#out + 1] = j[4]
      out[#out + 1] = token
    end
  end
  zadd_many(KEYS[3], leased_)
end
flush_counts(KEYS[6])
return out
