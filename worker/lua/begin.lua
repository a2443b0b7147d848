-- A worker starts a job.
-- KEYS: the job's result key, its started key, its watch mark. ARGV: the started record,
-- seconds to live, the job's channel.
-- Returns 0, writing nothing, when the job already has its final result: a message
-- delivered again must not run again; else 2 when somebody watches its events, 1 when
-- nobody does. The record is published: the API that sent the job learns that a worker
-- took it (api.admission).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
return 1
