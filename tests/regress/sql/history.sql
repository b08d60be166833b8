-- The history of finished jobs (sql/history.sql): partitions per day, moves
-- in one statement, retention that hides at once and drops whole days.
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
UPDATE jobq.maintenance SET every = '1 day', last_run_at = now();
-- Today's partition, as maintenance makes each day's ahead of time.
SELECT jobq._create_history_partitions(now(), now()) >= 0 AS today_partitioned;

-- A finished job is in the history only, a live one in the live table only.
SELECT jobq.jq_enqueue('hist_a') AS a \gset
SELECT jobq.jq_enqueue('hist_b') AS b \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['hist_a'], '1 hour', 1) \gset
SELECT jobq.jq_complete(:a, :'tok', '{"ok": true}');
SELECT (SELECT count(*) FROM jobq.live_jobs WHERE id = :a) AS a_live,
       (SELECT count(*) FROM jobq.job_history WHERE id = :a) AS a_history,
       (SELECT count(*) FROM jobq.live_jobs WHERE id = :b) AS b_live,
       (SELECT count(*) FROM jobq.job_history WHERE id = :b) AS b_history;
-- in today's partition (UTC)
SELECT tableoid::regclass::text = 'jobq.job_history_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')
       AS in_todays_partition
FROM jobq.job_history WHERE id = :a;
SELECT jobq.jq_details(:a) -> 'result' AS result, jobq.jq_details(:a) ->> 'state' AS state;
-- a retry brings it back under its id, and it can finish again
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['hist_b'], '1 hour', 1) \gset
SELECT jobq.jq_perm_fail(:b, :'tok', 'no');
SELECT jobq.jq_retry(:b);
SELECT (SELECT count(*) FROM jobq.live_jobs WHERE id = :b) AS b_live,
       (SELECT count(*) FROM jobq.job_history WHERE id = :b) AS b_history;
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['hist_b'], '1 hour', 1) \gset
SELECT jobq.jq_complete(:b, :'tok');
SELECT jobq.jq_details(:b) ->> 'state' AS state, jsonb_array_length(jobq.jq_details(:b) -> 'failures') AS failures;

-- Maintenance leaves a partition that a running transaction holds: it waits
-- at most 50 ms for the lock on the history, then goes on with the rest and
-- drops the partition at its next run. A second connection (dblink) holds
-- the history with an open transaction that completed a job.
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT jobq._create_history_partitions(now() - interval '40 days', now() - interval '40 days') AS created;
UPDATE jobq.job_history SET finished_at = now() - interval '40 days' WHERE id = :a;
SELECT jobq.jq_enqueue('hist_c') AS c \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['hist_c'], '1 hour', 1) \gset
SELECT dblink_connect('other', format('host=%s port=%s dbname=%s user=%s',
    coalesce(host(inet_server_addr()), split_part(current_setting('unix_socket_directories'), ',', 1)),
    current_setting('port'), current_database(), current_user));
SELECT dblink_exec('other', 'BEGIN');
SELECT dblink_exec('other', format('DO $x$ BEGIN PERFORM jobq.jq_complete(%s, %L); END $x$', :c, :'tok'));
SELECT s ->> 'dropped_partitions' AS dropped, s ->> 'complete' AS complete,
       (s ->> 'ms')::numeric < 5000 AS did_not_wait_long
FROM jobq.jq_maintain() AS s;
SELECT count(*) AS old_partitions FROM jobq._history_partitions() WHERE day < current_date - 30;
SELECT dblink_exec('other', 'COMMIT');
SELECT dblink_disconnect('other');
SELECT jobq.jq_maintain() ->> 'dropped_partitions' AS dropped;
SELECT count(*) AS old_partitions FROM jobq._history_partitions() WHERE day < current_date - 30;
-- the completion committed; the job in the dropped partition was past retention
SELECT jobq.jq_details(:c) ->> 'state' AS c_state;
\set VERBOSITY sqlstate
SELECT jobq.jq_details(:a);
\set VERBOSITY default

-- Rows of a day without a partition go to the default one, and stay there:
-- that day gets no partition (moving rows would hide them from concurrent
-- readers for an instant).
SELECT jobq.jq_enqueue('hist_d') AS d \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['hist_d'], '1 hour', 1) \gset
SELECT jobq.jq_complete(:d, :'tok');
UPDATE jobq.job_history SET finished_at = now() - interval '3 days' WHERE id = :d;
SELECT tableoid::regclass AS partition FROM jobq.job_history WHERE id = :d;
SELECT jobq._create_history_partitions(now() - interval '3 days', now() - interval '3 days') AS created;
SELECT tableoid::regclass AS partition FROM jobq.job_history WHERE id = :d;
SELECT count(*) AS partitions_of_that_day FROM jobq._history_partitions()
WHERE day = ((now() - interval '3 days') AT TIME ZONE 'UTC')::date;
SELECT jobq.jq_details(:d) ->> 'state' AS state;
DROP EXTENSION dblink;
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
