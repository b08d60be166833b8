-- Checks after ALTER EXTENSION jobq UPDATE, on the jobs that fill.sql made
-- with the old version (run by tests/bin/upgrade-test.sh once the captures
-- before and after the upgrade compared equal). Through the public API; each
-- failed check raises "upgrade check failed: <what>".
\set ON_ERROR_STOP on
SET client_min_messages = warning;

CREATE FUNCTION pg_temp.d(p_role text) RETURNS jsonb
LANGUAGE sql AS $$ SELECT jobq.jq_details(jq_upgrade.id(p_role)) $$;
CREATE FUNCTION pg_temp.events(p_role text) RETURNS text
LANGUAGE sql AS $$
    SELECT string_agg(e.event || ':' || e.to_state, ' ' ORDER BY e.ordinality)
    FROM jobq.jq_events_for_job(jq_upgrade.id(p_role)) WITH ORDINALITY AS e
$$;
CREATE FUNCTION pg_temp.fails_with(p_sql text, p_state text, p_what text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_state constant text := jq_upgrade.sqlstate_of(p_sql);
BEGIN
    PERFORM jq_upgrade.check(v_state = p_state,
                             format('%s: expected SQLSTATE %s, got %s', p_what, p_state, v_state));
END;
$$;
CREATE FUNCTION pg_temp.max_id() RETURNS bigint
LANGUAGE sql AS $$ SELECT s.value::bigint FROM jq_upgrade.saved s WHERE s.name = 'max_id' $$;
CREATE FUNCTION pg_temp.state_is(p_role text, p_state text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_state constant text := pg_temp.d(p_role) ->> 'state';
BEGIN
    PERFORM jq_upgrade.check(v_state = p_state,
                             format('job %s (%s) is %s, expected %s', jq_upgrade.id(p_role), p_role,
                                    v_state, p_state));
END;
$$;
CREATE FUNCTION pg_temp.events_are(p_role text, p_events text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_events constant text := pg_temp.events(p_role);
BEGIN
    PERFORM jq_upgrade.check(v_events IS NOT DISTINCT FROM p_events,
                             format('events of job %s (%s): expected "%s", got "%s"',
                                    jq_upgrade.id(p_role), p_role, p_events, v_events));
END;
$$;

-- ---------------------------------------------------------------------------
-- The upgrade itself wrote no event: nothing follows the last cursor.
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.settle();
SELECT jq_upgrade.check(
    NOT EXISTS (SELECT 1 FROM jobq.jq_events_since(
                    (SELECT s.value FROM jq_upgrade.saved s WHERE s.name = 'last_cursor'), 10)),
    'jq_events_since(the last cursor before the upgrade) returns events that no call made');

-- ---------------------------------------------------------------------------
-- Unique keys: a live holder is found, a finished one does not count
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.check(jobq.jq_enqueue('up_mail', unique_key => 'mail-live') = jq_upgrade.id('waiting_keyed'),
                        'jq_enqueue with the key of a live waiting job returns that job');
SELECT jq_upgrade.check(
    (SELECT u.id = jq_upgrade.id('live_shared') AND NOT u.created
     FROM jobq.jq_enqueue_unique('up_mail', unique_key => 'shared-key') AS u),
    'jq_enqueue_unique with a key held by a live and a finished job returns the live one, created false');
SELECT jq_upgrade.check(jobq.jq_enqueue('up_quiet', unique_key => 'quiet-key') = jq_upgrade.id('quiet_waiting'),
                        'jq_enqueue with the key of a live job of a type without events returns that job');
SELECT jq_upgrade.check(jobq.jq_enqueue('up_notify', unique_key => 'wf-notify') = jq_upgrade.id('wf_notify'),
                        'jq_enqueue with the key of a blocked job returns that job');
INSERT INTO jq_upgrade.roles (role, id)
SELECT 'new_done_key', u.id
FROM jobq.jq_enqueue_unique('up_mail', '{"case": "new_done_key"}', unique_key => 'done-key') AS u
WHERE u.created;
SELECT jq_upgrade.check(EXISTS (SELECT 1 FROM jq_upgrade.roles r
                                WHERE r.role = 'new_done_key' AND r.id > pg_temp.max_id()),
                        'jq_enqueue_unique with a key only a finished job holds creates a new job with a new id');
SELECT pg_temp.state_is('new_done_key', 'waiting');

-- ---------------------------------------------------------------------------
-- Leases taken before the upgrade still fence
-- ---------------------------------------------------------------------------
SELECT pg_temp.fails_with(format('SELECT jobq.jq_complete(%s, %L)', jq_upgrade.id('running_long'),
                                 gen_random_uuid()), 'JQ001', 'jq_complete with a wrong token');
SELECT pg_temp.fails_with(format('SELECT jobq.jq_note(%s, %L, %L)', jq_upgrade.id('running_long'),
                                 gen_random_uuid(), '{"x": 1}'), 'JQ001', 'jq_note with a wrong token');
SELECT pg_temp.fails_with(format('SELECT jobq.jq_extend(%s, %L)', jq_upgrade.id('running_long'),
                                 gen_random_uuid()), 'JQ001', 'jq_extend with a wrong token');
SELECT pg_temp.fails_with(format('SELECT jobq.jq_complete(%s, %L)', jq_upgrade.id('dead_retry'),
                                 jq_upgrade.token('dead_retry')), 'JQ001',
                          'jq_complete with the token of a lease that ran out before the upgrade');
SELECT pg_temp.fails_with(format('SELECT jobq.jq_extend(%s, %L)', jq_upgrade.id('running_cancel'),
                                 jq_upgrade.token('running_cancel')), 'JQ004',
                          'jq_extend of a job asked to stop before the upgrade');
SELECT jq_upgrade.check(
    jobq.jq_extend(jq_upgrade.id('running_long'), jq_upgrade.token('running_long'), '1 hour') > now(),
    'jq_extend with the right token extends the lease');
SELECT jq_upgrade.check(
    jobq.jq_note(jq_upgrade.id('running_long'), jq_upgrade.token('running_long'), '{"progress": 1}')
        = '{"progress": 1, "step": "copy"}',
    'jq_note merges into the notes written before the upgrade');
SELECT jobq.jq_complete(jq_upgrade.id('running_long'), jq_upgrade.token('running_long'), '{"done": true}');
SELECT pg_temp.state_is('running_long', 'completed');
SELECT jq_upgrade.check(pg_temp.d('running_long') -> 'result' = '{"done": true}',
                        'the result of a job completed after the upgrade is kept');
SELECT pg_temp.events_are('running_long', 'enqueued:waiting grabbed:running noted:running '
    || 'extended:running extended:running noted:running completed:completed');
SELECT jobq.jq_perm_fail(jq_upgrade.id('running_cancel'), jq_upgrade.token('running_cancel'), 'stopped');
SELECT pg_temp.state_is('running_cancel', 'cancelled');
SELECT jq_upgrade.check(
    (SELECT t.state = 'waiting' FROM jobq.jq_temp_fail(jq_upgrade.id('running_limited'),
                                                       jq_upgrade.token('running_limited'), 'later', '0') AS t),
    'jq_temp_fail of a job grabbed before the upgrade makes it wait again');

-- ---------------------------------------------------------------------------
-- Leases that ran out before the upgrade: the next grab reaps them
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE dead AS SELECT * FROM jobq.jq_grab(ARRAY['up_dead'], '1 hour', 10, 'w-after');
SELECT jq_upgrade.check((SELECT count(*) = 1 AND min(g.id) = jq_upgrade.id('dead_retry')
                                AND min(g.attempt) = 2 FROM dead AS g),
                        'a grab reaps the expired lease of dead_retry and grabs it again as attempt 2');
SELECT jq_upgrade.check(pg_temp.d('dead_retry') -> 'failures' -> -1 ->> 'kind' = 'lease_expired',
                        'the reaped lease is in the failure history');
SELECT pg_temp.state_is('dead_last', 'failed');
SELECT pg_temp.state_is('dead_cancel', 'cancelled');
SELECT jobq.jq_complete(g.id, g.lease_token) FROM dead AS g;
SELECT pg_temp.events_are('dead_retry', 'enqueued:waiting grabbed:running lease_expired:waiting '
    || 'grabbed:running completed:completed');
SELECT pg_temp.events_are('dead_last', 'enqueued:waiting grabbed:running lease_expired:failed');
SELECT pg_temp.events_are('dead_cancel', 'enqueued:waiting grabbed:running cancel_requested:running '
    || 'cancelled:cancelled');

-- ---------------------------------------------------------------------------
-- Dependencies made before the upgrade release their children
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.take('parent_a');
SELECT jobq.jq_complete(jq_upgrade.id('parent_a'), jq_upgrade.token('parent_a'));
SELECT pg_temp.state_is('blocked', 'blocked');
SELECT jq_upgrade.check(pg_temp.d('blocked') -> 'waiting_for' = to_jsonb(ARRAY[jq_upgrade.id('parent_b')]),
                        'the blocked job waits for the parent that has not completed');
SELECT jq_upgrade.take('parent_b');
SELECT jobq.jq_complete(jq_upgrade.id('parent_b'), jq_upgrade.token('parent_b'));
SELECT pg_temp.state_is('blocked', 'waiting');
SELECT pg_temp.events_are('blocked', 'enqueued:blocked unblocked:waiting');

SELECT jq_upgrade.take('part_1');
SELECT jq_upgrade.take('part_2');
SELECT jobq.jq_complete(jq_upgrade.id('part_1'), jq_upgrade.token('part_1'));
SELECT jobq.jq_complete(jq_upgrade.id('part_2'), jq_upgrade.token('part_2'));
SELECT pg_temp.state_is('part_3', 'waiting');
SELECT pg_temp.state_is('after_split', 'blocked');
SELECT jq_upgrade.take('part_3');
SELECT jobq.jq_complete(jq_upgrade.id('part_3'), jq_upgrade.token('part_3'));
SELECT pg_temp.state_is('after_split', 'waiting');

SELECT jq_upgrade.take('wf_fetch');
SELECT jobq.jq_complete(jq_upgrade.id('wf_fetch'), jq_upgrade.token('wf_fetch'));
SELECT jq_upgrade.take('wf_render');
SELECT jobq.jq_perm_fail(jq_upgrade.id('wf_render'), jq_upgrade.token('wf_render'), 'render failed');
SELECT pg_temp.state_is('wf_notify', 'waiting');

-- ---------------------------------------------------------------------------
-- A queue paused before the upgrade stays paused until resumed
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.check(NOT EXISTS (SELECT 1 FROM jobq.jq_grab(NULL, '1 hour', 10, 'w-after', NULL,
                                                              ARRAY['reports'])),
                        'a grab takes nothing from the queue paused before the upgrade');
SELECT jobq.jq_resume_queue('reports');
SELECT jq_upgrade.take('paused_waiting');
SELECT jobq.jq_complete(jq_upgrade.id('paused_waiting'), jq_upgrade.token('paused_waiting'));

-- ---------------------------------------------------------------------------
-- Finished jobs of the old version can be retried; attempts go on counting
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.check(jobq.jq_retry(jq_upgrade.id('attempts_exhausted')) = 'waiting',
                        'jq_retry of a job that failed before the upgrade');
SELECT jq_upgrade.take('attempts_exhausted');
SELECT jq_upgrade.check((pg_temp.d('attempts_exhausted') -> 'attempts')::int = 3,
                        'the attempt after the retry is the third');
SELECT jobq.jq_complete(jq_upgrade.id('attempts_exhausted'), jq_upgrade.token('attempts_exhausted'));
SELECT pg_temp.events_are('attempts_exhausted', 'enqueued:waiting grabbed:running temp_failed:waiting '
    || 'grabbed:running temp_failed:failed retried:waiting grabbed:running completed:completed');
SELECT jq_upgrade.check(jobq.jq_retry(jq_upgrade.id('parent_fails')) = 'waiting',
                        'jq_retry of a parent that failed before the upgrade');
SELECT jq_upgrade.check(jobq.jq_retry(jq_upgrade.id('cancelled_by_parent')) = 'blocked',
                        'jq_retry of a child cancelled by its parent waits for the parent again');
SELECT jq_upgrade.check(jobq.jq_retry(jq_upgrade.id('expired')) = 'waiting',
                        'jq_retry of a job that expired before the upgrade');
SELECT jq_upgrade.check(jobq.jq_cancel(jq_upgrade.id('retried_failed')) = 'cancelled',
                        'jq_cancel of a job retried before the upgrade');

-- ---------------------------------------------------------------------------
-- A full lifecycle on the upgraded database
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.enq('new_complete', 'up_new', '{"n": 1}', p_queue => 'mail');
SELECT jq_upgrade.check(jq_upgrade.id('new_complete') > pg_temp.max_id(),
                        'a job enqueued after the upgrade gets an id above every old one');
SELECT jq_upgrade.take('new_complete');
SELECT jobq.jq_note(jq_upgrade.id('new_complete'), jq_upgrade.token('new_complete'), '{"p": 1}');
SELECT jobq.jq_complete(jq_upgrade.id('new_complete'), jq_upgrade.token('new_complete'), '{"r": 1}');
SELECT pg_temp.events_are('new_complete', 'enqueued:waiting grabbed:running noted:running completed:completed');

SELECT jq_upgrade.enq('new_fail', 'up_new', p_max_attempts => 2);
SELECT jq_upgrade.take('new_fail');
SELECT jq_upgrade.check(
    (SELECT t.state = 'waiting' FROM jobq.jq_temp_fail(jq_upgrade.id('new_fail'),
                                                       jq_upgrade.token('new_fail'), 'once', '0') AS t),
    'jq_temp_fail after the upgrade');
SELECT jq_upgrade.take('new_fail');
SELECT jobq.jq_perm_fail(jq_upgrade.id('new_fail'), jq_upgrade.token('new_fail'), 'for good');
SELECT pg_temp.state_is('new_fail', 'failed');
SELECT jq_upgrade.check(jobq.jq_retry(jq_upgrade.id('new_fail'), 1) = 'waiting', 'jq_retry after the upgrade');
SELECT jq_upgrade.take('new_fail');
INSERT INTO jq_upgrade.roles (role, id)
SELECT 'new_part_' || n.i, n.id
FROM unnest(jobq.jq_replace(jq_upgrade.id('new_fail'), jq_upgrade.token('new_fail'),
         '[{"job_type": "up_new", "args": {"case": "new_part_1"}},
           {"job_type": "up_new", "args": {"case": "new_part_2"}, "depends_on_index": [0]}]'))
     WITH ORDINALITY AS n(id, i);
SELECT pg_temp.state_is('new_fail', 'replaced');
SELECT pg_temp.state_is('new_part_2', 'blocked');
SELECT jq_upgrade.take('new_part_1');
SELECT jobq.jq_complete(jq_upgrade.id('new_part_1'), jq_upgrade.token('new_part_1'));
SELECT jq_upgrade.take('new_part_2');
SELECT jobq.jq_complete(jq_upgrade.id('new_part_2'), jq_upgrade.token('new_part_2'));
SELECT pg_temp.events_are('new_fail', 'enqueued:waiting grabbed:running temp_failed:waiting '
    || 'grabbed:running perm_failed:failed retried:waiting grabbed:running replaced:replaced');
SELECT pg_temp.events_are('new_part_2', 'enqueued:blocked unblocked:waiting grabbed:running completed:completed');

SELECT jq_upgrade.enq('new_cancel', 'up_new', p_run_at => now() + interval '1 hour');
SELECT jq_upgrade.check(jobq.jq_cancel(jq_upgrade.id('new_cancel')) = 'cancelled', 'jq_cancel after the upgrade');
SELECT pg_temp.events_are('new_cancel', 'enqueued:waiting cancelled:cancelled');
SELECT jq_upgrade.enq('new_release', 'up_new');
SELECT jq_upgrade.take('new_release');
SELECT jobq.jq_release(jq_upgrade.id('new_release'), jq_upgrade.token('new_release'));
SELECT pg_temp.events_are('new_release', 'enqueued:waiting grabbed:running released:waiting');

SELECT jq_upgrade.enq('new_quiet', 'up_quiet');
SELECT jq_upgrade.take('new_quiet');
SELECT jobq.jq_complete(jq_upgrade.id('new_quiet'), jq_upgrade.token('new_quiet'));
SELECT pg_temp.state_is('new_quiet', 'completed');
SELECT pg_temp.events_are('new_quiet', NULL);

-- ---------------------------------------------------------------------------
-- The stream: the old events first, unchanged (compared before), then only
-- what happened since the upgrade, after the old cursors
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.settle();
SELECT jq_upgrade.check(
    (SELECT count(*) FROM jobq.jq_events_since(NULL, 10000))
      = (SELECT s.value::bigint FROM jq_upgrade.saved s WHERE s.name = 'events_before')
        + (SELECT count(*) FROM jobq.jq_events_since(
               (SELECT s.value FROM jq_upgrade.saved s WHERE s.name = 'last_cursor'), 10000)),
    'the stream is the events from before the upgrade followed by those after the last old cursor');
SELECT jq_upgrade.check(
    (SELECT bool_and(e.at >= (SELECT s.value::timestamptz FROM jq_upgrade.saved s
                              WHERE s.name = 'upgraded_at'))
            AND count(*) FILTER (WHERE e.job_id = jq_upgrade.id('new_complete')) = 4
     FROM jobq.jq_events_since((SELECT s.value FROM jq_upgrade.saved s WHERE s.name = 'last_cursor'),
                               10000) AS e),
    'after the last old cursor come exactly the events written since the upgrade');
SELECT jq_upgrade.check(
    (SELECT count(*) FROM jobq.jq_events_since((SELECT s.value FROM jq_upgrade.saved s
                                                WHERE s.name = 'mid_cursor'), 10000))
      = (SELECT count(*) FROM jobq.jq_events_since(NULL, 10000) WITH ORDINALITY AS e
         WHERE e.ordinality > (SELECT a.ordinality
                               FROM jobq.jq_events_since(NULL, 10000) WITH ORDINALITY AS a
                               WHERE a.cursor = (SELECT s.value FROM jq_upgrade.saved s
                                                 WHERE s.name = 'mid_cursor'))),
    'the cursor saved in the middle before the upgrade returns exactly the events after it');

-- ---------------------------------------------------------------------------
-- Maintenance runs on the upgraded data
-- ---------------------------------------------------------------------------
SELECT jq_upgrade.check((jobq.jq_maintain() ->> 'complete')::boolean, 'jq_maintain completes');
SELECT jq_upgrade.check(jobq.jq_prune_events() >= 0, 'jq_prune_events runs');
