-- Move up to ARGV[1] messages from the ready list into a runner's working list at once
-- (the deep-backlog path: one round trip for many jobs).
-- KEYS[1] ready list      KEYS[2] working list of the runner
-- ARGV[1] max count
-- returns: the moved messages, oldest first
local items = redis.call('RPOP', KEYS[1], tonumber(ARGV[1]))
if not items then
  return {}
end
for i = 1, #items, 500 do
  redis.call('LPUSH', KEYS[2], unpack(items, i, math.min(i + 499, #items)))
end
return items
