-- KEYS: active
-- ARGV: prefix, id, token, new expiry (ms since epoch)
local key = leased(ARGV[1], ARGV[2], ARGV[3])
if not key then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[4], ARGV[2])
return 1
