-- Fires the delivery timers that are due, atomically: each due entry is taken off the timer
-- set and, if its message is still only requested or sent, a `message.delivery_timeout` event
-- is appended to the outbox and counted, in this one step. An entry is taken once, so a
-- timeout is emitted once, whatever crashes or restarts happen around it.
-- apply.lua arms a timer when a message starts (its first state is requested or sent) and
-- takes it off when the state moves past those; the re-check here is for hashes that expired.
-- Upper-case constants are rendered from core/ (workers/timers.py).
--
-- KEYS: timer set (`<provider>:<message id>` scored by the deadline ms), outbox stream,
--       counters hash
-- ARGV: now ms, most entries to take, the message hashes' key prefix (`<prefix>:m:`),
--       outbox bound (approximate MAXLEN)
local NAMES, BY_RANK, STARTS = __NAMES__, __BY_RANK__, __STARTS__
local CHARGED = __CHARGED__
local F, K, OF = __FIELDS__, __COUNTERS__, __OUTBOX_FIELDS__
local FLAG_BILLABLE = __FLAG_BILLABLE__
local TIMEOUT_TYPE = __TIMEOUT_TYPE__

__STATE_FUNCTIONS__

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[2]))
local fired = 0
for i = 1, #due, 2 do
  local member, deadline = due[i], due[i + 1]
  redis.call('ZREM', KEYS[1], member)
  local sep = string.find(member, ':', 1, true)
  local msg = ARGV[3] .. member
  local h = redis.call('HMGET', msg, F.product, F.seen, F.flags)
  if sep and h[1] then
    local provider, id = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
    local product, m, flags = h[1], tonumber(h[2] or '0'), tonumber(h[3] or '0')
    local state = top(m)
    if state >= 0 and has(STARTS, state) then
      local lp = provider .. '|' .. product
      local billable = is_billable(lp, m, flags)
      local seq = redis.call('HINCRBY', msg, F.sequence, 1)
      if ARGV[4] ~= '0' then
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*',
          OF.type, TIMEOUT_TYPE, OF.provider, provider, OF.product, product, OF.message_id, id,
          OF.previous, NAMES[state + 1], OF.state, NAMES[state + 1],
          OF.billable, billable and '1' or '0', OF.at, deadline, OF.sequence, seq)
      end
      redis.call('HINCRBY', KEYS[3], K.delivery_timeouts .. '|' .. lp, 1)
      fired = fired + 1
    end
  end
end
return {#due / 2, fired}
