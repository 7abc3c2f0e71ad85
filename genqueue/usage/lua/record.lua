-- Usage recording, included by the scripts that end an attempt (worker/guarded.py's GUARD and RELEASE), so
-- an attempt's usage is counted in the same atomic step as its move. The keys are built by backend/keys.py
-- (usage_hour, usage_tenant_day, usage_tenant_month) from the move's own clock and passed in.
--   hour HASH   "tenant\ttask\tkey\tunit" -> amount     day, month HASH   unit -> amount (the tenant's)
-- ARGV from `from`: hour key, day key, month key, hour TTL s, day TTL s, month TTL s, field prefix
-- ("tenant\ttask\tkey\t"), then unit, amount pairs up to `last`.
local function usage_record(from, last)
  local hour, day, month = ARGV[from], ARGV[from + 1], ARGV[from + 2]
  local prefix = ARGV[from + 6]
  for i = from + 7, last - 1, 2 do
    local unit, amount = ARGV[i], ARGV[i + 1]
    redis.call('HINCRBYFLOAT', hour, prefix .. unit, amount)
    redis.call('HINCRBYFLOAT', day, unit, amount)
    redis.call('HINCRBYFLOAT', month, unit, amount)
  end
  redis.call('EXPIRE', hour, tonumber(ARGV[from + 3]))
  redis.call('EXPIRE', day, tonumber(ARGV[from + 4]))
  redis.call('EXPIRE', month, tonumber(ARGV[from + 5]))
end
