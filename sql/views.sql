-- ============================================================================
-- jobq: operators' views (jobq_observer, jobq_admin)
--
-- They read the tables as their owner, so observers need no table
-- privileges; none but jobq.jobs (admins only) shows args or results.
-- ============================================================================

-- Every job, live or finished and retained, with the columns of 0.1.0's
-- single jobs table: for operators and their scripts that read jobs with
-- plain SQL. Writes go through the API functions.
CREATE VIEW jobq.jobs AS
SELECT j.id, j.job_type, j.queue, j.state, j.priority, j.attempts, j.max_attempts, j.run_at,
       j.created_at, j.expires_at, j.started_at, j.attempted_at, NULL::timestamptz AS finished_at,
       j.locked_until, j.lease_token, j.worker, j.unique_key, j.args, NULL::jsonb AS result,
       j.failures, NULL::bigint[] AS replaced_by, j.notes, j.cancel_requested_at, j.depends_on,
       j.pending_parents, j.run_anyway, j.has_dependants
FROM jobq.live_jobs j
UNION ALL
SELECT h.id, h.job_type, h.queue, h.state, h.priority, h.attempts, h.max_attempts, h.run_at,
       h.created_at, h.expires_at, h.started_at, h.attempted_at, h.finished_at,
       NULL::timestamptz, NULL::uuid, h.worker, h.unique_key, h.args, h.result,
       h.failures, h.replaced_by, h.notes, h.cancel_requested_at, h.depends_on,
       0, h.run_anyway, h.has_dependants
FROM jobq.job_history h
WHERE h.finished_at >= now() - coalesce(
          (SELECT t.retention FROM jobq.job_types t WHERE t.job_type = h.job_type),
          (SELECT d.retention FROM jobq.job_types d WHERE d.job_type = '*'),
          interval '7 days');
COMMENT ON VIEW jobq.jobs IS
    'Every job: live ones (jobq.live_jobs) and finished ones still retained (jobq.job_history).';

-- Per queue and job type: jobs by state, the age of the oldest job that is due
-- but not running, and throughput. Reads every retained job: on a very large
-- table, prefer a filter on queue or job_type.
CREATE VIEW jobq.queue_stats AS
SELECT s.queue, s.job_type, coalesce(q.paused, false) AS paused,
       s.blocked, s.scheduled, s.due, s.running, t.max_running, s.completed, s.failed,
       s.cancelled, s.expired, s.replaced,
       date_trunc('second', s.oldest_due_age) AS oldest_due_age,
       s.completed_last_minute, s.completed_last_hour, s.failed_last_hour
FROM (
    SELECT j.queue, j.job_type,
           count(*) FILTER (WHERE j.state = 'blocked') AS blocked,
           count(*) FILTER (WHERE j.state = 'waiting' AND j.run_at > now()) AS scheduled,
           count(*) FILTER (WHERE j.state = 'waiting' AND j.run_at <= now()) AS due,
           count(*) FILTER (WHERE j.state = 'running') AS running,
           count(*) FILTER (WHERE j.state = 'completed') AS completed,
           count(*) FILTER (WHERE j.state = 'failed') AS failed,
           count(*) FILTER (WHERE j.state = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE j.state = 'expired') AS expired,
           count(*) FILTER (WHERE j.state = 'replaced') AS replaced,
           now() - min(j.run_at) FILTER (WHERE j.state = 'waiting' AND j.run_at <= now())
               AS oldest_due_age,
           count(*) FILTER (WHERE j.state = 'completed' AND j.finished_at > now() - interval '1 minute')
               AS completed_last_minute,
           count(*) FILTER (WHERE j.state = 'completed' AND j.finished_at > now() - interval '1 hour')
               AS completed_last_hour,
           count(*) FILTER (WHERE j.state = 'failed' AND j.finished_at > now() - interval '1 hour')
               AS failed_last_hour
    FROM jobq.jobs j
    GROUP BY j.queue, j.job_type
) s
LEFT JOIN jobq.queues q ON q.queue = s.queue
LEFT JOIN jobq.job_types t ON t.job_type = s.job_type
ORDER BY s.queue, s.job_type;
COMMENT ON VIEW jobq.queue_stats IS
    'Per queue and job type: jobs by state, oldest due job, completions in the last minute and hour.';

-- Jobs running now: who holds them, for how long, and their notes (progress).
CREATE VIEW jobq.running_jobs AS
SELECT j.id, j.job_type, j.queue, j.worker, j.attempts AS attempt, j.max_attempts,
       date_trunc('second', now() - j.attempted_at) AS running_for,
       date_trunc('second', j.locked_until - now()) AS lease_left,
       j.cancel_requested_at IS NOT NULL AS cancel_requested,
       j.notes
FROM jobq.live_jobs j
WHERE j.state = 'running'
ORDER BY j.attempted_at, j.id;
COMMENT ON VIEW jobq.running_jobs IS 'Running jobs with their worker, lease age and notes.';

-- Jobs that failed for good, latest first, with their last failure.
CREATE VIEW jobq.failed_jobs AS
SELECT j.id, j.job_type, j.queue, j.attempts, j.finished_at,
       j.failures -> -1 ->> 'kind' AS last_failure,
       j.failures -> -1 ->> 'message' AS last_error,
       j.failures -> -1 ->> 'worker' AS last_worker
FROM jobq.jobs j
WHERE j.state = 'failed'
ORDER BY j.finished_at DESC, j.id DESC;
COMMENT ON VIEW jobq.failed_jobs IS 'Jobs that failed for good, latest first, with their last error.';

-- Workers seen in the last day (by their grabs, empty ones included), with
-- what they asked for and how many jobs they hold now.
CREATE VIEW jobq.workers AS
SELECT w.worker, date_trunc('second', now() - w.last_seen) AS last_seen_ago,
       coalesce(r.running, 0) AS running, w.job_types, w.queues, w.first_seen, w.last_seen
FROM jobq.seen_workers w
LEFT JOIN (SELECT j.worker, count(*) AS running FROM jobq.live_jobs j
           WHERE j.state = 'running' GROUP BY j.worker) r ON r.worker = w.worker
ORDER BY w.last_seen DESC, w.worker;
COMMENT ON VIEW jobq.workers IS 'Workers seen recently (by their grabs) and the jobs they hold.';

