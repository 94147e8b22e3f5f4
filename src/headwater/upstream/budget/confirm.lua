local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return 0 end
s = tonumber(s)
if s > now then return s - now end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then return -1 end
local late = now - s
if late > tonumber(ARGV[2]) then
  local later = redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%d', s), '+inf', 'WITHSCORES')
  for i = 1, #later, 2 do
    redis.call('ZADD', KEYS[1], tonumber(later[i + 1]) + late, later[i])
  end
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then redis.call('PEXPIRE', KEYS[1], pttl + math.ceil(late / 1000)) end
end
return 0
