-- The known set without the keys whose state is gone (an idle key's cfg expired, nothing in flight, parked,
-- paused or open). Included before admit.lua and prune.lua.
local function lim_prune_known(known, head, tail)
  for _, key in ipairs(redis.call('SMEMBERS', known)) do
    local p = head .. key .. tail
    if redis.call('EXISTS', p .. 'cfg', p .. 'slots', p .. 'ring', p .. 'pause', p .. 'brk') == 0 then
      redis.call('SREM', known, key)
    end
  end
  return redis.call('SCARD', known)
end
