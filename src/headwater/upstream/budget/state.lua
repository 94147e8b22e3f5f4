-- KEYS: rate, pause, pause reason, holders, then one bucket hash per counted window.
-- ARGV: W, then W times: n, interval_us, counted (1 or 0). Reads only.
-- Returns {paused_us, reason, waiting, in_flight, then W times: used, remaining, reset_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = KEYS[1]
local nowf = string.format('%d', now)
local pending = redis.call('ZCOUNT', rate, '(' .. nowf, '+inf')
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
local reason = redis.call('GET', KEYS[3]) or ''
local out = {math.max(paused - now, 0), reason, pending, redis.call('ZCOUNT', KEYS[4], '(' .. nowf, '+inf')}
if paused <= now then out[2] = '' end
local nb = 0
for i = 1, tonumber(ARGV[1]) do
  local n, interval = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local lo = '(' .. string.format('%d', now - interval)
  local used = redis.call('ZCOUNT', rate, lo, nowf)
  local oldest = nil
  if used > 0 then oldest = tonumber(redis.call('ZRANGEBYSCORE', rate, lo, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)[2]) end
  if ARGV[3 * i + 1] == '1' then
    nb = nb + 1
    local h = KEYS[4 + nb]
    local _, _, total, hl = expire(h, interval, now, false)
    if total > 0 then
      used = used + total
      oldest = hl
    end
  end
  local reset = 0
  if oldest and oldest + interval > now then reset = oldest + interval - now end
  out[#out + 1] = used
  out[#out + 1] = math.max(n - used - pending, 0)
  out[#out + 1] = reset
end
return out
