-- Grabs that commit without waiting for the WAL flush (durable => false), and
-- event readers that never see what a crash could undo.
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    '[{"job_type": "dur"}, {"job_type": "dur"}, {"job_type": "dur"}]');

-- a durable grab (the default) leaves the transaction's commit as it was
BEGIN;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['dur'], '1 hour', 1, 'w-dur');
SHOW synchronous_commit;
COMMIT;

-- durable => false: this transaction commits asynchronously, and only this one
BEGIN;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['dur'], '1 hour', 1, 'w-dur', durable => false);
SHOW synchronous_commit;
COMMIT;
SHOW synchronous_commit;

-- NULL means the default, as for every optional parameter
BEGIN;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['dur'], '1 hour', 1, 'w-dur', durable => NULL);
SHOW synchronous_commit;
COMMIT;

-- an asynchronous grab is a grab like any other: leased, fenced, its event recorded
SELECT state, worker FROM jobq.jobs WHERE job_type = 'dur' ORDER BY id;
SELECT count(*) AS grabbed_events FROM jobq.jq_events_since(NULL, 1000) WHERE job_type = 'dur' AND event = 'grabbed';

-- a reader of the event stream finds everything it can see already on disk
SELECT jobq.jq_enqueue('dur') AS d \gset
BEGIN;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['dur'], '1 hour', 1, 'w-dur', durable => false);
COMMIT;
SELECT pg_current_wal_insert_lsn() AS written \gset
SELECT count(*) > 0 AS read_events FROM jobq.jq_events_since(NULL, 1000);
SELECT pg_current_wal_flush_lsn() >= :'written'::pg_lsn AS flushed_before_reading;

DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
