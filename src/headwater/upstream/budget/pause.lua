local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untilv = now + tonumber(ARGV[1])
local old = redis.call('GET', KEYS[2])
if old and tonumber(old) >= untilv then return tonumber(old) - now end
local px = math.ceil((untilv - now) / 1000) + 1000
redis.call('SET', KEYS[2], string.format('%d', untilv), 'PX', px)
redis.call('SET', KEYS[3], ARGV[2], 'PX', px)
local pending = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%d', now), '+inf', 'WITHSCORES')
if #pending > 0 then
  local shift = untilv - tonumber(pending[2])
  if shift > 0 then
    for i = 1, #pending, 2 do
      redis.call('ZADD', KEYS[1], tonumber(pending[i + 1]) + shift, pending[i])
    end
    local pttl = redis.call('PTTL', KEYS[1])
    if pttl > 0 then redis.call('PEXPIRE', KEYS[1], pttl + math.ceil(shift / 1000)) end
  end
end
return untilv - now
