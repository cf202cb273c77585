-- The state rules both scripts need (apply.lua, timer.lua), pasted into each where it names
-- this file (workers/script.py). The including script declares BY_RANK, CHARGED and FLAG_BILLABLE.

local function has(m, b)
  return bit.band(m, bit.lshift(1, b)) ~= 0
end

-- The bit of the seen status with the highest precedence.
local function top(m)
  for r = #BY_RANK, 1, -1 do
    if has(m, BY_RANK[r]) then return BY_RANK[r] end
  end
  return -1
end

-- Billed while the current state is charged for its provider and product (`lp`,
-- `<provider>|<product>`); where the provider sent its own flags, only if one of them said
-- billable (core.model.Product.is_billable).
local function is_billable(lp, m, flags)
  local t = top(m)
  if t < 0 or not has(CHARGED[lp] or 0, t) then return false end
  return flags == 0 or bit.band(flags, FLAG_BILLABLE) ~= 0
end
