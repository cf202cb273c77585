-- Applies a chunk of callbacks (up to workers.store.CALL_EVENTS, of one or several batches),
-- each to its message, in one atomic call: the worker pipelines one call per chunk. The
-- counters' and billing buckets' increments of the whole chunk are summed and written once
-- at the end, so a chunk of callbacks of one provider and product costs a few writes to them,
-- not a few per callback.
-- The upper-case constants are generated from core/model.py, core/keys.py and
-- core/counters.py (workers/script.py), so this file never restates the model's tables,
-- the message hash's field names or the counter families' keys.
--
-- KEYS: per callback (PER_KEYS): its message hash, its billing record's key from before
--       records were kept by generation (read, and moved, while any is left), the
--       applied-events bitmap of its batch; then the counters hash, the billing hash (its
--       per-day quarter-hour hashes are that .. ':' .. day), the queue's count of queued
--       events, the outbox stream, the delivery timer set
-- ARGV: now_ms, message ttl ms, applied-bitmap ttl ms, billing horizon ms, outbox bound,
--       billing-record hashes for a new generation (BILLING_RECORD_SHARDS);
--       then per callback (PER_ARGS): provider, product, status bit (-1: code unknown to the
--       product), raw code, at_ms (first-seen time to record), received_ms, index in its
--       batch, events in its batch, the provider's billing flag (-1: none sent, 0: not
--       billable, 1: billable), the provider's status as sent ('' : the code says it all),
--       message id, delivery timeout ms of the product (0: none), the provider's
--       search-index prefix (its sets are that .. product .. ':' .. state), the provider's
--       billing-records prefix (core.keys.Keys.billing_records), crc32 of the message id
-- Returns per callback its outcome, REPLAY, or {error} where it failed (a command Redis
-- refused, or an error of the script itself); the chunk's other callbacks are applied all
-- the same. If the summed increments cannot all be written, the call answers an error that
-- starts with UNFLUSHED: its callbacks are applied (a retry replays them) but some counts
-- are missing, which must not pass silently.
--
-- The billing record (core.keys.BillingRecord) keeps product, statuses, flags, first time,
-- observed latency stages and billing scheme for the billing horizon, longer than the
-- message hash lives: a callback after the state expired re-attaches to it, so a message
-- is billed once in its real life whatever arrives late. Records are fields of the hashes
-- of the generation of their last write (core.keys.RECORD_GENERATION_MS), which expire
-- together a horizon after the generation ends.
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
local O, NO_STATE, REPLAY, UNFLUSHED = __OUTCOME_NAMES__, __NO_STATE__, __REPLAY__, __UNFLUSHED__
local FLAG_BILLABLE, FLAG_NOT_BILLABLE = __FLAG_BILLABLE__, __FLAG_NOT_BILLABLE__
local DAY_MS, QUARTER_MS, GENERATION_MS = __DAY_MS__, __QUARTER_MS__, __RECORD_GENERATION_MS__
local DAY_SCHEME, QUARTER_SCHEME, RECORD_SEP = __DAY_SCHEME__, __QUARTER_SCHEME__, __RECORD_SEP__
local MAX_UNKNOWN = __MAX_UNKNOWN__
local HISTORY_LETTER, MAX_HISTORY = __HISTORY_OUTCOMES__, __MAX_HISTORY__
local HISTORY_PART_SEP = __HISTORY_PART_SEP__
local OF, STATE_TYPE = __OUTBOX_FIELDS__, __STATE_TYPE__

local PER_KEYS, PER_ARGS = 3, 15
local events = (#KEYS - 5) / PER_KEYS
local shared = events * PER_KEYS
local counters, billing, queued = KEYS[shared + 1], KEYS[shared + 2], KEYS[shared + 3]
local outbox, timers = KEYS[shared + 4], KEYS[shared + 5]
local now, message_ttl, applied_ttl = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local horizon, outbox_bound, new_shards = ARGV[4], ARGV[5], ARGV[6]

-- The chunk's increments, key -> field -> sum (the counters hash, the billing buckets):
-- written at the end (a field incremented by 0 is still written, as one HINCRBY per
-- callback would).
local sums, marked = {}, {}
local function bill(key, field, by)
  local fields = sums[key]
  if fields == nil then fields = {}; sums[key] = fields end
  fields[field] = (fields[field] or 0) + by
end
local function incr(field, by)
  bill(counters, field, by or 1)
end

-- What a caught error says: a table with `err` for what Redis refused, else a Lua error.
local function reason(err)
  return type(err) == 'table' and err.err or tostring(err)
end

__STATE_FUNCTIONS__

-- Billing records (core.keys.Keys.billing_records). A generation's hashes live while
-- (generation + 1) * GENERATION_MS + horizon is ahead: only those can hold a record. The
-- generation after this worker's is looked in too, and a record is never moved back to an
-- older one: at a generation's end, a worker whose clock or call is behind another's must
-- find the record the other has moved on.
local generation = math.floor(now / GENERATION_MS)
local oldest = math.floor((now - tonumber(horizon)) / GENERATION_MS)
local shard_counts, expiring = {}, {}

local function expiry(gen)
  return (gen + 1) * GENERATION_MS + tonumber(horizon)
end

-- How many hashes a generation's records are spread over (false: it has none yet). Fixed by
-- its first record: a changed BILLING_RECORD_SHARDS starts with a new generation, and every
-- record is still found.
local function shards(records, gen)
  local key = records .. ':' .. gen
  local n = shard_counts[key]
  if n == nil then
    n = tonumber(redis.call('GET', key)) or false
    shard_counts[key] = n
  end
  return n
end

-- A message's record, the hash it was found in (newest generation first: an older copy, if
-- any, is older news), the hash it is written to and that hash's generation (the newer of
-- this one and the one it was found in). Both hashes are read here, before the replay
-- marker: a key Redis refuses (of another type) fails the callback unapplied, so that its
-- retry applies it.
local function locate(records, crc, id)
  local record, found, gen = false, nil, generation
  for g = generation + 1, oldest, -1 do
    local n = shards(records, g)
    if n then
      local hash = records .. ':' .. g .. ':' .. (crc % n)
      record = redis.call('HGET', hash, id)
      if record then
        found, gen = hash, math.max(g, generation)
        break
      end
    end
  end
  local n = shards(records, gen)
  local target = records .. ':' .. gen .. ':' .. (crc % (n or tonumber(new_shards)))
  -- Read above unless its generation has no hashes yet.
  if not n then redis.call('HGET', target, id) end
  return record, found, target, gen
end

-- A generation's hashes and count expire together; once per call is enough.
local function expire_once(key, gen)
  if not expiring[key] then
    redis.call('PEXPIREAT', key, expiry(gen))
    expiring[key] = true
  end
end

-- Writes a record where `locate` said, then takes it out of the hash it was found in. The
-- generation's count of hashes expires with them, whatever the horizon was when it began:
-- without it they could not be found.
local function keep_record(records, gen, target, id, record, found)
  local count = records .. ':' .. gen
  if not shards(records, gen) then
    -- Read as absent by `locate`, in this same atomic call.
    redis.call('SET', count, new_shards)
    shard_counts[count] = tonumber(new_shards)
  end
  redis.call('HSET', target, id, record)
  if found and found ~= target then redis.call('HDEL', found, id) end
  expire_once(target, gen)
  expire_once(count, gen)
end

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

-- One callback: its KEYS from kb + 1, its ARGV from ab + 1.
local function apply(kb, ab)
  local msg, record, applied = KEYS[kb + 1], KEYS[kb + 2], KEYS[kb + 3]
  local provider, code, at = ARGV[ab + 1], ARGV[ab + 4], tonumber(ARGV[ab + 5])
  local sbit = tonumber(ARGV[ab + 3])
  local product_sent, received = ARGV[ab + 2], tonumber(ARGV[ab + 6])
  local index, size = ARGV[ab + 7], ARGV[ab + 8]
  local as_sent, id, timeout = ARGV[ab + 10], ARGV[ab + 11], tonumber(ARGV[ab + 12])
  local records, crc = ARGV[ab + 14], tonumber(ARGV[ab + 15])

  -- What is known of the message: its live hash, else its billing record (state expired,
  -- still within the billing horizon). A hash without a record was written before records
  -- existed: it was billed in UTC-day counts, and stays so. Read before the replay marker
  -- is set: a key Redis refuses to read (of another type) fails the callback unapplied, so
  -- that a retry applies it.
  local h = redis.call('HMGET', msg, F.product, F.seen, F.first, F.observed, F.flags)
  local kept, found, target, record_gen = locate(records, crc, id)
  local legacy = false
  if not kept then
    kept = redis.call('GET', record)
    legacy = kept ~= false
  end

  -- At-least-once delivery: a replayed batch (retry, dead worker) must count nothing twice.
  if redis.call('SETBIT', applied, index, 1) == 1 then
    return REPLAY
  end
  marked[applied] = true
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
  local product = stored or product_sent
  local lp = provider .. '|' .. product

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

  -- This callback, appended to the message's history (core.keys.HISTORY_OUTCOMES): the n-th
  -- goes to ring slot (n - 1) % MAX_HISTORY, overwriting (dropping) the oldest past the bound.
  local function remember(outcome, other_product)
    local entry = HISTORY_LETTER[outcome] .. code .. HISTORY_PART_SEP .. base36(received)
      .. HISTORY_PART_SEP .. (received - at)
    if as_sent ~= '' or other_product then entry = entry .. HISTORY_PART_SEP .. as_sent end
    if other_product then entry = entry .. HISTORY_PART_SEP .. other_product end
    local n = redis.call('HINCRBY', msg, F.history_count, 1)
    redis.call('HSET', msg, F.history_prefix .. ((n - 1) % MAX_HISTORY), entry)
  end

  -- First-seen times keep the earliest of all copies, whatever their order.
  local function earliest(field)
    local known = tonumber(redis.call('HGET', msg, field))
    if known == nil or at < known then
      redis.call('HSET', msg, field, at)
    end
  end

  local before = top(old)

  observe(K.lag .. '|' .. provider, LAG_BUCKETS, math.max(0, now - received))
  if index == '0' then
    -- Once per batch (its first event is applied once): its events leave the backlog.
    observe(K.batch, BATCH_BUCKETS, tonumber(size))
    -- Jobs queued before the count existed would take it below 0: it restarts from there.
    if redis.call('DECRBY', queued, size) < 0 then redis.call('SET', queued, 0) end
  end

  -- A callback of another product than the message's (a misconfigured callback URL: its
  -- code is in another numbering) is counted under its own product and changes nothing.
  if stored and stored ~= product_sent then
    local theirs = provider .. '|' .. product_sent
    incr(K.received .. '|' .. theirs .. '|' .. O.mismatch)
    incr(K.mismatch .. '|' .. theirs)
    if not fresh then
      redis.call('HINCRBY', msg, F.mismatches, 1)
      remember(O.mismatch, product_sent)
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
  local hint = tonumber(ARGV[ab + 9])
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
      redis.call('HSET', msg, field, at)
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
    redis.call('HSET', msg, tostring(sbit), at)
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
    bill(old_key, old_field, -1)
  end
  if is and (not was or moved) then
    bill(new_key, new_field, 1)
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
  local prefix, since = ARGV[ab + 13] .. product .. ':', received
  if stored and after_name ~= before_name then
    local was = redis.call('ZSCORE', prefix .. before_name, id)
    if was then
      since = math.min(since, tonumber(was))
      redis.call('ZREM', prefix .. before_name, id)
    end
  end
  if redis.call('ZADD', prefix .. after_name, 'LT', 'CH', since, id) == 1 then
    redis.call('ZREMRANGEBYSCORE', prefix .. after_name, '-inf',
      '(' .. (now - tonumber(message_ttl)))
  end
  -- Events out, in this same step (a transactional outbox): each change of state is appended
  -- to the outbox with the message's next sequence number. A message that starts (its first
  -- state requested or sent) arms its delivery timer; a state past those disarms it
  -- (workers/timer.lua fires what is left when due).
  if after ~= before then
    local seq = redis.call('HINCRBY', msg, F.sequence, 1)
    -- Bound 0: nothing forwards (no FORWARD_URL), so nothing is kept for it.
    if outbox_bound ~= '0' then
      redis.call('XADD', outbox, 'MAXLEN', '~', outbox_bound, '*', OF.type, STATE_TYPE,
        OF.provider, provider, OF.product, product, OF.message_id, id,
        OF.previous, before_name, OF.state, after_name, OF.billable, is and '1' or '0',
        OF.at, at, OF.sequence, seq)
    end
    local timer = provider .. ':' .. id
    if before < 0 and has(STARTS, after) and timeout > 0 then
      redis.call('ZADD', timers, now_first + timeout, timer)
    elseif before >= 0 and has(STARTS, before) and not has(STARTS, after) then
      redis.call('ZREM', timers, timer)
    end
  end
  redis.call('PEXPIRE', msg, message_ttl)
  keep_record(records, record_gen, target, id,
    table.concat({product, m, flags, now_first, now_observed, scheme}, RECORD_SEP), found)
  if legacy then redis.call('DEL', record) end
  return outcome
end

-- A command Redis refuses fails its callback only: what it wrote before stands (as a
-- script's writes do), and the increments it and the others made are still written below.
local out = {}
for e = 0, events - 1 do
  local ok, result = pcall(apply, e * PER_KEYS, 6 + e * PER_ARGS)
  if ok then
    out[#out + 1] = result
  else
    out[#out + 1] = {reason(result)}
  end
end
for key in pairs(marked) do redis.call('PEXPIRE', key, applied_ttl) end
-- Each increment on its own, so that one refused key loses only its own counts.
local unflushed = nil
for key, fields in pairs(sums) do
  for field, by in pairs(fields) do
    local ok, err = pcall(redis.call, 'HINCRBY', key, field, by)
    if not ok and unflushed == nil then unflushed = reason(err) end
  end
end
if unflushed then return redis.error_reply(UNFLUSHED .. ' ' .. unflushed) end
return out
