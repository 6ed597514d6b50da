-- Move due messages from the delayed set to the ready list (batched), by Redis' clock.
-- KEYS[1] delayed zset (score = due time in ms)     KEYS[2] ready list
-- ARGV[1] max count
-- returns: {moved count, ms until the next due message or -1}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for i = 1, #due, 500 do
  local chunk = {unpack(due, i, math.min(i + 499, #due))}
  redis.call('ZREM', KEYS[1], unpack(chunk))
  redis.call('LPUSH', KEYS[2], unpack(chunk))
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then
  return {#due, -1}
end
return {#due, math.max(0, tonumber(nxt[2]) - now)}
