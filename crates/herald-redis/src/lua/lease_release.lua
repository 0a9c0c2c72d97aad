-- KEYS: lease
-- ARGV: holder, token
local h = redis.call('HMGET', KEYS[1], 'holder', 'token')
if h[1] == ARGV[1] and tonumber(h[2]) == tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
end
return 0
