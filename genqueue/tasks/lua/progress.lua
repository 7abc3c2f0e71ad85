-- A running job's progress (tasks/context.py TaskContext.progress), kept on its hash while it runs.
-- ARGV: 1 job key, 2 the progress (JSON: fraction, message, data, at), 3 the job id. gq_event: backend/events.py.
-- Returns 1 (written) or 0 (the job is not running any more: nothing written).
if redis.call('HGET', ARGV[1], 'status') ~= 'started' then return 0 end
redis.call('HSET', ARGV[1], 'genqueue_progress', ARGV[2])
gq_event(ARGV[3], 'progress', ARGV[2])
return 1
