-- One projector step, atomically: fencing check, read-model upserts, job enqueues, checkpoint.
-- KEYS: lease, checkpoint, seen, wait, delayed, seq, wake, counts, job, versions, layout
-- ARGV: prefix, token, checkpoint, now_ms, n_upserts, n_jobs,
--       then the upserts (5 fields each: id, version, status, tenant key segment, document JSON),
--       then the jobs (6 fields each, see enqueue_jobs).
-- Returns the number of jobs enqueued, or -1 when the token is not the current lease's
-- (including when the lease key is gone because Redis lost its data).
local held = redis.call('HGET', KEYS[1], 'token')
if not held or tonumber(held) ~= tonumber(ARGV[2]) then return -1 end

local prefix = ARGV[1]
local n = tonumber(ARGV[5])
local ids = {}
for k = 1, n do ids[k] = ARGV[7 + 5 * (k - 1)] end
local stored = hmget_many(KEYS[10], ids)

-- Each request's version, status and tenant segment ("v|s|t") are kept in the versions hash, so
-- that the guard reads them for the whole step with one HMGET instead of a command per event.
-- was_* is where a written request was indexed before this step (nil when new), now_* where it
-- ends up; index membership is settled once per request after the writes. Plain tables keyed by
-- id rather than a table per request: this loop runs for every event, and Lua allocations show.
local version, was_t, was_s, now_t, now_s, order = {}, {}, {}, {}, {}, {}
local match, call, mr = string.match, redis.call, prefix .. 'mr:'
local i = 7
for k = 1, n do
  local id, ver = ARGV[i], tonumber(ARGV[i + 1])
  local old = version[id]
  if old == nil then
    local s = stored[k]
    if s then
      local v, st, t = match(s, '^([^|]*)|([^|]*)|(.*)$')
      old = tonumber(v)
      was_s[id] = st
      was_t[id] = t
    else
      old = false
    end
    version[id] = old
  end
  -- Guarded by the stream version: re-applying an event changes nothing.
  if not old or ver > old then
    call('HSET', mr .. id, 'd', ARGV[i + 4])
    if now_s[id] == nil then order[#order + 1] = id end
    now_s[id] = ARGV[i + 2]
    now_t[id] = ARGV[i + 3]
    version[id] = ver
  end
  i = i + 5
end

-- Members are grouped per index key so that each index takes one ZADD / ZREM per step.
local adds, rems, versions = {}, {}, {}
local index_names = {}
local function index(ten, st)
  local key = ten .. ':' .. st
  local name = index_names[key]
  if not name then name = prefix .. 'idx:' .. key; index_names[key] = name end
  return name
end
local function push(t, key, v)
  local l = t[key]
  if not l then l = {}; t[key] = l end
  l[#l + 1] = v
end
-- Every request passes through PENDING and SENT, so those two have no all-tenants index (it would
-- be the largest sorted set, touched twice per request); across tenants they are counted in the
-- counts hash and listed by merging the tenants' indexes. The other statuses keep `idx:*:<S>`.
local HOT = { PENDING = true, SENT = true }
local status_delta, tenants = {}, {}
local function count(st, d) status_delta[st] = (status_delta[st] or 0) + d end
for _, id in ipairs(order) do
  local wt, ws, nt, ns = was_t[id], was_s[id], now_t[id], now_s[id]
  versions[#versions + 1] = id
  versions[#versions + 1] = version[id] .. '|' .. ns .. '|' .. nt
  tenants[nt] = true
  if not ws then
    push(adds, index(nt, ns), id)
    if not HOT[ns] then push(adds, index('*', ns), id) end
    count(ns, 1)
  else
    if wt ~= nt or ws ~= ns then
      push(rems, index(wt, ws), id)
      push(adds, index(nt, ns), id)
    end
    if ws ~= ns then
      if not HOT[ws] then push(rems, index('*', ws), id) end
      if not HOT[ns] then push(adds, index('*', ns), id) end
      count(ws, -1)
      count(ns, 1)
    end
  end
end
for st, d in pairs(status_delta) do
  if d ~= 0 then redis.call('HINCRBY', prefix .. 'idx:counts', st, d) end
end
local tenant_list = {}
for t in pairs(tenants) do tenant_list[#tenant_list + 1] = t end
each_chunk('SADD', prefix .. 'idx:tenants', tenant_list, 1)
hset_many(KEYS[10], versions)
for key, members in pairs(rems) do zrem_many(key, members) end
for key, members in pairs(adds) do
  local flat = {}
  for k, id in ipairs(members) do
    flat[2 * k - 1] = 0
    flat[2 * k] = id
  end
  zadd_many(key, flat)
end

local K = { seen = KEYS[3], wait = KEYS[4], delayed = KEYS[5], seq = KEYS[6], wake = KEYS[7],
  job = KEYS[9] }
local added = enqueue_jobs(K, tonumber(ARGV[4]), i, tonumber(ARGV[6]))
flush_counts(KEYS[8])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[11], LAYOUT)
return added
