-- Each request a fresh session id and a realistic status, as a provider would send them.
local n = 0
request = function()
  n = n + 1
  local path = string.format("%s?session_id=%08x-bench-%d&status=%d",
    wrk.path, math.random(0, 0x7fffffff), n, n % 4)
  return wrk.format("GET", path)
end
