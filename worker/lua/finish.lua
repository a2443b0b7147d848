-- A job ends, once: by its worker, or written off by whoever reads it past its deadline.
-- KEYS: the job's result key, the organization's in-flight set, the coalescing key
-- ('' without a fingerprint), the recent-result key ('': not remembered), the job's event
-- stream, its watch mark.
-- ARGV: the final record, seconds to live, job id, the job's channel, the stream's cap.
-- Unless the job already has its final result: stores and publishes this one, forgets
-- the job as in flight, remembers it as the latest result of its test (max_age) and, if it
-- has one or is watched, ends its event stream (an 'end' entry after every event: a reader
-- closes on it; a job nobody watched has no stream).
-- Returns 1 when this record is the one stored.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('PUBLISH', ARGV[4], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[3])
if KEYS[3] ~= '' and redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[2]) end
if redis.call('EXISTS', KEYS[5]) == 1 or redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'e', 'end')
  redis.call('EXPIRE', KEYS[5], ARGV[2])
end
return 1
