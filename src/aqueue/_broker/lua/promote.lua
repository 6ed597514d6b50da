-- Move due messages from the delayed set to the ready list of their priority level
-- (batched), by Redis' clock. A message's level is its "r" field (absent: normal).
-- KEYS[1] delayed zset (score = due time in ms)
-- KEYS[2] ready:high   KEYS[3] ready (normal)   KEYS[4] ready:low
-- ARGV[1] max count    ARGV[2] wake-up token pushed to the normal list for high/low
-- returns: {moved count, ms until the next due message or -1}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local woke = false
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local r = 0
  if string.find(m, '"r":', 1, true) then
    local ok, obj = pcall(cjson.decode, m)
    if ok and type(obj) == 'table' and type(obj['r']) == 'number' then
      r = obj['r']
    end
  end
  if r > 0 then
    redis.call('LPUSH', KEYS[2], m)
    woke = true
  elseif r < 0 then
    redis.call('LPUSH', KEYS[4], m)
    woke = true
  else
    redis.call('LPUSH', KEYS[3], m)
  end
end
if woke then
  redis.call('LPUSH', KEYS[3], ARGV[2])
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then
  return {#due, -1}
end
return {#due, math.max(0, tonumber(nxt[2]) - now)}
