-- Leases up to `max` jobs, after housekeeping: due delayed jobs move to the wait set, and jobs
-- whose lease expired go back to it (a stalled run counts as an attempt and as a failed run;
-- when the run past max_attempts stalls too, the job goes dead).
-- KEYS: wait, delayed, active, dead, seq, counts, job, lease, error
-- ARGV: now_ms, max, lease_ms, lease token prefix, housekeeping batch size
-- Returns 7 strings per job: id, name, priority, payload, attempts, max_attempts, lease token.
local now, batch = tonumber(ARGV[1]), tonumber(ARGV[5])
local WAIT, DELAYED, ACTIVE, DEAD, SEQ, COUNTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local JOB, LEASE, ERROR = KEYS[7], KEYS[8], KEYS[9]

-- The due members are the lowest-ranked ones, so ZREMRANGEBYRANK removes exactly them.
local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', now, 'LIMIT', 0, batch)
if #due > 0 then
  redis.call('ZREMRANGEBYRANK', DELAYED, 0, #due - 1)
  local base = redis.call('INCRBY', SEQ, #due) - #due
  local jobs, ready = hmget_many(JOB, due), {}
  for k, id in ipairs(due) do
    local name, priority = job_fields(jobs[k])
    -- A member without its job record cannot run; dropping it keeps the queue moving.
    if name then
      ready[#ready + 1] = wait_score(priority, base + k)
      ready[#ready + 1] = id
      bump(name, 'delayed', -1)
      bump(name, 'waiting', 1)
    end
  end
  zadd_many(WAIT, ready)
end

local expired = redis.call('ZRANGEBYSCORE', ACTIVE, '-inf', now, 'LIMIT', 0, batch)
if #expired > 0 then
  redis.call('ZREMRANGEBYRANK', ACTIVE, 0, #expired - 1)
  local tokens = hmget_many(LEASE, expired)
  hdel_many(LEASE, expired)
  local base = redis.call('INCRBY', SEQ, #expired) - #expired
  local jobs = hmget_many(JOB, expired)
  local err = 'lease expired: the worker stopped or stalled'
  local ready, dead, errors, records = {}, {}, {}, {}
  for k, id in ipairs(expired) do
    local name, priority, max_attempts, runs, payload = job_fields(jobs[k])
    if name then
      -- The stalled run counts: the record takes the run count from the lease's token.
      runs = token_fields(tokens[k]) or runs + 1
      records[#records + 1] = id
      records[#records + 1] = pack_job(name, priority, max_attempts, runs, payload)
      bump(name, 'active', -1)
      bump(name, 'failed', 1)
      errors[#errors + 1] = id
      errors[#errors + 1] = err
      -- A job whose last allowed run stalled gets one run more, past max_attempts: a worker
      -- then records that the job gave up (a send job fails its request) instead of leaving
      -- the request waiting for a job that is dead. Only when that run stalls too is it dead.
      if runs > tonumber(max_attempts) then
        dead[#dead + 1] = now
        dead[#dead + 1] = id
        bump(name, 'dead', 1)
      else
        ready[#ready + 1] = wait_score(priority, base + k)
        ready[#ready + 1] = id
        bump(name, 'waiting', 1)
      end
    end
  end
  hset_many(JOB, records)
  hset_many(ERROR, errors)
  zadd_many(DEAD, dead)
  zadd_many(WAIT, ready)
end

local out = {}
local max = tonumber(ARGV[2])
if max > 0 then
  local popped = redis.call('ZPOPMIN', WAIT, max)
  local ids = {}
  for k = 1, #popped, 2 do ids[#ids + 1] = popped[k] end
  local jobs = hmget_many(JOB, ids)
  local expiry = now + tonumber(ARGV[3])
  local n, leases, active = 0, {}, {}
  for k, id in ipairs(ids) do
    local name, priority, max_attempts, runs, payload = job_fields(jobs[k])
    if name then
      n = n + 1
      runs = runs + 1
      local token = make_token(ARGV[4], n, runs, name)
      leases[#leases + 1] = id
      leases[#leases + 1] = token
      active[#active + 1] = expiry
      active[#active + 1] = id
      bump(name, 'waiting', -1)
      bump(name, 'active', 1)
      out[#out + 1] = id
      out[#out + 1] = name
      out[#out + 1] = priority
      out[#out + 1] = payload
      out[#out + 1] = runs
      out[#out + 1] = max_attempts
      out[#out + 1] = token
    end
  end
  hset_many(LEASE, leases)
  zadd_many(ACTIVE, active)
end
flush_counts(COUNTS)
return out
