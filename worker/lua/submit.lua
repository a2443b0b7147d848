-- Admits a job and queues its message, atomically: all of it happens, or nothing does.
-- KEYS: the job's record, the organization's in-flight set, its rate window, the queue,
-- the coalescing key ('' without a fingerprint).
-- ARGV: job id, record, record ttl, now, cap, deadline score, tests per minute (0: no
-- limit), window, coalescing ttl, message, the job record key prefix, the joined count's
-- key prefix (a job joined cannot be cancelled by one of its callers).
-- Returns {'sent'}, {'joined', <record of the job in flight>},
-- {'rate', <start time of the oldest job in the window>} or {'busy'}.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'sent'} end
local fp = KEYS[5]
if fp ~= '' then
  local other = redis.call('GET', fp)
  if other then
    local record = redis.call('GET', ARGV[11] .. other)
    if record then
      redis.call('INCR', ARGV[12] .. other)
      redis.call('EXPIRE', ARGV[12] .. other, ARGV[3])
      return {'joined', record}
    end
  end
end
local now = tonumber(ARGV[4])
local per_minute = tonumber(ARGV[7])
local window = tonumber(ARGV[8])
if per_minute > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  if redis.call('ZCARD', KEYS[3]) >= per_minute then
    return {'rate', redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2]}
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return {'busy'} end
if per_minute > 0 then
  redis.call('ZADD', KEYS[3], now, ARGV[1])
  redis.call('EXPIRE', KEYS[3], window + 1)
end
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
redis.call('EXPIRE', KEYS[2], 3600)
if fp ~= '' then redis.call('SET', fp, ARGV[1], 'EX', ARGV[9]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('LPUSH', KEYS[4], ARGV[10])
return {'sent'}
