-- Prepended to add.lua and delete.lua by store._lua(); expects `prefix` (the DLQ key prefix) in scope.
-- The index keys of a stored entry, mirroring entry.index_values() in Python.
local function index_keys(raw)
  local ok, e = pcall(cjson.decode, raw)
  if not ok or type(e) ~= 'table' then return {} end
  local keys = {}
  local function add(field, value)
    if value ~= nil and value ~= cjson.null and value ~= '' then
      table.insert(keys, prefix .. 'by:' .. field .. ':' .. tostring(value))
    end
  end
  if type(e.error) == 'table' then add('kind', e.error.kind) end
  add('func', e.func)
  add('user', e.user_id)
  add('reason', e.reason)
  add('fingerprint', e.fingerprint)
  return keys
end
