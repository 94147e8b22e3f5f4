-- KEYS: rate, pause, holders, then one bucket hash per counted window (in the windows' order).
-- ARGV: cap, timeout_us (-1 = none), token, lease_us, keep, log_span_us, span_us, buckets,
--       W, then W times: n, interval_us, counted (1 or 0).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cap = tonumber(ARGV[1])
local timeout = tonumber(ARGV[2])
local keep = tonumber(ARGV[5])
local log_span = tonumber(ARGV[6])
local span = tonumber(ARGV[7])
local buckets = tonumber(ARGV[8])
local w = tonumber(ARGV[9])
local rate = KEYS[1]

local windows = {}
local nb = 0
for i = 1, w do
  local n, interval, counted = tonumber(ARGV[7 + 3 * i]), tonumber(ARGV[8 + 3 * i]), ARGV[9 + 3 * i] == '1'
  local win = {n = n, interval = interval}
  if counted then
    nb = nb + 1
    win.h = KEYS[3 + nb]
    win.head, win.tail, win.total, win.hl = expire(win.h, interval, now, true)
  end
  windows[i] = win
end

local slot = now
local paused = redis.call('GET', KEYS[2])
if paused then
  paused = tonumber(paused)
  if paused > slot then slot = paused end
end
local card = redis.call('ZCARD', rate)
local last = nil
local spacing = 0
if card > 0 then
  last = tonumber(redis.call('ZRANGE', rate, -1, -1, 'WITHSCORES')[2])
  if last > slot then slot = last end
end
local min_spacing = nil
for i = 1, w do
  local win = windows[i]
  local e = nil
  if win.h then
    e = earliest(win.h, win.n, win.interval, now, win.head, win.tail, win.total, rate, card)
  elseif card >= win.n then
    e = tonumber(redis.call('ZRANGE', rate, -win.n, -win.n, 'WITHSCORES')[2]) + win.interval
  end
  local s = math.floor(win.interval / win.n)
  if not min_spacing or s < min_spacing then min_spacing = s end
  if e and e > now then
    if e > slot then slot = e end
    if s > spacing then spacing = s end
  end
end
if last and slot > now then
  -- a turn to wait for: spaced from the one before (by the full windows' spacing)
  if spacing == 0 then spacing = min_spacing end
  if last + spacing > slot then slot = last + spacing end
end
if timeout >= 0 and slot > now + timeout then
  return {0, slot - now}
end

if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', now))
  if redis.call('ZCARD', KEYS[3]) >= cap then
    return {2, slot - now}
  end
  local lease = tonumber(ARGV[4])
  redis.call('ZADD', KEYS[3], now + lease, ARGV[3])
  local ttl = math.ceil(lease / 1000) + 1000
  if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
end

redis.call('ZADD', rate, slot, ARGV[3])
card = card + 1

-- Trim: keep every reservation not yet due, and of the others the last `keep` less than log_span
-- old (a prefix of the log either way); those that leave the log are counted in the counted
-- windows' buckets.
local gone = {}
if nb == 0 then
  -- no counted window: what leaves the log is just dropped (as two commands at most)
  card = card - redis.call('ZREMRANGEBYSCORE', rate, '-inf', string.format('%d', now - log_span))
  local excess = card - keep
  if excess > 0 then
    local past = redis.call('ZCOUNT', rate, '-inf', string.format('%d', now))
    if past < excess then excess = past end
    if excess > 0 then
      redis.call('ZREMRANGEBYRANK', rate, 0, excess - 1)
      card = card - excess
    end
  end
else
  local drop = redis.call('ZCOUNT', rate, '-inf', string.format('%d', now - log_span))
  local excess = card - keep
  if excess > drop then
    local past = redis.call('ZCOUNT', rate, '-inf', string.format('%d', now))
    if past < excess then excess = past end
    if excess > drop then drop = excess end
  end
  -- Starts leave the log for the buckets in batches of at least 16 (each batch costs a few
  -- bucket writes; the log holds at most 16 more past starts for it, which is always exact).
  if drop >= 16 then
    gone = redis.call('ZRANGE', rate, 0, drop - 1, 'WITHSCORES')
    redis.call('ZREMRANGEBYRANK', rate, 0, drop - 1)
    card = card - drop
  end
end
for i = 1, w do
  local win = windows[i]
  if win.h and #gone > 0 then
    local width = math.floor(win.interval / buckets)
    local f, l, c = nil, nil, nil
    if win.tail >= win.head then f, l, c = bucket(win.h, win.tail) end
    for j = 2, #gone, 2 do
      local x = tonumber(gone[j])
      if f and x < f + width then
        if x > l then l = x end
        c = c + 1
      else
        if f then
          redis.call('HSET', win.h, win.tail, string.format('%d:%d:%d', f, l, c))
          if win.tail == win.head then win.hl = l end
        end
        win.tail = win.tail + 1
        f, l, c = x, x, 1
      end
    end
    win.total = win.total + #gone / 2
    if win.tail == win.head then win.hl = l end
    redis.call('HSET', win.h, win.tail, string.format('%d:%d:%d', f, l, c),
               'h', win.head, 't', win.tail, 'n', win.total, 'hl', win.hl)
    redis.call('PEXPIRE', win.h, math.ceil((slot - now + win.interval) / 1000) + 1000)
  end
end
redis.call('PEXPIRE', rate, math.ceil((slot - now + span) / 1000) + 1000)

-- Each window as this reservation finds it: remaining and reset (us after the slot). Crowded: a
-- window holds n starts from the last interval and the future (a late start must shift the
-- reservations behind it); while none does, no window can fill up, however late anyone starts.
local out = {1, slot - now, 0}
for i = 1, w do
  local win = windows[i]
  local used, recent, oldest
  if nb == 0 and slot == now and win.interval == log_span then
    -- the trimmed log holds exactly this window's starts (the common case: one window, no wait)
    used = card
    recent = card
    oldest = tonumber(redis.call('ZRANGE', rate, 0, 0, 'WITHSCORES')[2])
  else
    local lo = '(' .. string.format('%d', slot - win.interval)
    used = redis.call('ZCOUNT', rate, lo, '+inf')
    recent = used
    if slot > now then recent = redis.call('ZCOUNT', rate, '(' .. string.format('%d', now - win.interval), '+inf') end
    if win.h and win.total > 0 then
      used = used + win.total
      recent = recent + win.total
      oldest = win.hl
    else
      oldest = tonumber(redis.call('ZRANGEBYSCORE', rate, lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2])
    end
  end
  if recent >= win.n then out[3] = 1 end
  local reset = 0
  if oldest and oldest + win.interval > slot then reset = oldest + win.interval - slot end
  out[#out + 1] = math.max(win.n - used, 0)
  out[#out + 1] = reset
end
return out
