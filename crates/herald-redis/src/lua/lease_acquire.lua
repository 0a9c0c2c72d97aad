-- Takes or renews the projector lease.
-- KEYS: lease, token counter
-- ARGV: holder, ttl_ms, now_ms
-- Returns the fencing token, or nil when another holder's lease is live.
local h = redis.call('HMGET', KEYS[1], 'holder', 'token')
if h[1] == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(h[2])
end
if h[1] then return nil end
-- Tokens never go below the clock (ms): if Redis lost the counter, a new token is still larger
-- than any token handed out before, so a projector from before the loss stays fenced.
local t = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if t < floor then
  t = floor
  redis.call('SET', KEYS[2], t)
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', t)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return t
