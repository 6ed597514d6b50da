-- Global rate limits: GCRA in its scheduling form, by Redis' clock (µs). The steps are
-- those of aqueue/_ratelimit.py (gcra_request, gcra_back_off), which documents them.
-- A limit key's state is a hash: t (theoretical arrival time of reservations), a (that
-- of starts admitted), b (no start before it, set by a back-off) and, per deferred job
-- id, the start time reserved for it (field 'j:<job id>').
--
-- ARGV[1] = 'admit':
--   KEYS[1] the runner's working list   KEYS[2] delayed zset   KEYS[3..] limit states
--   ARGV[2] n, then n groups of five: index into KEYS of the job's limit state, job id,
--           interval µs, tolerance µs, the message as it sits in the working list
--   A deferred message leaves the working list for the delayed set, due at its reserved
--   time (to the ms: the set's scores are ms, and a reservation is on time from its ms),
--   in the same step as the reservation: it is never in neither place.
--   returns: n waits in µs (0: admitted, start it now)
-- ARGV[1] = 'backoff':
--   KEYS[1] a limit state   ARGV[2] delay µs   ARGV[3] tolerance µs
--   returns: µs until the back-off ends
local margin = 60000  -- ms a state outlives its last reservation (STATE_MARGIN_MS)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local function num(x)
  return string.format('%.0f', x)  -- a plain integer: tostring() keeps 14 digits only
end

-- A reservation is on time from the ms it falls in (the delayed set's scores are ms: a
-- message due at that ms must not bounce until the ms ends); admitted starts (a) are
-- checked to the µs, and a wait for them is rounded up to the next ms.
local function ms(x)
  return math.floor(x / 1000) * 1000
end

local function ms_up(x)
  return math.ceil(x / 1000) * 1000
end

local function keep(key, t, b)
  local last = math.max(t, b)
  redis.call('PEXPIRE', key, math.max(0, math.floor((last - now) / 1000)) + margin)
end

if ARGV[1] == 'backoff' then
  local key = KEYS[1]
  local s = redis.call('HMGET', key, 't', 'b')
  local t, b = tonumber(s[1]) or 0, tonumber(s[2]) or 0
  b = math.max(b, now + tonumber(ARGV[2]))
  t = math.max(t, b + tonumber(ARGV[3]))
  redis.call('HSET', key, 't', num(t), 'b', num(b))
  keep(key, t, b)
  return b - now
end

local states = {}
local function state(k)
  local s = states[k]
  if s == nil then
    local v = redis.call('HMGET', KEYS[k], 't', 'b', 'a')
    s = {t = tonumber(v[1]) or 0, b = tonumber(v[2]) or 0, a = tonumber(v[3]) or 0}
    states[k] = s
  end
  return s
end

local out = {}
local n = tonumber(ARGV[2])
local i = 3
for j = 1, n do
  local k, id = tonumber(ARGV[i]), 'j:' .. ARGV[i + 1]  -- apart from t, a and b
  local interval, tolerance, msg = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), ARGV[i + 4]
  i = i + 5
  local s = state(k)
  local wait = nil
  local reserved = tonumber(redis.call('HGET', KEYS[k], id))
  local started = math.max(s.a, now)
  local slack = tolerance + interval  -- a late start may catch up one interval
  if reserved ~= nil and reserved >= s.b then
    if ms(reserved) <= now and started - slack <= now then
      redis.call('HDEL', KEYS[k], id)
      s.a = started + interval
      wait = 0
    else
      wait = math.max(ms(reserved), ms_up(started - slack)) - now  -- reservation stays
    end
  else
    local tat = math.max(s.t, now, started - interval)
    local allow = tat - tolerance
    s.t = tat + interval
    if ms(allow) <= now and started - slack <= now then
      if reserved ~= nil then redis.call('HDEL', KEYS[k], id) end
      s.a = started + interval
      wait = 0
    else
      redis.call('HSET', KEYS[k], id, num(allow))
      wait = math.max(ms(allow), ms_up(started - slack)) - now
    end
  end
  if wait > 0 then
    redis.call('LREM', KEYS[1], -1, msg)
    redis.call('ZADD', KEYS[2], num((now + wait) / 1000), msg)  -- a whole ms
  end
  out[j] = wait
end
for k, s in pairs(states) do
  redis.call('HSET', KEYS[k], 't', num(s.t), 'a', num(s.a))
  keep(KEYS[k], math.max(s.t, s.a), s.b)
end
return out
