-- Move up to ARGV[1] messages from the ready lists into a runner's working list at once
-- (the deep-backlog path: one round trip for many jobs), by priority level.
-- KEYS[1] ready:high   KEYS[2] ready (normal level; idle runners block on this list)
-- KEYS[3] ready:low    KEYS[4] working list of the runner
-- ARGV[1] max count
-- ARGV[2] order of the levels for this take, e.g. "hnl" (strict priority) or "lhn"
--         (the runner lets each lower level go first on 1 take in 10: no starvation)
-- ARGV[3] the wake-up token pushed to the normal list beside high/low messages: dropped
-- returns: the moved messages
local want = tonumber(ARGV[1])
local order = ARGV[2]
local level = {h = KEYS[1], n = KEYS[2], l = KEYS[3]}
local out = {}
for i = 1, #order do
  local key = level[string.sub(order, i, i)]
  while #out < want do
    local items = redis.call('RPOP', key, want - #out)
    if not items then
      break
    end
    for _, m in ipairs(items) do
      if m ~= ARGV[3] then
        out[#out + 1] = m
      end
    end
  end
end
for i = 1, #out, 500 do
  redis.call('LPUSH', KEYS[4], unpack(out, i, math.min(i + 499, #out)))
end
return out
