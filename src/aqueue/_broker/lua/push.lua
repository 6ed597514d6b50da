-- Push new messages onto the ready lists of their priority levels. Each level's messages
-- come as one argument, joined by newlines (a message is compact JSON and never holds
-- one): the client packs three arguments instead of one per message.
-- KEYS[1] ready list (normal)    KEYS[2] ready list (high)    KEYS[3] ready list (low)
-- KEYS[4] the dataset's epoch
-- ARGV[1] normal messages    ARGV[2] high ones    ARGV[3] low ones    ARGV[4] wake token,
--   pushed to the normal list after high or low ones (runners block on that list)
-- ARGV[5] a fresh epoch, set if the dataset has none (Redis restarted empty)
-- returns: {number of messages pushed, the epoch of the dataset that now holds them}:
--   the producer's dispatch marks name it, atomically with the push
local find, sub = string.find, string.sub
local pushed = 0

local function push(key, joined)
  if joined == '' then
    return
  end
  local batch, n, pos = {}, 0, 1
  while true do
    local e = find(joined, '\n', pos, true)
    n = n + 1
    if e == nil then
      batch[n] = sub(joined, pos)
      break
    end
    batch[n] = sub(joined, pos, e - 1)
    pos = e + 1
    if n == 1000 then -- unpack() has a limit on the values it returns
      redis.call('LPUSH', key, unpack(batch))
      pushed = pushed + n
      n = 0
    end
  end
  redis.call('LPUSH', key, unpack(batch, 1, n))
  pushed = pushed + n
end

push(KEYS[2], ARGV[2])
push(KEYS[3], ARGV[3])
if ARGV[2] ~= '' or ARGV[3] ~= '' then
  redis.call('LPUSH', KEYS[1], ARGV[4])
end
push(KEYS[1], ARGV[1])
redis.call('SET', KEYS[4], ARGV[5], 'NX')
return {pushed, redis.call('GET', KEYS[4])}
