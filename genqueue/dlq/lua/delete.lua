-- Delete one DLQ entry and its index members in one call; returns the entry's JSON, or false if absent.
-- KEYS[1] entry key   KEYS[2] all index   ARGV[1] job id   ARGV[2] key prefix
-- (index_keys.lua is prepended: the indexes are read from the stored entry itself, so nothing can change
-- between reading the entry and removing it)
local prefix = ARGV[2]
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
for _, k in ipairs(index_keys(raw)) do redis.call('ZREM', k, ARGV[1]) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return raw
