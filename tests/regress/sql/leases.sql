-- Lease deadlines (jobq.lease_deadlines): a row per grab or extension; the
-- reaper ends only the leases that really ran out and drops the rows it read.
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history; DELETE FROM jobq.lease_deadlines;
UPDATE jobq.maintenance SET every = '1 day', last_run_at = now();

SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    '[{"job_type": "lease_a"}, {"job_type": "lease_a"}, {"job_type": "lease_a"}]');
CREATE TEMP TABLE held AS
SELECT row_number() OVER (ORDER BY id) AS n, id, lease_token, locked_until
FROM jobq.jq_grab(ARRAY['lease_a'], '3 seconds', 3, 'w-lease');
-- one grab, one row naming its three jobs, due when their leases end
SELECT count(*) AS rows, sum(cardinality(d.job_ids)) AS jobs,
       bool_and(d.deadline = (SELECT max(locked_until) FROM held)) AS at_lease_end
FROM jobq.lease_deadlines d;

-- job 1 completes, job 2 is extended (a row of its own), job 3 is abandoned
SELECT jobq.jq_complete(id, lease_token) FROM held WHERE n = 1;
SELECT jobq.jq_extend(id, lease_token, '1 hour') > now() + interval '59 minutes' AS extended
FROM held WHERE n = 2;
SELECT count(*) AS rows FROM jobq.lease_deadlines;

-- before the first deadline nothing is reaped
SELECT (jobq.jq_maintain() ->> 'reaped_leases')::int AS reaped_early;

SELECT pg_sleep(greatest(0, extract(epoch FROM (SELECT max(locked_until) FROM held) - clock_timestamp())) + 0.2);
-- only the abandoned lease ends; the grab's row goes, the extension's stays
SELECT (jobq.jq_maintain() ->> 'reaped_leases')::int AS reaped;
SELECT h.n, j.state, j.attempts, j.failures -> -1 ->> 'kind' AS last_failure
FROM held h JOIN jobq.jobs j ON j.id = h.id ORDER BY h.n;
SELECT count(*) AS rows, bool_and(d.deadline > now() + interval '59 minutes') AS only_the_extension
FROM jobq.lease_deadlines d;
-- the extended holder still completes under its lease
SELECT jobq.jq_complete(id, lease_token) FROM held WHERE n = 2;
SELECT state FROM jobq.jobs WHERE id = (SELECT id FROM held WHERE n = 2);

DROP TABLE held;
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history; DELETE FROM jobq.lease_deadlines;
UPDATE jobq.maintenance SET every = '10 seconds';
