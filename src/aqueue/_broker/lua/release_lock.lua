-- Release a lock only while it is still ours: compare and delete in one step, so a
-- holder whose lock expired (and was taken by another runner since) cannot delete the
-- next holder's lock between a GET and a DEL.
-- KEYS[1] lock key    ARGV[1] the token our acquire set
-- returns: 1 when our lock was deleted, 0 when it had expired or belongs to another
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
