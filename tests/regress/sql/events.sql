-- Events (SPEC 4): every state change of a job is a row of jobq.events,
-- written in the transaction that made it; jq_events_since reads them with a
-- cursor, jq_events_for_job per job; record_events and event_retention per
-- type; jq_prune_events; who may read them. Ids, xids and times are never
-- printed: only event names, states, counts and booleans.
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
DELETE FROM jobq.event_batches;

-- A job's events, oldest first, with the time in lease-expiry messages masked.
CREATE FUNCTION pg_temp.events_of(p_job bigint)
RETURNS TABLE (event text, from_state text, to_state text, attempt integer, worker text,
               message text)
LANGUAGE sql AS $$
    SELECT e.event, e.from_state, e.to_state, e.attempt, e.worker,
           regexp_replace(e.message, 'expired at .*$', 'expired at <time>')
    FROM jobq.jq_events_for_job(p_job) AS e
$$;

-- Runs a statement and reports its SQLSTATE and message.
CREATE FUNCTION pg_temp.rejection(q text, OUT code text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    code := '00000';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END;
$$;

-- jq_events_since returns an event only once every transaction that could
-- still commit an event before it has ended. On a server shared with other
-- sessions one of those may be open for a moment, so wait for that first.
CREATE FUNCTION pg_temp.all_readable() RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_deadline constant timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
    LOOP
        IF NOT EXISTS (SELECT FROM jobq.events e
                       WHERE e.xid >= pg_snapshot_xmin(pg_current_snapshot())) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() > v_deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END;
$$;

-- Reads every event after p_cursor, p_page at a time, the way a subscriber
-- does, and compares what it got with the table.
CREATE FUNCTION pg_temp.read_all(p_cursor text, p_page integer,
                                 OUT pages integer, OUT events bigint, OUT distinct_events bigint,
                                 OUT in_table_order boolean, OUT last_cursor text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_ids bigint[] := '{}';
    v_page bigint[];
    v_cursor text := p_cursor;
BEGIN
    pages := 0;
    LOOP
        SELECT coalesce(array_agg(r.id ORDER BY r.ordinality), '{}'),
               coalesce((array_agg(r.cursor ORDER BY r.ordinality DESC))[1], v_cursor)
        INTO v_page, v_cursor
        FROM jobq.jq_events_since(v_cursor, p_page) WITH ORDINALITY AS r;
        EXIT WHEN cardinality(v_page) = 0;
        pages := pages + 1;
        v_ids := v_ids || v_page;
    END LOOP;
    events := cardinality(v_ids);
    distinct_events := (SELECT count(DISTINCT u) FROM unnest(v_ids) AS u);
    in_table_order := v_ids = ARRAY(
        SELECT e.id FROM jobq.events e
        WHERE p_cursor IS NULL OR e.id = ANY (v_ids)
        ORDER BY e.xid, e.id);
    last_cursor := v_cursor;
END;
$$;

-- ---------------------------------------------------------------------------
-- enqueue, grab, temp_fail, grab, extend, complete
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('ev_life', '{"secret": "s3cr3t-payload"}', 'ev_q') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ev_life'], '1 hour', 1, 'w1') \gset
SELECT state FROM jobq.jq_temp_fail(:id, :'tok', 'smtp down', '0');
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ev_life'], '1 hour', 1, 'w2') \gset
SELECT jobq.jq_extend(:id, :'tok', '2 hours') IS NOT NULL AS extended;
SELECT jobq.jq_complete(:id, :'tok', '{"sent": true}');
SELECT * FROM pg_temp.events_of(:id);
-- job type and queue are the job's; times are the database clock's, in order
SELECT count(*) AS events, bool_and(job_type = 'ev_life' AND queue = 'ev_q') AS type_and_queue,
       bool_and(at <= clock_timestamp()) AS at_ok,
       array_agg(at ORDER BY id) = array_agg(at ORDER BY at, id) AS times_ascend
FROM jobq.jq_events_for_job(:id);
-- events carry no args or result: not as a column, nor inside any value
SELECT count(*) AS payload_columns FROM information_schema.columns
WHERE table_schema = 'jobq' AND table_name = 'events' AND column_name IN ('args', 'result');
SELECT count(*) AS events_mentioning_payload FROM jobq.events e
WHERE to_jsonb(e)::text LIKE '%s3cr3t%' OR to_jsonb(e)::text LIKE '%sent%';

-- ---------------------------------------------------------------------------
-- temp_fail with the attempts used up: temp_failed, to state failed
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('ev_once', max_attempts => 1) AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ev_once'], '1 hour', 1, 'w1') \gset
SELECT state FROM jobq.jq_temp_fail(:id, :'tok', 'gave up', '0');
SELECT * FROM pg_temp.events_of(:id);

-- ---------------------------------------------------------------------------
-- perm_fail
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('ev_perm') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ev_perm'], '1 hour', 1, 'w3') \gset
SELECT jobq.jq_perm_fail(:id, :'tok', 'no such user');
SELECT * FROM pg_temp.events_of(:id);

-- ---------------------------------------------------------------------------
-- leases that run out: lease_expired back to waiting, then (attempts used
-- up) to failed; the reaping grab's own grab follows as its own event
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('ev_lease', max_attempts => 2) AS id \gset
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ev_lease'], '10 ms', 1, 'w-slow');
SELECT pg_sleep(0.05);
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ev_lease'], '10 ms', 1, 'w-slower');
SELECT pg_sleep(0.05);
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ev_nothing'], '1 hour', 1);
SELECT * FROM pg_temp.events_of(:id);

-- ---------------------------------------------------------------------------
-- replace: exactly one 'replaced' (jq_replace updates the old row twice), and
-- the children's 'enqueued', all in the one transaction
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('ev_parent') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ev_parent'], '1 hour', 1, 'w4') \gset
SELECT jobq.jq_replace(:id, :'tok', '[{"job_type": "ev_child_a", "args": {"secret": "s3cr3t"}},
                                     {"job_type": "ev_child_b", "queue": "ev_q2"}]') AS kids \gset
SELECT * FROM pg_temp.events_of(:id);
SELECT e.job_type, e.queue, e.event, e.from_state, e.to_state, e.attempt
FROM unnest(:'kids'::bigint[]) AS k(id)
CROSS JOIN LATERAL jobq.jq_events_for_job(k.id) AS e
ORDER BY e.id;
SELECT count(DISTINCT e.xid) AS transactions, count(*) AS events
FROM jobq.events e
WHERE e.job_id = ANY (:'kids'::bigint[]) OR (e.job_id = :id AND e.event = 'replaced');

-- ---------------------------------------------------------------------------
-- expires_at passed: expired, from waiting, with no worker
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('ev_expiring', expires_at => clock_timestamp() + interval '20 ms') AS id \gset
SELECT pg_sleep(0.05);
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ev_expiring'], '1 hour', 1, 'w5');
SELECT * FROM pg_temp.events_of(:id);

-- ---------------------------------------------------------------------------
-- changes through the API that operators use: cancel, retry a finished job,
-- release a lease. Plain SQL writes to the tables (as superuser) record
-- nothing: events are written by jobq's functions.
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('ev_admin') AS id \gset
SELECT count(*) AS events_before FROM jobq.events \gset
UPDATE jobq.live_jobs SET run_at = run_at + interval '1 hour', priority = 5 WHERE id = :id;
UPDATE jobq.job_history SET replaced_by = '{}' WHERE job_type = 'ev_life';
SELECT count(*) - :events_before AS new_events FROM jobq.events;
SELECT jobq.jq_cancel(:id);
SELECT jobq.jq_retry(:id);
SELECT * FROM pg_temp.events_of(:id);
-- a lease handed back without a failure (what a worker's release does)
SELECT jobq.jq_enqueue('ev_release') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ev_release'], '1 hour', 1, 'w-release') \gset
SELECT jobq.jq_release(:id, :'tok');
SELECT * FROM pg_temp.events_of(:id);

-- ---------------------------------------------------------------------------
-- batches: one event per job in one statement, in job order; the batch
-- completion records only the jobs it completed
-- ---------------------------------------------------------------------------
SELECT count(*) AS events_before FROM jobq.events \gset
SELECT count(*) AS enqueued
FROM jobq.jq_enqueue_many((SELECT jsonb_agg(jsonb_build_object('job_type', 'ev_batch', 'args',
                                                               jsonb_build_object('n', n)))
                           FROM generate_series(1, 1000) AS n));
SELECT count(*) AS events, count(DISTINCT e.job_id) AS jobs, count(DISTINCT e.xid) AS transactions,
       bool_and(e.event = 'enqueued' AND e.from_state IS NULL AND e.to_state = 'waiting'
                AND e.attempt = 0 AND e.worker IS NULL AND e.message IS NULL) AS all_enqueued,
       array_agg(e.job_id ORDER BY e.id) = array_agg(e.job_id ORDER BY e.job_id) AS in_job_order
FROM jobq.events e WHERE e.job_type = 'ev_batch';
SELECT array_agg(id) AS ids, array_agg(lease_token) AS toks
FROM jobq.jq_grab(ARRAY['ev_batch'], '1 hour', 3, 'w-batch') \gset
SELECT outcome, count(*) FROM jobq.jq_complete_many(:'ids'::bigint[] || ARRAY[-1::bigint],
                                                    :'toks'::uuid[] || gen_random_uuid())
GROUP BY outcome ORDER BY outcome;
SELECT event, count(*) FROM jobq.events WHERE job_type = 'ev_batch' GROUP BY event ORDER BY event;

-- an idempotent enqueue that finds its key taken inserts nothing and records nothing
SELECT jobq.jq_enqueue('ev_unique', unique_key => 'k') AS id \gset
SELECT jobq.jq_enqueue('ev_unique', unique_key => 'k') = :id AS same_job;
SELECT count(*) AS events FROM jobq.events WHERE job_type = 'ev_unique';

-- a rolled-back change leaves no event
BEGIN;
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many('[{"job_type": "ev_rollback"}]');
SELECT count(*) AS events_inside FROM jobq.events WHERE job_type = 'ev_rollback';
ROLLBACK;
SELECT count(*) AS events_after FROM jobq.events WHERE job_type = 'ev_rollback';

-- ---------------------------------------------------------------------------
-- record_events = false: per type, else from '*'
-- ---------------------------------------------------------------------------
INSERT INTO jobq.job_types (job_type, record_events) VALUES ('ev_quiet', false);
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    '[{"job_type": "ev_quiet"}, {"job_type": "ev_loud"}, {"job_type": "ev_quiet"}]');
SELECT id AS qid, lease_token AS qtok FROM jobq.jq_grab(ARRAY['ev_quiet'], '1 hour', 1) \gset
SELECT jobq.jq_complete(:qid, :'qtok');
SELECT job_type, count(*) AS events FROM jobq.events
WHERE job_type IN ('ev_quiet', 'ev_loud') GROUP BY job_type ORDER BY job_type;
-- off in '*': types without a row record nothing, a type with record_events true still does
UPDATE jobq.job_types SET record_events = false WHERE job_type = '*';
INSERT INTO jobq.job_types (job_type, record_events) VALUES ('ev_audited', true);
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    '[{"job_type": "ev_default"}, {"job_type": "ev_audited"}, {"job_type": "ev_quiet"}]');
SELECT job_type, count(*) AS events FROM jobq.events
WHERE job_type IN ('ev_default', 'ev_audited', 'ev_quiet') GROUP BY job_type ORDER BY job_type;
UPDATE jobq.job_types SET record_events = true WHERE job_type = '*';
-- and the built-in default, with no '*' row at all, is to record
BEGIN;
DELETE FROM jobq.job_types WHERE job_type = '*';
SELECT (jobq._type_settings('ev_nothing')).record_events AS built_in_record_events,
       (jobq._type_settings('ev_nothing')).event_retention AS built_in_event_retention;
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many('[{"job_type": "ev_no_star"}]');
SELECT count(*) AS events FROM jobq.events WHERE job_type = 'ev_no_star';
ROLLBACK;

-- ---------------------------------------------------------------------------
-- the cursor
-- ---------------------------------------------------------------------------
SELECT pg_temp.all_readable() AS all_readable;
-- from the beginning, in pages of 7 and in one page: every event once, in (xid, id) order
SELECT count(*) AS events_in_table FROM jobq.events \gset
SELECT pages = ceil(:events_in_table / 7.0) AS pages_of_7, events = :events_in_table AS all_read,
       distinct_events = events AS each_once, in_table_order, last_cursor IS NOT NULL AS has_cursor
FROM pg_temp.read_all(NULL, 7);
SELECT pages, events = :events_in_table AS all_read, distinct_events = events AS each_once,
       in_table_order
FROM pg_temp.read_all(NULL, 10000);
-- the default page is 1000 events
SELECT count(*) AS default_page FROM jobq.jq_events_since();
SELECT count(*) AS null_page FROM jobq.jq_events_since(NULL, NULL);
-- from the last cursor: nothing new yet; then only what came after
SELECT last_cursor AS cur FROM pg_temp.read_all(NULL, 10000) \gset
SELECT count(*) AS after_last FROM jobq.jq_events_since(:'cur');
SELECT jobq.jq_enqueue('ev_later') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ev_later'], '1 hour', 1, 'w6') \gset
SELECT jobq.jq_complete(:id, :'tok');
SELECT pg_temp.all_readable() AS all_readable;
SELECT job_type, event FROM jobq.jq_events_since(:'cur');
SELECT pages, events, distinct_events, in_table_order FROM pg_temp.read_all(:'cur', 1);
-- the same cursor reads the same events again (a subscriber may retry)
SELECT (SELECT array_agg(id ORDER BY id) FROM jobq.jq_events_since(:'cur'))
     = (SELECT array_agg(id ORDER BY id) FROM jobq.jq_events_since(:'cur')) AS repeatable;
-- every row's cursor continues right after that row
WITH r AS (SELECT * FROM jobq.jq_events_since(NULL, 10000) WITH ORDINALITY)
SELECT count(*) = (SELECT count(*) FROM jobq.events) AS all_rows,
       bool_and((SELECT n.id FROM jobq.jq_events_since(r.cursor, 1) AS n)
                IS NOT DISTINCT FROM (SELECT s.id FROM r s WHERE s.ordinality = r.ordinality + 1))
           AS each_cursor_continues
FROM r;

-- bad cursors and page sizes: JQ010
SELECT c AS cursor, r.code, r.message
FROM unnest(ARRAY['', 'abc', '1', '1-', '-1', '1-2-3', '01-2', '1-02', ' 1-2', '1-2 ', '0x1-2',
                  '1.5-2', '-1-2', '18446744073709551616-1', '1-9223372036854775808',
                  '123456789012345678901-1']) AS c
CROSS JOIN LATERAL pg_temp.rejection(format('SELECT * FROM jobq.jq_events_since(%L)', c)) AS r;
SELECT m AS max_events, r.code, r.message
FROM unnest(ARRAY[0, -1, 10001]) AS m
CROSS JOIN LATERAL pg_temp.rejection(format('SELECT * FROM jobq.jq_events_since(NULL, %s)', m)) AS r;
-- the largest values are accepted (and read nothing)
SELECT count(*) AS beyond_everything FROM jobq.jq_events_since('18446744073709551615-9223372036854775807', 10000);
SELECT count(*) AS from_zero FROM jobq.jq_events_since('0-0', 10000) \gset
SELECT :from_zero = (SELECT count(*) FROM jobq.events) AS zero_is_the_beginning;
-- events of a job that never existed: none, and no error
SELECT count(*) AS unknown_job_events FROM jobq.jq_events_for_job(-1);
SELECT count(*) AS null_job_events FROM jobq.jq_events_for_job(NULL);

-- ---------------------------------------------------------------------------
-- retention: events outlive their job, until their own retention passes
-- ---------------------------------------------------------------------------
-- (the wake-up worker's periodic maintenance prunes too: keep it out of the way)
UPDATE jobq.maintenance SET every = '1 day', last_run_at = now();
SELECT id AS life FROM jobq.jobs WHERE job_type = 'ev_life' \gset
SELECT count(*) AS life_events FROM jobq.events WHERE job_id = :life \gset
-- the job is pruned (simulated); its events stay
DELETE FROM jobq.live_jobs WHERE id = :life; DELETE FROM jobq.job_history WHERE id = :life;
SELECT count(*) AS events_of_deleted_job FROM jobq.jq_events_for_job(:life);
SELECT jobq.jq_prune_events() AS pruned;
SELECT count(*) AS events_of_deleted_job FROM jobq.jq_events_for_job(:life);
-- 29 days old: kept (default 30 days); 40 days old: pruned, and only those
SELECT count(*) AS total_before FROM jobq.events \gset
UPDATE jobq.event_batches SET at = now() - interval '29 days' WHERE :life = ANY (job_ids);
SELECT jobq.jq_prune_events() AS pruned;
UPDATE jobq.event_batches SET at = now() - interval '40 days' WHERE :life = ANY (job_ids);
SELECT jobq.jq_prune_events() = :life_events AS pruned_all_of_them;
SELECT count(*) AS events_of_deleted_job FROM jobq.jq_events_for_job(:life);
SELECT :total_before - count(*) = :life_events AS nothing_else_pruned FROM jobq.events;
-- per type: a type's own event_retention, else '*'
INSERT INTO jobq.job_types (job_type, event_retention) VALUES ('ev_keep', '90 days'),
                                                              ('ev_brief', '1 hour');
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    '[{"job_type": "ev_keep"}, {"job_type": "ev_brief"}, {"job_type": "ev_plain"}]');
UPDATE jobq.event_batches SET at = now() - interval '2 hours'
WHERE job_type IN ('ev_keep', 'ev_brief', 'ev_plain');
SELECT jobq.jq_prune_events() AS pruned;
SELECT job_type, count(*) AS events FROM jobq.events
WHERE job_type IN ('ev_keep', 'ev_brief', 'ev_plain') GROUP BY job_type ORDER BY job_type;
UPDATE jobq.event_batches SET at = now() - interval '40 days' WHERE job_type IN ('ev_keep', 'ev_plain');
SELECT jobq.jq_prune_events() AS pruned;
SELECT job_type, count(*) AS events FROM jobq.events
WHERE job_type IN ('ev_keep', 'ev_plain') GROUP BY job_type ORDER BY job_type;
UPDATE jobq.job_types SET event_retention = '10 days' WHERE job_type = '*';
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many('[{"job_type": "ev_plain"}, {"job_type": "ev_plain"}]');
UPDATE jobq.event_batches SET at = now() - interval '20 days' WHERE job_type = 'ev_plain';
SELECT jobq.jq_prune_events() AS pruned;
UPDATE jobq.job_types SET event_retention = '30 days' WHERE job_type = '*';
-- without a '*' row the built-in 30 days apply
BEGIN;
DELETE FROM jobq.job_types WHERE job_type = '*';
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many('[{"job_type": "ev_plain"}, {"job_type": "ev_plain"}]');
UPDATE jobq.event_batches SET at = now() - interval '29 days' WHERE job_type = 'ev_plain';
SELECT jobq.jq_prune_events() AS pruned;
UPDATE jobq.event_batches SET at = now() - interval '31 days' WHERE job_type = 'ev_plain';
SELECT jobq.jq_prune_events() AS pruned;
ROLLBACK;
-- _prune_events deletes at most its limit of stored rows per call (a row
-- holds the events of one statement) and returns how many events went
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    (SELECT jsonb_agg(jsonb_build_object('job_type', 'ev_old')) FROM generate_series(1, 5)));
SELECT count(*) AS enqueued FROM (SELECT jobq.jq_enqueue('ev_old') FROM generate_series(1, 3)) e;
UPDATE jobq.event_batches SET at = now() - interval '40 days' WHERE job_type = 'ev_old';
SELECT jobq._prune_events(now(), 2) AS first, jobq._prune_events(now(), 2) AS second,
       jobq._prune_events(now(), 2) AS third, jobq._prune_events(now(), 2) AS fourth;
DELETE FROM jobq.event_batches WHERE job_type = 'ev_keep';
-- retention is checked
UPDATE jobq.job_types SET event_retention = '-1 day' WHERE job_type = '*';
\echo :SQLSTATE
DELETE FROM jobq.job_types WHERE job_type LIKE 'ev\_%';

-- ---------------------------------------------------------------------------
-- who may read events: jobq_observer (and jobq_admin through it); producers
-- and workers may not; only admins prune
-- ---------------------------------------------------------------------------
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_ev_observer;
DROP ROLE IF EXISTS regress_ev_producer;
DROP ROLE IF EXISTS regress_ev_worker;
DROP ROLE IF EXISTS regress_ev_admin;
RESET client_min_messages;
CREATE ROLE regress_ev_observer NOLOGIN IN ROLE jobq_observer;
CREATE ROLE regress_ev_producer NOLOGIN IN ROLE jobq_producer;
CREATE ROLE regress_ev_worker NOLOGIN IN ROLE jobq_worker;
CREATE ROLE regress_ev_admin NOLOGIN IN ROLE jobq_admin;
SELECT pg_has_role('jobq_admin', 'jobq_observer', 'MEMBER') AS admin_is_observer,
       pg_has_role('jobq_observer', 'jobq_producer', 'MEMBER') AS observer_is_producer,
       pg_has_role('jobq_observer', 'jobq_worker', 'MEMBER') AS observer_is_worker,
       (SELECT NOT rolcanlogin FROM pg_roles WHERE rolname = 'jobq_observer') AS nologin;
SELECT p.oid::regprocedure AS function,
       has_function_privilege('regress_ev_observer', p.oid, 'EXECUTE') AS observer,
       has_function_privilege('regress_ev_producer', p.oid, 'EXECUTE') AS producer,
       has_function_privilege('regress_ev_worker', p.oid, 'EXECUTE') AS worker,
       has_function_privilege('regress_ev_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public,
       p.prosecdef AS security_definer, p.provolatile AS volatility, p.proisstrict AS strict
FROM pg_proc p
WHERE p.pronamespace = 'jobq'::regnamespace
  AND (p.proname LIKE '%event%' OR p.proname IN ('jq_details', 'jq_enqueue'))
ORDER BY p.proname;
SELECT r.rolname, has_table_privilege(r.rolname, 'jobq.events', 'SELECT') AS select_events,
       has_table_privilege(r.rolname, 'jobq.events', 'DELETE') AS delete_events
FROM (VALUES ('regress_ev_observer'), ('regress_ev_producer'), ('regress_ev_worker'),
             ('regress_ev_admin'), ('public')) AS r(rolname)
ORDER BY r.rolname;
SELECT jobq.jq_enqueue('ev_roles', '{"secret": "s3cr3t"}') AS id \gset
\set VERBOSITY terse
SET ROLE regress_ev_observer;
SELECT count(*) > 0 AS observer_reads_events FROM jobq.jq_events_since(NULL, 10000);
SELECT event FROM jobq.jq_events_for_job(:id);
SELECT jobq.jq_details(:id) ->> 'state' AS observer_reads_details;
SELECT count(*) FROM jobq.events;
\echo :SQLSTATE
SELECT jobq.jq_prune_events();
\echo :SQLSTATE
SELECT jobq.jq_enqueue('ev_roles');
\echo :SQLSTATE
SELECT count(*) FROM jobq.jq_grab(ARRAY['ev_roles']);
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_ev_producer;
SELECT count(*) FROM jobq.jq_events_since();
\echo :SQLSTATE
SELECT count(*) FROM jobq.jq_events_for_job(:id);
\echo :SQLSTATE
RESET ROLE;
SET ROLE regress_ev_worker;
SELECT count(*) FROM jobq.jq_events_since();
\echo :SQLSTATE
SELECT count(*) FROM jobq.jq_events_for_job(:id);
\echo :SQLSTATE
-- a worker's changes are recorded although it cannot read events itself
SELECT id AS wid, lease_token AS wtok FROM jobq.jq_grab(ARRAY['ev_roles'], '1 hour', 1, 'w-role') \gset
SELECT jobq.jq_complete(:wid, :'wtok');
RESET ROLE;
SET ROLE regress_ev_admin;
SELECT event, worker FROM jobq.jq_events_for_job(:id);
SELECT jobq.jq_prune_events() AS admin_pruned;
SELECT count(*) > 0 AS admin_reads_table FROM jobq.events;
SELECT jobq._prune_events(now());
\echo :SQLSTATE
RESET ROLE;
\set VERBOSITY default
DROP ROLE regress_ev_observer;
DROP ROLE regress_ev_producer;
DROP ROLE regress_ev_worker;
DROP ROLE regress_ev_admin;

DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
DELETE FROM jobq.event_batches;
