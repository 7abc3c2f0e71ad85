-- The bench's token lab provider: at most ARGV[3] tokens in any sliding window of ARGV[2] ms, counted at
-- call time; beyond it a 429 whose reset says when enough tokens leave the window.
-- KEYS: the window (ZSET "<job id>:<now>:<tokens>" -> call time ms), the stats (HASH calls, rate_limited, tokens).
-- ARGV: now ms, window ms, limit, this call's tokens, job id. Returns {1, 0} (let through) or {0, reset ms}.
local now, window, limit, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do used = used + tonumber(string.match(entries[i], ':([^:]*)$')) end
redis.call('HINCRBY', KEYS[2], 'calls', 1)
if used + tokens > limit then
  redis.call('HINCRBY', KEYS[2], 'rate_limited', 1)
  local freed, reset = 0, window
  for i = 1, #entries, 2 do
    freed = freed + tonumber(string.match(entries[i], ':([^:]*)$'))
    if used - freed + tokens <= limit then reset = tonumber(entries[i + 1]) + window - now; break end
  end
  return {0, math.max(1, reset)}
end
redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. now .. ':' .. tokens)
redis.call('PEXPIRE', KEYS[1], window * 2)
redis.call('HINCRBY', KEYS[2], 'tokens', tokens)
return {1, 0}
