-- Deletes keys only while `token` holds the projector lease (reset_projections, in batches).
-- KEYS: lease
-- ARGV: token, then the keys to delete (same namespace, hence the same slot)
local held = redis.call('HGET', KEYS[1], 'token')
if not held or tonumber(held) ~= tonumber(ARGV[1]) then return -1 end
if #ARGV > 1 then
  return redis.call('DEL', unpack(ARGV, 2))
end
return 0
