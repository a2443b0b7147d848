-- A job ends, once: by its worker, or written off by whoever reads it past its deadline.
-- KEYS: the job's result key, the organization's in-flight set, the coalescing key
-- ('' without a fingerprint), the recent-result key ('': not remembered), the job's
-- record, the history stream, the job's event stream, its watch mark.
-- ARGV: the final record, seconds to live, job id, the job's channel, the event stream's cap.
-- Unless the job already has its final result: stores and publishes this one, forgets
-- the job as in flight and remembers it as the latest result of its test (max_age); a
-- job whose record says `recorded` (a stored source tested as stored) is also appended
-- to the history stream, in the same step, for the API's recorder (api/recorder.py); and,
-- if it has an event stream or is watched, ends that stream (an 'end' entry after every
-- event: a reader closes on it; a job nobody watched has no stream).
-- Returns 1 when this record is the one stored.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('PUBLISH', ARGV[4], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[3])
if KEYS[3] ~= '' and redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[2]) end
local raw = redis.call('GET', KEYS[5])
if raw then
  -- The result is stored by now (a script is not rolled back): an unreadable record only skips the history.
  local ok, job = pcall(cjson.decode, raw)
  if ok and type(job) == 'table' and job.recorded == true and type(job.source_id) == 'string' then
    -- Capped so that a long database outage cannot fill Redis: past it the oldest go.
    redis.call('XADD', KEYS[6], 'MAXLEN', '~', 100000, '*', 'job_id', ARGV[3],
      'organization_id', job.organization_id, 'source_id', job.source_id, 'job', raw, 'record', ARGV[1])
  end
end
if redis.call('EXISTS', KEYS[7]) == 1 or redis.call('EXISTS', KEYS[8]) == 1 then
  redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[5], '*', 'e', 'end')
  redis.call('EXPIRE', KEYS[7], ARGV[2])
end
return 1
