-- Put every message left in a working list back on the consuming end of the ready list,
-- oldest first in line (graceful shutdown, or a dead runner's list once SQL decided).
-- KEYS[1] working list    KEYS[2] ready list
-- returns: number moved
local n = 0
while true do
  local m = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not m then
    return n
  end
  n = n + 1
end
