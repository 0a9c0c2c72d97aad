-- Helpers prepended to every queue script (see scripts.rs).
--
-- Jobs live in a few namespace-wide hashes keyed by job id (q:job, q:lease, q:error)
-- rather than one hash per job: a batch of jobs is then read or written with one HMGET / HSET /
-- HDEL per hash instead of one command per job. Redis runs scripts on one thread, so every
-- command a step saves is throughput for everything else.

-- The key layout these scripts write (LAYOUT in lib.rs). Every script that creates state marks
-- the namespace with it, in the same atomic step, so a namespace holding state without the
-- mark was written by an older Herald and is refused at start-up.
local LAYOUT = '2'

-- Wait-set score: -priority * 2^40 + sequence, so ZPOPMIN takes the largest priority first and
-- FIFO within a priority. The priority is clamped to +-4095 so that every score stays an exact
-- integer in a double (|score| < 2^53); the sequence has 2^40 values before it would spill over.
local PRIORITY_UNIT = 1099511627776
local function wait_score(priority, seq)
  local p = tonumber(priority) or 0
  if p > 4095 then p = 4095 elseif p < -4095 then p = -4095 end
  return -p * PRIORITY_UNIT + seq
end

-- A job's fields, packed into one q:job value: name|priority|max_attempts|runs|payload, where
-- runs counts the runs started before the current lease. The first four never hold '|'; the
-- payload (JSON) comes last.
local function pack_job(name, priority, max_attempts, runs, payload)
  return name .. '|' .. priority .. '|' .. max_attempts .. '|' .. runs .. '|' .. payload
end
-- name, priority, max_attempts, runs (a number), payload of a packed job (nil when missing).
local function job_fields(packed)
  if not packed then return nil end
  local name, priority, max_attempts, runs, payload =
    string.match(packed, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
  return name, priority, max_attempts, tonumber(runs) or 0, payload
end

-- A lease token is `<random>-<n>:<runs>:<job name>`: it carries the run count of the lease and
-- the job's name, so that leasing does not rewrite the job record and finishing a job does not
-- read it. The record learns the new run count only when a run fails (the rare path).
local function make_token(prefix, n, runs, name)
  return prefix .. n .. ':' .. runs .. ':' .. name
end
-- runs (a number), name of a token (nil for a malformed one).
local function token_fields(token)
  if not token then return nil end
  local runs, name = string.match(token, ':(%d+):([^:]*)$')
  return tonumber(runs), name
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
-- Runs `cmd key <values...>` over a flat list, `step` values per item, in chunks.
local function each_chunk(cmd, key, flat, step)
  for s = 1, #flat, step * CHUNK do
    redis.call(cmd, key, unpack(flat, s, math.min(s + step * CHUNK - 1, #flat)))
  end
end
-- ZADD of {score, member, ...}; HSET of {field, value, ...}; ZREM / HDEL / SADD of members.
local function zadd_many(key, flat) each_chunk('ZADD', key, flat, 2) end
local function hset_many(key, flat) each_chunk('HSET', key, flat, 2) end
local function zrem_many(key, members) each_chunk('ZREM', key, members, 1) end
local function hdel_many(key, fields) each_chunk('HDEL', key, fields, 1) end
-- HMGET of many fields; the result is aligned with `fields` (false where missing).
local function hmget_many(key, fields)
  local out = {}
  for s = 1, #fields, CHUNK do
    local e = math.min(s + CHUNK - 1, #fields)
    local r = redis.call('HMGET', key, unpack(fields, s, e))
    for k = s, e do out[k] = r[k - s + 1] end
  end
  return out
end

-- Enqueues n jobs read from ARGV from index i on, six fields each:
-- id, name, priority, delay_ms, max_attempts, payload.
-- K holds the key names seen, wait, delayed, seq, wake and job. Returns how many jobs were new.
-- The seen set outlives finished jobs, so an id is enqueued once, ever.
local function enqueue_jobs(K, now, i, n)
  local ids = {}
  for k = 1, n do ids[k] = ARGV[i + 6 * (k - 1)] end
  local known = {}
  for s = 1, n, CHUNK do
    local e = math.min(s + CHUNK - 1, n)
    local r = redis.call('SMISMEMBER', K.seen, unpack(ids, s, e))
    for k = s, e do known[k] = r[k - s + 1] == 1 end
  end
  local new, taken, ready, later, packed, base = {}, {}, {}, {}, {}, nil
  for k = 1, n do
    local id = ids[k]
    if not known[k] and not taken[id] then
      taken[id] = true
      new[#new + 1] = id
      local name, priority, delay = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
      if delay > 0 then
        later[#later + 1] = now + delay
        later[#later + 1] = id
        bump(name, 'delayed', 1)
      else
        -- One INCRBY reserves sequence numbers for the whole batch.
        if not base then base = redis.call('INCRBY', K.seq, n) - n end
        ready[#ready + 1] = wait_score(priority, base + #ready / 2 + 1)
        ready[#ready + 1] = id
        bump(name, 'waiting', 1)
      end
      packed[#packed + 1] = id
      packed[#packed + 1] = pack_job(name, priority, ARGV[i + 4], 0, ARGV[i + 5])
    end
    i = i + 6
  end
  each_chunk('SADD', K.seen, new, 1)
  hset_many(K.job, packed)
  zadd_many(K.wait, ready)
  zadd_many(K.delayed, later)
  wake(K.wake, #ready / 2)
  return #new
end
