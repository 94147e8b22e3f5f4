-- Counted windows (shared by acquire.lua and state.lua): the starts that left the log, as a hash
-- of buckets: fields h and t (sequence numbers of the oldest and newest bucket), n (their total),
-- hl (the oldest bucket's last start), and one field per bucket, "<first>:<last>:<count>" (us). A bucket spans less than width and is
-- counted until its last start leaves the window (see the package docstring).
local function bucket(h, i)
  local v = redis.call('HGET', h, i)
  if not v then return nil end
  local f, l, c = string.match(v, '(%d+):(%d+):(%d+)')
  return tonumber(f), tonumber(l), tonumber(c)
end

-- Drops the buckets whose last start left the window; returns head, tail, total and the head
-- bucket's last start (the field hl keeps it, so that nothing more is read while none expires).
local function expire(h, interval, now, write)
  local s = redis.call('HMGET', h, 'h', 't', 'n', 'hl')
  if not s[1] then return 1, 0, 0, nil end
  local head, tail, total, hl = tonumber(s[1]), tonumber(s[2]), tonumber(s[3]), tonumber(s[4])
  if hl and hl + interval > now then return head, tail, total, hl end
  while head <= tail do
    local _, l, c = bucket(h, head)
    if l + interval > now then
      hl = l
      break
    end
    if write then redis.call('HDEL', h, head) end
    total = total - c
    head = head + 1
  end
  if head > tail then
    if write then redis.call('DEL', h) end
    return 1, 0, 0, nil
  end
  if write then redis.call('HSET', h, 'h', head, 'n', total, 'hl', hl) end
  return head, tail, total, hl
end

-- The earliest time (us) the window has room for one more start (<= now: room now); `card`:
-- the log's size (all of it might be in the window).
local function earliest(h, n, interval, now, head, tail, total, rate, card)
  if total + card < n then return now end
  local lo = '(' .. string.format('%d', now - interval)
  local need = total + redis.call('ZCOUNT', rate, lo, '+inf') - n + 1
  if need <= 0 then return now end
  for i = head, tail do
    local _, l, c = bucket(h, i)
    if c >= need then return l + interval end
    need = need - c
  end
  local e = redis.call('ZRANGEBYSCORE', rate, lo, '+inf', 'WITHSCORES', 'LIMIT', need - 1, 1)
  return tonumber(e[2]) + interval
end
