-- Counted windows (shared by acquire.lua and state.lua): the starts that left the log, as a hash
-- of buckets: fields h and t (sequence numbers of the oldest and newest bucket), n (their total),
-- and one field per bucket, "<first>:<last>:<count>" (us). A bucket spans less than width and is
-- counted until its last start leaves the window (see the package docstring).
local function bucket(h, i)
  local v = redis.call('HGET', h, i)
  if not v then return nil end
  local f, l, c = string.match(v, '(%d+):(%d+):(%d+)')
  return tonumber(f), tonumber(l), tonumber(c)
end

-- Drops the buckets whose last start left the window; returns head, tail, total.
local function expire(h, interval, now, write)
  local s = redis.call('HMGET', h, 'h', 't', 'n')
  if not s[1] then return 1, 0, 0 end
  local head, tail, total = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
  local moved = false
  while head <= tail do
    local _, l, c = bucket(h, head)
    if l + interval > now then break end
    if write then redis.call('HDEL', h, head) end
    total = total - c
    head = head + 1
    moved = true
  end
  if moved and write then
    if head > tail then
      redis.call('DEL', h)
      return 1, 0, 0
    end
    redis.call('HSET', h, 'h', head, 'n', total)
  end
  return head, tail, total
end

-- The earliest time (us) the window has room for one more start (<= now: room now), given the
-- log's starts in it (in_log, the oldest first from rank `first`).
local function earliest(h, n, interval, now, head, tail, total, rate)
  local lo = '(' .. string.format('%d', now - interval)
  local in_log = redis.call('ZCOUNT', rate, lo, '+inf')
  local need = total + in_log - n + 1
  if need <= 0 then return now, total + in_log end
  for i = head, tail do
    local _, l, c = bucket(h, i)
    if c >= need then return l + interval, total + in_log end
    need = need - c
  end
  local e = redis.call('ZRANGEBYSCORE', rate, lo, '+inf', 'WITHSCORES', 'LIMIT', need - 1, 1)
  return tonumber(e[2]) + interval, total + in_log
end
