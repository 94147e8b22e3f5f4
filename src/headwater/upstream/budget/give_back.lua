local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not s or tonumber(s) <= now then return 0 end
local card = redis.call('ZCARD', KEYS[1])
local first = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
if card - 1 >= tonumber(ARGV[1]) or first + tonumber(ARGV[2]) <= now then
  redis.call('ZREM', KEYS[1], ARGV[3])
  return 1
end
return 0
