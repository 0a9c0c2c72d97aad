-- Helpers prepended to every queue script (see scripts.rs).

-- Wait-set score: -priority * 2^40 + sequence, so ZPOPMIN takes the largest priority first and
-- FIFO within a priority. The priority is clamped to +-4095 so that every score stays an exact
-- integer in a double (|score| < 2^53); the sequence has 2^40 values before it would spill over.
local PRIORITY_UNIT = 1099511627776
local function wait_score(priority, seq)
  local p = tonumber(priority) or 0
  if p > 4095 then p = 4095 elseif p < -4095 then p = -4095 end
  return -p * PRIORITY_UNIT + seq
end

-- Counter changes ("<jobname>:<state>" fields of the counts hash) are summed and written once.
local deltas = {}
local function bump(name, state, d)
  local f = name .. ':' .. state
  deltas[f] = (deltas[f] or 0) + d
end
local function flush_counts(counts)
  for f, d in pairs(deltas) do
    if d ~= 0 then redis.call('HINCRBY', counts, f, d) end
  end
end

-- Wakes blocked waiters (BLPOP on the wake list). A few tokens wake a few waiters; the list is
-- trimmed so that tokens nobody consumed cause at most a few spurious wake-ups later.
local WAKE_TOKENS = 4
local function wake(key, ready)
  if ready > 0 then
    local t = {}
    for k = 1, math.min(ready, WAKE_TOKENS) do t[k] = '1' end
    redis.call('LPUSH', key, unpack(t))
    redis.call('LTRIM', key, 0, WAKE_TOKENS - 1)
  end
end

-- Commands on many members are sent in chunks: Lua's unpack() has a limit of a few thousand values.
local CHUNK = 500
-- ZADD of a flat list {score, member, score, member, ...}.
local function zadd_many(key, flat)
  for s = 1, #flat, 2 * CHUNK do
    redis.call('ZADD', key, unpack(flat, s, math.min(s + 2 * CHUNK - 1, #flat)))
  end
end
local function zrem_many(key, members)
  for s = 1, #members, CHUNK do
    redis.call('ZREM', key, unpack(members, s, math.min(s + CHUNK - 1, #members)))
  end
end

-- Enqueues n jobs read from ARGV from index i on, six fields each:
-- id, name, priority, delay_ms, max_attempts, payload.
-- K holds the key names seen, wait, delayed, seq and wake. Returns how many jobs were new.
-- The seen set outlives trimmed job hashes, so an id is enqueued once, ever. It is read and
-- written once per chunk of jobs (SMISMEMBER, SADD) rather than once per job.
local function enqueue_jobs(prefix, K, now, i, n)
  local ids = {}
  for k = 1, n do ids[k] = ARGV[i + 6 * (k - 1)] end
  local known = {}
  for s = 1, n, CHUNK do
    local e = math.min(s + CHUNK - 1, n)
    local r = redis.call('SMISMEMBER', K.seen, unpack(ids, s, e))
    for k = s, e do known[k] = r[k - s + 1] == 1 end
  end
  local new, taken, ready, later, base = {}, {}, {}, {}, nil
  for k = 1, n do
    local id = ids[k]
    if not known[k] and not taken[id] then
      taken[id] = true
      new[#new + 1] = id
      local name, priority, delay = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
      local state
      if delay > 0 then
        state = 'delayed'
        later[#later + 1] = now + delay
        later[#later + 1] = id
      else
        state = 'waiting'
        -- One INCRBY reserves sequence numbers for the whole batch.
        if not base then base = redis.call('INCRBY', K.seq, n) - n end
        ready[#ready + 1] = wait_score(priority, base + #ready / 2 + 1)
        ready[#ready + 1] = id
      end
      redis.call('HSET', prefix .. 'job:' .. id, 'name', name, 'priority', priority,
        'attempts', 0, 'max_attempts', ARGV[i + 4], 'payload', ARGV[i + 5], 'state', state)
      bump(name, state, 1)
    end
    i = i + 6
  end
  for s = 1, #new, CHUNK do
    redis.call('SADD', K.seen, unpack(new, s, math.min(s + CHUNK - 1, #new)))
  end
  zadd_many(K.wait, ready)
  zadd_many(K.delayed, later)
  wake(K.wake, #ready / 2)
  return #new
end

-- The job hash when `token` is its current lease, else nil.
local function leased(prefix, id, token)
  local key = prefix .. 'job:' .. id
  local j = redis.call('HMGET', key, 'state', 'lease', 'name', 'attempts', 'max_attempts', 'priority')
  if j[1] ~= 'active' or j[2] ~= token then return nil end
  return key, j
end
