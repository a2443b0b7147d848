-- A caller asks a job to stop.
-- KEYS: the job's result key, its started key, its cancel key, its joined count.
-- ARGV: seconds to live, job id, the workers' cancel channel.
-- Returns 'final' (it has ended: nothing changes), 'shared' (identical requests joined it:
-- refused, nothing changes), else marks it cancelled, tells the workers, and returns
-- 'running' or 'pending' (the caller then ends a pending job itself: see worker.jobs).
if redis.call('EXISTS', KEYS[1]) == 1 then return 'final' end
if tonumber(redis.call('GET', KEYS[4]) or '0') > 0 then return 'shared' end
redis.call('SET', KEYS[3], '1', 'EX', ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then return 'running' end
return 'pending'
