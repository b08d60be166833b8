-- Fills a database in which jobq is installed at an OLD version with jobs in
-- every state, through that version's public SQL API only (run by
-- tests/bin/upgrade-test.sh before ALTER EXTENSION jobq UPDATE). Written for
-- the API of 0.1.0, which every later version keeps.
--
-- Each job's args carry {"case": <role>}; jq_upgrade.roles maps the role to
-- the job id and, for jobs that stay running, the lease token, so that the
-- checks after the upgrade (post.sql) can act on them. The scratch schema
-- jq_upgrade is not part of the extension.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

CREATE SCHEMA jq_upgrade;
CREATE TABLE jq_upgrade.roles (role text PRIMARY KEY, id bigint NOT NULL UNIQUE, token uuid);
CREATE TABLE jq_upgrade.saved (name text PRIMARY KEY, value text NOT NULL);

CREATE FUNCTION jq_upgrade.id(p_role text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT r.id INTO v_id FROM jq_upgrade.roles r WHERE r.role = p_role;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'upgrade test: no job with role %', p_role;
    END IF;
    RETURN v_id;
END;
$$;

CREATE FUNCTION jq_upgrade.token(p_role text) RETURNS uuid
LANGUAGE sql STABLE AS $$ SELECT r.token FROM jq_upgrade.roles r WHERE r.role = p_role $$;

-- Grabs the job of a role (by its args) and keeps its lease token.
CREATE FUNCTION jq_upgrade.take(p_role text, p_lease interval DEFAULT '1 hour',
                                p_worker text DEFAULT 'w-upgrade')
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_token uuid;
BEGIN
    SELECT g.id, g.lease_token INTO v_id, v_token
    FROM jobq.jq_grab(NULL, p_lease, 1, p_worker, jsonb_build_object('case', p_role)) AS g;
    IF v_id IS DISTINCT FROM jq_upgrade.id(p_role) THEN
        RAISE EXCEPTION 'upgrade test: grabbing role % returned job %, expected %',
            p_role, v_id, jq_upgrade.id(p_role);
    END IF;
    UPDATE jq_upgrade.roles r SET token = v_token WHERE r.role = p_role;
    RETURN v_token;
END;
$$;

-- Waits until every transaction that committed so far is visible to
-- jq_events_since (it only returns events below the snapshot's xmin), so that
-- what is read is the whole stream, whatever the wake-up worker is doing.
CREATE FUNCTION jq_upgrade.settle() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_target constant xid8 := pg_snapshot_xmax(pg_current_snapshot());
    v_deadline constant timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
    WHILE pg_snapshot_xmin(pg_current_snapshot()) < v_target LOOP
        IF clock_timestamp() > v_deadline THEN
            RAISE EXCEPTION 'upgrade test: a transaction older than xid % stays open', v_target;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END;
$$;

-- jq_details of a job, or {"missing": true} when it does not exist (JQ002).
CREATE FUNCTION jq_upgrade.details_of(p_id bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
    RETURN jobq.jq_details(p_id);
EXCEPTION WHEN SQLSTATE 'JQ002' THEN
    RETURN '{"missing": true}';
END;
$$;

-- Runs a statement and returns its SQLSTATE ('00000' when it succeeded).
CREATE FUNCTION jq_upgrade.sqlstate_of(p_sql text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    EXECUTE p_sql;
    RETURN '00000';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE;
    RETURN v_state;
END;
$$;

-- Fails the test with a message unless p_ok.
CREATE FUNCTION jq_upgrade.check(p_ok boolean, p_what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_ok IS NOT TRUE THEN
        RAISE EXCEPTION 'upgrade check failed: %', p_what;
    END IF;
END;
$$;

-- Enqueues one job of a role: args {"case": role} plus p_args.
CREATE FUNCTION jq_upgrade.enq(p_role text, p_job_type text, p_args jsonb DEFAULT '{}',
                               p_queue text DEFAULT NULL, p_priority integer DEFAULT NULL,
                               p_run_at timestamptz DEFAULT NULL,
                               p_max_attempts integer DEFAULT NULL,
                               p_unique_key text DEFAULT NULL,
                               p_expires_at timestamptz DEFAULT NULL,
                               p_depends_on text[] DEFAULT NULL,
                               p_run_anyway boolean DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    v_id := jobq.jq_enqueue(p_job_type, jsonb_build_object('case', p_role) || p_args, p_queue,
                            p_priority, p_run_at, p_max_attempts, p_unique_key, p_expires_at,
                            (SELECT array_agg(jq_upgrade.id(r)) FROM unnest(p_depends_on) AS r),
                            p_run_anyway);
    INSERT INTO jq_upgrade.roles (role, id) VALUES (p_role, v_id);
    RETURN v_id;
END;
$$;

-- ---------------------------------------------------------------------------
-- Settings: per-type rows, changed defaults, maintenance, queues
-- ---------------------------------------------------------------------------
-- Backoffs of minutes: a job retrying after one must not fall due between
-- the captures before and after the upgrade (queue_stats tells due from scheduled).
INSERT INTO jobq.job_types (job_type, max_attempts, backoff_base, backoff_max, backoff_jitter,
                            retention, record_events, event_retention)
VALUES ('up_mail', 3, '10 minutes', '2 hours', 0.1, '14 days', true, '60 days');
INSERT INTO jobq.job_types (job_type, max_running) VALUES ('up_limited', 2);
INSERT INTO jobq.job_types (job_type, record_events, retention) VALUES ('up_quiet', false, '1 day');
UPDATE jobq.job_types SET max_attempts = 20, event_retention = '45 days' WHERE job_type = '*';
-- Background maintenance once a day only, and it ran just now: nothing but
-- this script changes a job until the upgrade.
UPDATE jobq.maintenance SET every = '1 day', budget = '250 milliseconds';
SELECT jobq.jq_maintain() IS NOT NULL AS maintained;
SELECT jobq.jq_pause_queue('bulk');
SELECT jobq.jq_resume_queue('bulk');

-- ---------------------------------------------------------------------------
-- Waiting, scheduled, blocked
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.enq('waiting_keyed', 'up_mail', '{"to": "a@example.com"}', p_queue => 'mail',
                      p_priority => -5, p_unique_key => 'mail-live');
SELECT jq_upgrade.enq('scheduled', 'up_report', p_queue => 'reports',
                      p_run_at => now() + interval '2 days',
                      p_expires_at => now() + interval '3 days');
SELECT jq_upgrade.enq('parent_a', 'up_build');
SELECT jq_upgrade.enq('parent_b', 'up_build', '{"big": [1, 2, 3]}', p_priority => 3);
SELECT jq_upgrade.enq('blocked', 'up_deploy', p_depends_on => ARRAY['parent_a', 'parent_b']);
SELECT jq_upgrade.enq('blocked_anyway', 'up_notify', p_depends_on => ARRAY['scheduled'],
                      p_run_anyway => true);
SELECT jq_upgrade.enq('paused_waiting', 'up_report', p_queue => 'reports');
SELECT jobq.jq_pause_queue('reports');

-- ---------------------------------------------------------------------------
-- Running: a long lease with notes, one asked to stop, one of a limited type
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.enq('running_long', 'up_long', p_queue => 'bulk');
SELECT jq_upgrade.take('running_long', '1 hour', 'w-long');
SELECT jobq.jq_note(jq_upgrade.id('running_long'), jq_upgrade.token('running_long'),
                    '{"progress": 0.5, "step": "copy"}');
SELECT jobq.jq_extend(jq_upgrade.id('running_long'), jq_upgrade.token('running_long'), '2 hours')
    IS NOT NULL AS extended;
SELECT jq_upgrade.enq('running_cancel', 'up_long');
SELECT jq_upgrade.take('running_cancel', '1 hour', 'w-long');
SELECT jobq.jq_cancel(jq_upgrade.id('running_cancel'));
SELECT jq_upgrade.enq('running_limited', 'up_limited');
SELECT jq_upgrade.take('running_limited', '1 hour', 'w-limited');

-- ---------------------------------------------------------------------------
-- Finished: completed (with result and notes), unique keys held by a finished
-- and a live job, failed both ways
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.enq('completed', 'up_mail', p_unique_key => 'shared-key');
SELECT jq_upgrade.take('completed');
SELECT jobq.jq_note(jq_upgrade.id('completed'), jq_upgrade.token('completed'), '{"sent": 1}');
SELECT jobq.jq_complete(jq_upgrade.id('completed'), jq_upgrade.token('completed'),
                        '{"ok": true, "message_id": "m-1"}');
SELECT jq_upgrade.enq('live_shared', 'up_mail', p_unique_key => 'shared-key');
SELECT jq_upgrade.enq('finished_key_only', 'up_mail', p_unique_key => 'done-key');
SELECT jq_upgrade.take('finished_key_only');
SELECT jobq.jq_complete(jq_upgrade.id('finished_key_only'), jq_upgrade.token('finished_key_only'));

SELECT jq_upgrade.enq('parent_fails', 'up_build');
SELECT jq_upgrade.enq('cancelled_by_parent', 'up_notify', p_depends_on => ARRAY['parent_fails']);
SELECT jq_upgrade.take('parent_fails');
SELECT jobq.jq_perm_fail(jq_upgrade.id('parent_fails'), jq_upgrade.token('parent_fails'),
                         'bad input');

SELECT jq_upgrade.enq('attempts_exhausted', 'up_flaky', p_max_attempts => 2);
SELECT jq_upgrade.take('attempts_exhausted');
SELECT state FROM jobq.jq_temp_fail(jq_upgrade.id('attempts_exhausted'),
                                    jq_upgrade.token('attempts_exhausted'), 'timeout', '0');
SELECT jq_upgrade.take('attempts_exhausted');
SELECT state FROM jobq.jq_temp_fail(jq_upgrade.id('attempts_exhausted'),
                                    jq_upgrade.token('attempts_exhausted'), 'timeout again');

-- A subscriber's cursor in the middle of the stream.
SELECT jq_upgrade.settle();
INSERT INTO jq_upgrade.saved (name, value)
SELECT 'mid_cursor', e.cursor
FROM jobq.jq_events_since(NULL, 10000) WITH ORDINALITY AS e
ORDER BY e.ordinality DESC LIMIT 1;

-- ---------------------------------------------------------------------------
-- Waiting again after a failure, replaced with dependants, cancelled,
-- expired, retried, released, batch-completed, events off
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.enq('retry_waiting', 'up_flaky');
SELECT jq_upgrade.take('retry_waiting');
SELECT state FROM jobq.jq_temp_fail(jq_upgrade.id('retry_waiting'),
                                    jq_upgrade.token('retry_waiting'), 'try later', '1 hour');
SELECT jq_upgrade.enq('backoff_waiting', 'up_mail');
SELECT jq_upgrade.take('backoff_waiting');
SELECT state FROM jobq.jq_temp_fail(jq_upgrade.id('backoff_waiting'),
                                    jq_upgrade.token('backoff_waiting'), 'smtp busy');

SELECT jq_upgrade.enq('replaced', 'up_split', '{"parts": 2}');
SELECT jq_upgrade.enq('after_split', 'up_publish', p_depends_on => ARRAY['replaced']);
SELECT jq_upgrade.take('replaced');
INSERT INTO jq_upgrade.roles (role, id)
SELECT 'part_' || n.i, n.id
FROM unnest(jobq.jq_replace(jq_upgrade.id('replaced'), jq_upgrade.token('replaced'),
         '[{"job_type": "up_part", "args": {"case": "part_1", "n": 1}},
           {"job_type": "up_part", "args": {"case": "part_2", "n": 2}, "queue": "bulk"},
           {"job_type": "up_part", "args": {"case": "part_3"}, "depends_on_index": [0, 1]}]'))
     WITH ORDINALITY AS n(id, i);

SELECT jq_upgrade.enq('cancelled', 'up_mail');
SELECT jobq.jq_cancel(jq_upgrade.id('cancelled'));

SELECT jq_upgrade.enq('expired', 'up_report', p_expires_at => clock_timestamp() + interval '300 ms');
SELECT jq_upgrade.enq('retried_expired', 'up_report',
                      p_expires_at => clock_timestamp() + interval '300 ms');
SELECT pg_sleep(0.4);
SELECT jobq.jq_maintain() IS NOT NULL AS maintained;
SELECT jobq.jq_retry(jq_upgrade.id('retried_expired'));

SELECT jq_upgrade.enq('retried_failed', 'up_flaky', p_max_attempts => 1);
SELECT jq_upgrade.take('retried_failed');
SELECT state FROM jobq.jq_temp_fail(jq_upgrade.id('retried_failed'),
                                    jq_upgrade.token('retried_failed'), 'flaky');
SELECT jobq.jq_retry(jq_upgrade.id('retried_failed'), 3);
SELECT jq_upgrade.enq('retried_cancelled', 'up_mail', p_queue => 'mail');
SELECT jobq.jq_cancel(jq_upgrade.id('retried_cancelled'));
SELECT jobq.jq_retry(jq_upgrade.id('retried_cancelled'));

SELECT jq_upgrade.enq('released', 'up_mail');
SELECT jq_upgrade.take('released');
SELECT jobq.jq_release(jq_upgrade.id('released'), jq_upgrade.token('released'));

SELECT jq_upgrade.enq('batch_1', 'up_batch');
SELECT jq_upgrade.enq('batch_2', 'up_batch');
SELECT jq_upgrade.take('batch_1');
SELECT jq_upgrade.take('batch_2');
SELECT outcome FROM jobq.jq_complete_many(
    ARRAY[jq_upgrade.id('batch_1'), jq_upgrade.id('batch_2')],
    ARRAY[jq_upgrade.token('batch_1'), jq_upgrade.token('batch_2')],
    ARRAY['{"n": 1}', NULL]::jsonb[]);

SELECT jq_upgrade.enq('quiet_done', 'up_quiet');
SELECT jq_upgrade.take('quiet_done');
SELECT jobq.jq_complete(jq_upgrade.id('quiet_done'), jq_upgrade.token('quiet_done'));
SELECT jq_upgrade.enq('quiet_waiting', 'up_quiet', p_unique_key => 'quiet-key');

-- A workflow in one call: fetch -> render -> notify (runs anyway).
INSERT INTO jq_upgrade.roles (role, id)
SELECT (ARRAY['wf_fetch', 'wf_render', 'wf_notify'])[n.i], n.id
FROM jobq.jq_enqueue_many(
    '[{"job_type": "up_fetch", "args": {"case": "wf_fetch"}, "queue": "mail"},
      {"job_type": "up_render", "args": {"case": "wf_render"}, "depends_on_index": [0]},
      {"job_type": "up_notify", "args": {"case": "wf_notify"}, "depends_on_index": [1],
       "run_anyway": true, "unique_key": "wf-notify"}]') WITH ORDINALITY AS n(id, i);

-- ---------------------------------------------------------------------------
-- Last: leases that run out (nothing grabs or maintains after these, so they
-- stay running with an expired lease until the upgrade)
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.enq('dead_retry', 'up_dead', p_max_attempts => 3);
SELECT jq_upgrade.enq('dead_last', 'up_dead', p_max_attempts => 1);
SELECT jq_upgrade.enq('dead_cancel', 'up_dead');
SELECT jq_upgrade.take('dead_retry', '300 milliseconds', 'w-dead');
SELECT jq_upgrade.take('dead_last', '300 milliseconds', 'w-dead');
SELECT jq_upgrade.take('dead_cancel', '300 milliseconds', 'w-dead');
SELECT jobq.jq_cancel(jq_upgrade.id('dead_cancel'));

-- The highest job id (the capture walks 1 .. max_id): a last job, cancelled.
SELECT jq_upgrade.enq('probe', 'up_probe');
SELECT jobq.jq_cancel(jq_upgrade.id('probe'));
INSERT INTO jq_upgrade.saved (name, value) SELECT 'max_id', max(r.id)::text FROM jq_upgrade.roles r;
SELECT pg_sleep(0.5);
SELECT jq_upgrade.settle();
-- The last event before the upgrade: what comes after it must be new.
INSERT INTO jq_upgrade.saved (name, value)
SELECT 'last_cursor', e.cursor
FROM jobq.jq_events_since(NULL, 10000) WITH ORDINALITY AS e
ORDER BY e.ordinality DESC LIMIT 1;
INSERT INTO jq_upgrade.saved (name, value)
SELECT 'events_before', count(*)::text FROM jobq.jq_events_since(NULL, 10000);
