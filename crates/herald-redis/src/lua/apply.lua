-- One projector step, atomically: fencing check, read-model upserts, job enqueues, checkpoint.
-- KEYS: lease, checkpoint, seen, wait, delayed, seq, wake, counts
-- ARGV: prefix, token, checkpoint, now_ms, n_upserts, n_jobs,
--       then the upserts (5 fields each: id, version, status, tenant key segment, document JSON),
--       then the jobs (6 fields each, see enqueue_jobs).
-- Returns the number of jobs enqueued, or -1 when the token is not the current lease's
-- (including when the lease key is gone because Redis lost its data).
local held = redis.call('HGET', KEYS[1], 'token')
if not held or tonumber(held) ~= tonumber(ARGV[2]) then return -1 end

local prefix = ARGV[1]
-- Index membership is settled once per request after the writes: `was` is where a written
-- request was indexed before this step (false when new), `now_at` where it ends up.
local was, now_at, order = {}, {}, {}
local i = 7
for _ = 1, tonumber(ARGV[5]) do
  local id, ver, st, ten = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local key = prefix .. 'mr:' .. id
  local cur = redis.call('HMGET', key, 'v', 's', 't')
  local old = tonumber(cur[1])
  -- Guarded by the stream version: re-applying an event changes nothing.
  if not old or tonumber(ver) > old then
    redis.call('HSET', key, 'v', ver, 's', st, 't', ten, 'd', ARGV[i + 4])
    if now_at[id] == nil then
      order[#order + 1] = id
      was[id] = old and { cur[3], cur[2] } or false
    end
    now_at[id] = { ten, st }
  end
  i = i + 5
end

-- Members are grouped per index key so that each index takes one ZADD / ZREM per step.
local adds, rems = {}, {}
local function push(t, key, v)
  local l = t[key]
  if not l then l = {}; t[key] = l end
  l[#l + 1] = v
end
local function index(ten, st) return prefix .. 'idx:' .. ten .. ':' .. st end
for _, id in ipairs(order) do
  local w, n = was[id], now_at[id]
  if not w then
    push(adds, index(n[1], n[2]), id)
    push(adds, index('*', n[2]), id)
  else
    if w[1] ~= n[1] or w[2] ~= n[2] then
      push(rems, index(w[1], w[2]), id)
      push(adds, index(n[1], n[2]), id)
    end
    if w[2] ~= n[2] then
      push(rems, index('*', w[2]), id)
      push(adds, index('*', n[2]), id)
    end
  end
end
for key, ids in pairs(rems) do zrem_many(key, ids) end
for key, ids in pairs(adds) do
  local pairs_ = {}
  for k, id in ipairs(ids) do
    pairs_[2 * k - 1] = 0
    pairs_[2 * k] = id
  end
  zadd_many(key, pairs_)
end

local K = { seen = KEYS[3], wait = KEYS[4], delayed = KEYS[5], seq = KEYS[6], wake = KEYS[7] }
local added = enqueue_jobs(prefix, K, tonumber(ARGV[4]), i, tonumber(ARGV[6]))
flush_counts(KEYS[8])
redis.call('SET', KEYS[2], ARGV[3])
return added
