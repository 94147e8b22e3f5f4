local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local timeout = tonumber(ARGV[4])

local slot = now
local paused = redis.call('GET', KEYS[2])
if paused then
  paused = tonumber(paused)
  if paused > slot then slot = paused end
end
local card = redis.call('ZCARD', KEYS[1])
if card > 0 then
  local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
  if last > slot then slot = last end
  if card >= n then
    local nth = tonumber(redis.call('ZRANGE', KEYS[1], -n, -n, 'WITHSCORES')[2]) + interval
    if nth > slot then slot = nth end
  end
  if slot > now then
    -- a turn to wait for: spaced from the one before
    local spaced = last + math.floor(interval / n)
    if spaced > slot then slot = spaced end
  end
end
if timeout >= 0 and slot > now + timeout then
  return {0, slot - now}
end

if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= cap then
    return {2, slot - now}
  end
  local lease = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[3], now + lease, ARGV[5])
  local ttl = math.ceil(lease / 1000) + 1000
  if redis.call('PTTL', KEYS[3]) < ttl then redis.call('PEXPIRE', KEYS[3], ttl) end
end

redis.call('ZADD', KEYS[1], slot, ARGV[5])
card = card + 1 - redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - interval)
local crowded = 0
if card >= n then crowded = 1 end
local excess = card - n - tonumber(ARGV[7])
if excess > 0 then
  -- keep N (+ slack) reservations, and every one not yet due
  local past = redis.call('ZCOUNT', KEYS[1], '-inf', now)
  if past < excess then excess = past end
  if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1) end
end
redis.call('PEXPIRE', KEYS[1], math.ceil((slot - now + interval) / 1000) + 1000)
return {1, slot - now, crowded}
