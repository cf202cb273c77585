-- Applies ONE callback to one message, atomically; the worker pipelines one call per event.
-- The upper-case constants are generated from core/model.py, core/keys.py and
-- core/counters.py (workers/script.py), so this file never restates the model's tables,
-- the message hash's field names or the counter families' keys.
--
-- KEYS: message hash, counters hash, billing hash (its per-day quarter-hour hashes are
--       KEYS[3] .. ':' .. day), applied-events bitmap of the batch, billing record,
--       the queue's count of queued events, the provider's search-index prefix (its sets
--       are KEYS[7] .. product .. ':' .. state)
-- ARGV: provider, product, status bit (-1: code unknown to the product), raw code,
--       at_ms (first-seen time to record), received_ms, now_ms, index in batch,
--       message ttl ms, applied-bitmap ttl ms, events in the batch,
--       the provider's billing flag (-1: none sent, 0: not billable, 1: billable),
--       billing horizon ms, the provider's status as sent ('' : the code says it all),
--       message id, delivery timeout ms of the product (0: none), outbox bound
-- KEYS (events out): KEYS[8] the outbox stream, KEYS[9] the delivery timer set
--
-- The billing record (core.keys.BillingRecord) keeps product, statuses, flags, first time,
-- observed latency stages and billing scheme for the billing horizon, longer than the
-- message hash lives: a callback after the state expired re-attaches to it, so a message
-- is billed once in its real life whatever arrives late.
--
-- Message hash fields (F, core.keys.MessageField): product, bitmask of statuses seen,
-- first callback ms, latency stages already observed, duplicates, late arrivals, billing
-- flags seen; "<bit>" is the first-seen ms of that status, F.unknown_prefix .. code that of
-- an unknown code. Counter fields are a family's key (K) and its label values.
local NAMES = __NAMES__
local RANK, BY_RANK = __RANK__, __BY_RANK__
local FAIL, EVIDENCE, OUTCOMES, STARTS = __FAIL__, __EVIDENCE__, __OUTCOMES__, __STARTS__
local CHARGED = __CHARGED__
local STAGES = __STAGES__
local LAT_BUCKETS = __LAT_BUCKETS__
local LAG_BUCKETS = __LAG_BUCKETS__
local BATCH_BUCKETS = __BATCH_BUCKETS__
local F, K = __FIELDS__, __COUNTERS__
local O, NO_STATE, REPLAY = __OUTCOME_NAMES__, __NO_STATE__, __REPLAY__
local FLAG_BILLABLE, FLAG_NOT_BILLABLE = __FLAG_BILLABLE__, __FLAG_NOT_BILLABLE__
local DAY_MS, QUARTER_MS = __DAY_MS__, __QUARTER_MS__
local DAY_SCHEME, QUARTER_SCHEME, RECORD_SEP = __DAY_SCHEME__, __QUARTER_SCHEME__, __RECORD_SEP__
local MAX_UNKNOWN = __MAX_UNKNOWN__
local HISTORY_LETTER, MAX_HISTORY = __HISTORY_OUTCOMES__, __MAX_HISTORY__
local HISTORY_PART_SEP = __HISTORY_PART_SEP__
local OF, STATE_TYPE = __OUTBOX_FIELDS__, __STATE_TYPE__

local msg, counters, billing, applied, record = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local provider, code, at = ARGV[1], ARGV[4], tonumber(ARGV[5])
local sbit = tonumber(ARGV[3])

-- At-least-once delivery: a replayed batch (retry, dead worker) must count nothing twice.
if redis.call('SETBIT', applied, ARGV[8], 1) == 1 then
  return REPLAY
end
redis.call('PEXPIRE', applied, ARGV[10])

local function incr(field, by)
  redis.call('HINCRBY', counters, field, by or 1)
end

-- What is known of the message: its live hash, else its billing record (state expired,
-- still within the billing horizon). A hash without a record was written before records
-- existed: it was billed in UTC-day counts, and stays so.
local h = redis.call('HMGET', msg, F.product, F.seen, F.first, F.observed, F.flags)
local kept = redis.call('GET', record)
local stored, old, first, observed, old_flags, scheme
if kept then
  local r = {}
  for part in string.gmatch(kept, '[^' .. RECORD_SEP .. ']+') do r[#r + 1] = part end
  stored, old, old_flags, first = r[1], tonumber(r[2]), tonumber(r[3]), tonumber(r[4])
  observed, scheme = tonumber(r[5]), r[6]
elseif h[1] then
  stored, old, first = h[1], tonumber(h[2] or '0'), tonumber(h[3])
  observed, old_flags, scheme = tonumber(h[4] or '0'), tonumber(h[5] or '0'), DAY_SCHEME
else
  old, first, observed, old_flags, scheme = 0, at, 0, 0, QUARTER_SCHEME
end
local fresh = h[1] == false
local product = stored or ARGV[2]
local lp = provider .. '|' .. product

__STATE_FUNCTIONS__

local function name(b)
  if b < 0 then return NO_STATE end
  return NAMES[b + 1]
end

local function conflicted(m)
  return (bit.band(m, FAIL) ~= 0 and bit.band(m, EVIDENCE) ~= 0)
    or bit.band(m, OUTCOMES) == OUTCOMES
end

-- Histogram buckets are stored un-cumulated (b0.. for each bound, then +Inf); sums of
-- durations in ms. `series` is the family key with its label values.
local function observe(series, bounds, value)
  local i = #bounds
  for j = 1, #bounds do
    if value <= bounds[j] then i = j - 1; break end
  end
  incr(series .. '|b' .. i)
  incr(series .. '|sum', value)
end

-- A status restored from the billing record has no time (it expired with the state):
-- latencies need both ends' times.
local function observe_latencies(m, observed)
  local start = nil
  for b = 0, #NAMES - 1 do
    if has(STARTS, b) and has(m, b) then
      local t = tonumber(redis.call('HGET', msg, tostring(b)))
      if t ~= nil and (start == nil or t < start) then start = t end
    end
  end
  if start == nil then return observed end
  for i, stage in ipairs(STAGES) do
    local flag = bit.lshift(1, i - 1)
    if bit.band(observed, flag) == 0 and has(m, stage[2]) then
      local done = tonumber(redis.call('HGET', msg, tostring(stage[2])))
      if done ~= nil then
        observe(stage[1] .. '|' .. lp, LAT_BUCKETS, math.max(0, done - start))
        observed = bit.bor(observed, flag)
      end
    end
  end
  return observed
end

local DIGITS = '0123456789abcdefghijklmnopqrstuvwxyz'
local function base36(n)
  local s = ''
  repeat
    local d = n % 36
    s = string.sub(DIGITS, d + 1, d + 1) .. s
    n = (n - d) / 36
  until n == 0
  return s
end

-- This callback, appended to the message's history (core.keys.HISTORY_OUTCOMES): the n-th
-- goes to ring slot (n - 1) % MAX_HISTORY, overwriting (dropping) the oldest past the bound.
local function remember(outcome, other_product)
  local received = tonumber(ARGV[6])
  local entry = HISTORY_LETTER[outcome] .. code .. HISTORY_PART_SEP .. base36(received)
    .. HISTORY_PART_SEP .. (received - at)
  if ARGV[14] ~= '' or other_product then entry = entry .. HISTORY_PART_SEP .. ARGV[14] end
  if other_product then entry = entry .. HISTORY_PART_SEP .. other_product end
  local n = redis.call('HINCRBY', msg, F.history_count, 1)
  redis.call('HSET', msg, F.history_prefix .. ((n - 1) % MAX_HISTORY), entry)
end

-- First-seen times keep the earliest of all copies, whatever their order.
local function earliest(field)
  local known = tonumber(redis.call('HGET', msg, field))
  if known == nil or at < known then
    redis.call('HSET', msg, field, ARGV[5])
  end
end

local before = top(old)

observe(K.lag .. '|' .. provider, LAG_BUCKETS, math.max(0, tonumber(ARGV[7]) - tonumber(ARGV[6])))
if ARGV[8] == '0' then
  -- Once per batch (its first event is applied once): its events leave the backlog.
  observe(K.batch, BATCH_BUCKETS, tonumber(ARGV[11]))
  -- Jobs queued before the count existed would take it below 0: it restarts from there.
  if redis.call('DECRBY', KEYS[6], ARGV[11]) < 0 then redis.call('SET', KEYS[6], 0) end
end

-- A callback of another product than the message's (a misconfigured callback URL: its
-- code is in another numbering) is counted under its own product and changes nothing.
if stored and stored ~= ARGV[2] then
  local theirs = provider .. '|' .. ARGV[2]
  incr(K.received .. '|' .. theirs .. '|' .. O.mismatch)
  incr(K.mismatch .. '|' .. theirs)
  if not fresh then
    redis.call('HINCRBY', msg, F.mismatches, 1)
    remember(O.mismatch, ARGV[2])
  end
  return O.mismatch
end

incr(K.received .. '|' .. lp .. '|' .. (sbit >= 0 and NAMES[sbit + 1] or O.unknown))
if not stored then
  incr(K.started .. '|' .. lp)
elseif fresh then
  incr(K.reattached .. '|' .. lp)
end
if fresh then
  redis.call('HSET', msg, F.product, product)
end

local flags = old_flags
local hint = tonumber(ARGV[12] or '-1')
if hint >= 0 then flags = bit.bor(flags, hint == 1 and FLAG_BILLABLE or FLAG_NOT_BILLABLE) end

local outcome = O.new
local m = old
if sbit < 0 then
  outcome = O.unknown
  incr(K.unknown .. '|' .. lp)
  local field = F.unknown_prefix .. code
  if redis.call('HEXISTS', msg, field) == 1 then
    earliest(field)
  elseif tonumber(redis.call('HGET', msg, F.unknown_stored) or '0') < MAX_UNKNOWN then
    redis.call('HSET', msg, field, ARGV[5])
    redis.call('HINCRBY', msg, F.unknown_stored, 1)
  else
    redis.call('HINCRBY', msg, F.unknown_dropped, 1)
  end
elseif has(old, sbit) then
  -- A duplicate changes no status. Its time and billing flag are merged (earliest time, set
  -- of flags), so which copy arrives first does not matter.
  outcome = O.duplicate
  incr(K.duplicate .. '|' .. lp)
  redis.call('HINCRBY', msg, F.duplicates, 1)
  earliest(tostring(sbit))
else
  if before >= 0 and RANK[sbit + 1] < RANK[before + 1] then
    outcome = O.late
    incr(K.late .. '|' .. lp)
    redis.call('HINCRBY', msg, F.late, 1)
  end
  m = bit.bor(old, bit.lshift(1, sbit))
  redis.call('HSET', msg, tostring(sbit), ARGV[5])
  incr(K.seen .. '|' .. lp .. '|' .. NAMES[sbit + 1])
end

remember(outcome)

local after = top(m)
if after ~= before then
  incr(K.transitions .. '|' .. lp .. '|' .. name(before) .. '|' .. name(after))
end
if conflicted(m) and not conflicted(old) then
  incr(K.conflict .. '|' .. lp)
end

-- Billing: the message counts once, in the 15-minute UTC bucket of its first callback (or,
-- billed before buckets existed, on its UTC day), while its current state is a charged
-- status. Apply the difference between before and after.
local function bucket(ms)
  local day = math.floor(ms / DAY_MS)
  if scheme == DAY_SCHEME then return billing, day .. '|' .. lp end
  return billing .. ':' .. day, math.floor((ms % DAY_MS) / QUARTER_MS) .. '|' .. lp
end
local now_first = math.min(first, at)
local was, is = is_billable(lp, old, old_flags), is_billable(lp, m, flags)
local old_key, old_field = bucket(first)
local new_key, new_field = bucket(now_first)
local moved = old_key ~= new_key or old_field ~= new_field
if was and (not is or moved) then
  redis.call('HINCRBY', old_key, old_field, -1)
end
if is and (not was or moved) then
  redis.call('HINCRBY', new_key, new_field, 1)
end
if is and not was then
  incr(K.billable .. '|' .. lp)
elseif was and not is then
  incr(K.billable_reversed .. '|' .. lp)
end

local now_observed = observed
if m ~= old then
  now_observed = observe_latencies(m, observed)
end
-- A duplicate usually changes nothing: skip the writes (a fresh hash needs them all).
if now_observed ~= observed or (fresh and observed ~= 0) then
  redis.call('HSET', msg, F.observed, now_observed)
end
if m ~= old or now_first ~= first or fresh then
  redis.call('HSET', msg, F.seen, m, F.first, now_first)
end
if flags ~= old_flags or (fresh and flags ~= 0) then
  redis.call('HSET', msg, F.flags, flags)
end
-- The search index follows the state in this same step, scored by the first receipt of the
-- message (the earliest of its callbacks', whatever their order: ZADD LT). Sets are trimmed
-- of messages first received longer ago than the state lives: bounded without a sweeper.
local before_name, after_name = name(before), name(after)
local prefix, since = KEYS[7] .. product .. ':', tonumber(ARGV[6])
if stored and after_name ~= before_name then
  local was = redis.call('ZSCORE', prefix .. before_name, ARGV[15])
  if was then
    since = math.min(since, tonumber(was))
    redis.call('ZREM', prefix .. before_name, ARGV[15])
  end
end
if redis.call('ZADD', prefix .. after_name, 'LT', 'CH', since, ARGV[15]) == 1 then
  redis.call('ZREMRANGEBYSCORE', prefix .. after_name, '-inf',
    '(' .. (tonumber(ARGV[7]) - tonumber(ARGV[9])))
end
-- Events out, in this same step (a transactional outbox): each change of state is appended
-- to the outbox with the message's next sequence number. A message that starts (its first
-- state requested or sent) arms its delivery timer; a state past those disarms it
-- (workers/timer.lua fires what is left when due).
if after ~= before then
  local seq = redis.call('HINCRBY', msg, F.sequence, 1)
  -- Bound 0: nothing forwards (no FORWARD_URL), so nothing is kept for it.
  if ARGV[17] ~= '0' then
    redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[17], '*', OF.type, STATE_TYPE,
      OF.provider, provider, OF.product, product, OF.message_id, ARGV[15],
      OF.previous, before_name, OF.state, after_name, OF.billable, is and '1' or '0',
      OF.at, ARGV[5], OF.sequence, seq)
  end
  local timer = provider .. ':' .. ARGV[15]
  if before < 0 and has(STARTS, after) and tonumber(ARGV[16]) > 0 then
    redis.call('ZADD', KEYS[9], now_first + tonumber(ARGV[16]), timer)
  elseif before >= 0 and has(STARTS, before) and not has(STARTS, after) then
    redis.call('ZREM', KEYS[9], timer)
  end
end
redis.call('PEXPIRE', msg, ARGV[9])
redis.call('SET', record,
  table.concat({product, m, flags, now_first, now_observed, scheme}, RECORD_SEP), 'PX', ARGV[13])
return outcome
