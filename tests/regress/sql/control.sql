-- Job control and operations (issue 5): unique enqueue that says what it did,
-- dependencies (blocked jobs, fan-out/join through jq_replace, failure
-- cascades), concurrency limits per type, cancel (waiting and running), retry,
-- pause/resume, notes, maintenance and retention, the operators' views, and
-- the errors of each. Ids and times are never printed.
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
DELETE FROM jobq.event_batches;
-- The wake-up worker's periodic maintenance would reap and prune under the
-- tests below; they call jq_maintain themselves.
UPDATE jobq.maintenance SET every = '1 day', last_run_at = now();

-- Runs a statement and reports its SQLSTATE, message and detail, with numbers
-- (ids, times) blanked out.
CREATE FUNCTION pg_temp.rejection(q text, OUT code text, OUT message text, OUT detail text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    code := '00000';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL;
    message := regexp_replace(message, '[0-9]+', 'N', 'g');
    detail := regexp_replace(detail, '[0-9][0-9:. +-]*[0-9]', 'N', 'g');
END;
$$;
CREATE FUNCTION pg_temp.events_of(p_job bigint)
RETURNS TABLE (event text, from_state text, to_state text, worker text, message text)
LANGUAGE sql AS $$
    SELECT e.event, e.from_state, e.to_state, e.worker,
           regexp_replace(e.message, 'expired at .*$', 'expired at <time>')
    FROM jobq.jq_events_for_job(p_job) AS e
$$;
CREATE FUNCTION pg_temp.state(p_job bigint) RETURNS text
LANGUAGE sql AS $$ SELECT state FROM jobq.jobs WHERE id = p_job $$;

-- ---------------------------------------------------------------------------
-- unique enqueue: jq_enqueue_unique says whether it inserted. Blocked,
-- waiting and running jobs hold their key; finished ones do not.
-- ---------------------------------------------------------------------------
SELECT id AS u1, created FROM jobq.jq_enqueue_unique('ctl_unique', unique_key => 'k') \gset
SELECT :'created' AS first_created;
SELECT id = :u1 AS same_job, created FROM jobq.jq_enqueue_unique('ctl_unique', '{"x": 1}', unique_key => 'k');
SELECT jobq.jq_enqueue('ctl_unique', unique_key => 'k') = :u1 AS jq_enqueue_same_job;
-- another type may use the same key; no key: always created
SELECT id <> :u1 AS other_job, created FROM jobq.jq_enqueue_unique('ctl_unique2', unique_key => 'k');
SELECT created FROM jobq.jq_enqueue_unique('ctl_unique');
-- running still holds it
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_unique'], '1 hour', 10, 'w-u') WHERE id = :u1 \gset
SELECT id = :u1 AS same_job, created FROM jobq.jq_enqueue_unique('ctl_unique', unique_key => 'k');
-- finished: a new job takes the key
SELECT jobq.jq_complete(:u1, :'tok');
SELECT id <> :u1 AS new_job, created FROM jobq.jq_enqueue_unique('ctl_unique', unique_key => 'k');
-- a blocked job holds its key too
SELECT jobq.jq_enqueue('ctl_parent') AS p \gset
SELECT id AS b1, created FROM jobq.jq_enqueue_unique('ctl_ukb', unique_key => 'kb', depends_on => ARRAY[:p]) \gset
SELECT pg_temp.state(:b1) AS state, :'created' AS created;
SELECT id = :b1 AS same_job, created FROM jobq.jq_enqueue_unique('ctl_ukb', unique_key => 'kb');
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- ---------------------------------------------------------------------------
-- dependencies
-- ---------------------------------------------------------------------------
-- a child waits, blocked, for every parent to complete
SELECT jobq.jq_enqueue('ctl_a') AS pa \gset
SELECT jobq.jq_enqueue('ctl_b') AS pb \gset
SELECT jobq.jq_enqueue('ctl_child', depends_on => ARRAY[:pa, :pb, :pa]) AS c \gset
SELECT d ->> 'state' AS state, d -> 'depends_on' = jsonb_build_array(:pa, :pb) AS depends_on,
       d -> 'waiting_for' = jsonb_build_array(:pa, :pb) AS waiting_for, d -> 'run_anyway' AS run_anyway
FROM jobq.jq_details(:c) AS d;
-- never grabbed while blocked, even when asked for by type
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ctl_child'], '1 hour', 10);
SELECT lease_token AS ta FROM jobq.jq_grab(ARRAY['ctl_a'], '1 hour', 1, 'w-a') \gset
SELECT jobq.jq_complete(:pa, :'ta');
SELECT pg_temp.state(:c) AS after_one, jobq.jq_details(:c) -> 'waiting_for' = jsonb_build_array(:pb) AS waits_for_b;
SELECT lease_token AS tb FROM jobq.jq_grab(ARRAY['ctl_b'], '1 hour', 1, 'w-b') \gset
SELECT jobq.jq_complete(:pb, :'tb');
SELECT pg_temp.state(:c) AS after_both, jobq.jq_details(:c) -> 'waiting_for' AS waiting_for;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ctl_child'], '1 hour', 10);
SELECT * FROM pg_temp.events_of(:c);

-- a parent that fails for good cancels its dependants, and theirs; run_anyway
-- ones are released instead
SELECT jobq.jq_enqueue('ctl_doomed', max_attempts => 1) AS p \gset
SELECT jobq.jq_enqueue('ctl_dep', depends_on => ARRAY[:p]) AS c1 \gset
SELECT jobq.jq_enqueue('ctl_dep', depends_on => ARRAY[:c1]) AS c2 \gset
SELECT jobq.jq_enqueue('ctl_dep_anyway', depends_on => ARRAY[:p], run_anyway => true) AS c3 \gset
SELECT jobq.jq_enqueue('ctl_dep', depends_on => ARRAY[:c3]) AS c4 \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_doomed'], '1 hour', 1, 'w-d') \gset
SELECT state FROM jobq.jq_temp_fail(:p, :'tok', 'broken');
SELECT pg_temp.state(:p) AS parent, pg_temp.state(:c1) AS child, pg_temp.state(:c2) AS grandchild,
       pg_temp.state(:c3) AS run_anyway, pg_temp.state(:c4) AS after_run_anyway;
SELECT * FROM pg_temp.events_of(:c2);
-- the other final states of a parent: cancelled and expired
SELECT jobq.jq_enqueue('ctl_p') AS p \gset
SELECT jobq.jq_enqueue('ctl_dep', depends_on => ARRAY[:p]) AS c \gset
SELECT jobq.jq_cancel(:p), pg_temp.state(:c) AS child;
SELECT jobq.jq_enqueue('ctl_p', expires_at => clock_timestamp() + interval '20 ms') AS p \gset
SELECT jobq.jq_enqueue('ctl_dep', depends_on => ARRAY[:p]) AS c \gset
SELECT pg_sleep(0.05);
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ctl_nothing'], '1 hour', 1);
SELECT pg_temp.state(:p) AS parent, pg_temp.state(:c) AS child;

-- parents that had already finished when the child came: completed ones count
-- as done, a failed one cancels it at once
SELECT jobq.jq_enqueue('ctl_p') AS p \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_p'], '1 hour', 1) \gset
SELECT jobq.jq_complete(:p, :'tok');
SELECT jobq.jq_enqueue('ctl_late', depends_on => ARRAY[:p]) AS c \gset
SELECT pg_temp.state(:c) AS on_completed_parent;
SELECT * FROM pg_temp.events_of(:c);
SELECT jobq.jq_enqueue('ctl_late', depends_on => ARRAY[(SELECT id FROM jobq.jobs WHERE job_type = 'ctl_doomed')]) AS c \gset
SELECT pg_temp.state(:c) AS on_failed_parent;
SELECT jobq.jq_enqueue('ctl_late', depends_on => ARRAY[(SELECT id FROM jobq.jobs WHERE job_type = 'ctl_doomed')],
                       run_anyway => true) AS c \gset
SELECT pg_temp.state(:c) AS on_failed_parent_run_anyway;

-- jq_enqueue_many: siblings by index (earlier ones only)
SELECT array_agg(id) AS ids FROM jobq.jq_enqueue_many(
    '[{"job_type": "ctl_m"}, {"job_type": "ctl_m"},
      {"job_type": "ctl_m_join", "depends_on_index": [0, 1]}]') AS id \gset
SELECT job_type, state, pending_parents, depends_on = (:'ids'::bigint[])[1:2] AS depends_on_siblings
FROM jobq.jobs WHERE id = ANY (:'ids'::bigint[]) ORDER BY id;

-- bad dependencies
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_enqueue('ctl_x', depends_on => ARRAY[NULL]::bigint[])$$);
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_enqueue('ctl_x', depends_on => ARRAY[0])$$);
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_enqueue('ctl_x', depends_on => ARRAY[987654321])$$);
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_enqueue_many('[{"job_type": "ctl_x"}, {"job_type": "ctl_x", "depends_on": [987654321]}]')$$);
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_enqueue_many('[{"job_type": "ctl_x", "depends_on_index": [0]}]')$$);
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_enqueue_many('[{"job_type": "ctl_x"}, {"job_type": "ctl_x", "depends_on_index": [1]}]')$$);
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_enqueue_many('[{"job_type": "ctl_x"}, {"job_type": "ctl_x", "depends_on_index": [-1]}]')$$);
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_enqueue_many('[{"job_type": "ctl_x", "depends_on": "3"}]')$$);
SELECT count(*) AS nothing_inserted FROM jobq.jobs WHERE job_type = 'ctl_x';

-- fan-out and join through jq_replace; a job that depended on the replaced
-- one now waits for all of its replacements
SELECT jobq.jq_enqueue('ctl_root') AS root \gset
SELECT jobq.jq_enqueue('ctl_after_root', depends_on => ARRAY[:root]) AS after_root \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_root'], '1 hour', 1, 'w-root') \gset
SELECT jobq.jq_replace(:root, :'tok',
    '[{"job_type": "ctl_leaf"}, {"job_type": "ctl_leaf"}, {"job_type": "ctl_leaf"},
      {"job_type": "ctl_join", "depends_on_index": [0, 1, 2]}]') AS rids \gset
SELECT job_type, state, pending_parents FROM jobq.jobs
WHERE id = ANY (:'rids'::bigint[]) OR id = :after_root ORDER BY id;
SELECT jobq.jq_details(:after_root) -> 'waiting_for' = to_jsonb(:'rids'::bigint[]) AS waits_for_replacements;
SELECT array_agg(id) AS lids, array_agg(lease_token) AS ltoks FROM jobq.jq_grab(ARRAY['ctl_leaf', 'ctl_join'], '1 hour', 10) \gset
SELECT cardinality(:'lids'::bigint[]) AS leaves_grabbed;
SELECT outcome, count(*) FROM jobq.jq_complete_many(:'lids', :'ltoks') GROUP BY outcome;
SELECT job_type, state, pending_parents FROM jobq.jobs
WHERE id = ANY (:'rids'::bigint[]) OR id = :after_root ORDER BY id;
SELECT id AS jid, lease_token AS jtok FROM jobq.jq_grab(ARRAY['ctl_join'], '1 hour', 1) \gset
SELECT jobq.jq_complete(:jid, :'jtok');
SELECT pg_temp.state(:after_root) AS after_root;
-- the join's own events: blocked at enqueue, unblocked by the last leaf
SELECT * FROM pg_temp.events_of(:jid);
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
DELETE FROM jobq.job_dependencies;

-- ---------------------------------------------------------------------------
-- concurrency limits per type
-- ---------------------------------------------------------------------------
INSERT INTO jobq.job_types (job_type, max_running) VALUES ('ctl_lim', 2);
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    (SELECT jsonb_agg(jsonb_build_object('job_type', t)) FROM (VALUES ('ctl_lim'), ('ctl_lim'), ('ctl_lim'),
                                                                       ('ctl_free'), ('ctl_free')) v(t)));
SELECT job_type, count(*) AS grabbed FROM jobq.jq_grab(NULL, '1 hour', 10, 'w-lim') GROUP BY job_type ORDER BY 1;
SELECT count(*) AS over_limit FROM jobq.jq_grab(ARRAY['ctl_lim'], '1 hour', 10, 'w-lim');
-- a slot frees up
SELECT id AS lid, lease_token AS ltok FROM jobq.jobs WHERE job_type = 'ctl_lim' AND state = 'running' LIMIT 1 \gset
SELECT jobq.jq_complete(:lid, :'ltok');
SELECT count(*) AS one_slot FROM jobq.jq_grab(ARRAY['ctl_lim'], '1 hour', 10, 'w-lim');
-- 0 stops the type
UPDATE jobq.job_types SET max_running = 0 WHERE job_type = 'ctl_lim';
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many('[{"job_type": "ctl_lim"}]');
SELECT id AS lid, lease_token AS ltok FROM jobq.jobs WHERE job_type = 'ctl_lim' AND state = 'running' LIMIT 1 \gset
SELECT jobq.jq_complete(:lid, :'ltok');
SELECT count(*) AS stopped FROM jobq.jq_grab(ARRAY['ctl_lim'], '1 hour', 10, 'w-lim');
-- the limit holds under REPEATABLE READ only by refusing it
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_grab(ARRAY['ctl_lim'])$$);
ROLLBACK;
-- '*' holds no limit, and limits are not negative
UPDATE jobq.job_types SET max_running = 5 WHERE job_type = '*';
\echo :SQLSTATE
UPDATE jobq.job_types SET max_running = -1 WHERE job_type = 'ctl_lim';
\echo :SQLSTATE
DELETE FROM jobq.job_types WHERE job_type = 'ctl_lim';
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
-- a limit set while jobs of the type run counts them at once: 2 run, the
-- limit becomes 2, and the third waits; a job that waits again (temp-fail)
-- and one that ends free their slots
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    '[{"job_type": "ctl_late"}, {"job_type": "ctl_late"}, {"job_type": "ctl_late"}]');
SELECT count(*) AS grabbed_unlimited FROM jobq.jq_grab(ARRAY['ctl_late'], '1 hour', 2, 'w-late');
INSERT INTO jobq.job_types (job_type, max_running) VALUES ('ctl_late', 2);
SELECT count(*) AS counted_as_running FROM jobq.live_jobs WHERE running_type = 'ctl_late';
SELECT count(*) AS over_late_limit FROM jobq.jq_grab(ARRAY['ctl_late'], '1 hour', 10, 'w-late');
SELECT id AS lid, lease_token AS ltok FROM jobq.live_jobs WHERE job_type = 'ctl_late' AND state = 'running'
ORDER BY id LIMIT 1 \gset
SELECT state FROM jobq.jq_temp_fail(:lid, :'ltok', 'again later', '1 hour');
SELECT count(*) AS after_temp_fail FROM jobq.jq_grab(ARRAY['ctl_late'], '1 hour', 10, 'w-late');
SELECT count(*) AS full_again FROM jobq.jq_grab(ARRAY['ctl_late'], '1 hour', 10, 'w-late');
SELECT count(*) FILTER (WHERE running_type = 'ctl_late') AS marked,
       count(*) FILTER (WHERE state = 'running') AS running
FROM jobq.live_jobs WHERE job_type = 'ctl_late';
DELETE FROM jobq.job_types WHERE job_type = 'ctl_late';
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- ---------------------------------------------------------------------------
-- cancel
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('ctl_cancel') AS id \gset
-- (jq_details is STABLE: it sees a change only from the next statement on)
SELECT jobq.jq_cancel(:id) AS result;
SELECT pg_temp.state(:id) AS state, jobq.jq_details(:id) -> 'finished_at' <> 'null' AS finished;
SELECT jobq.jq_cancel(:id) AS again;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ctl_cancel'], '1 hour', 10);
SELECT * FROM pg_temp.events_of(:id);
-- a running job is asked to stop; its worker learns it at extend
SELECT jobq.jq_enqueue('ctl_cancel_run') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_cancel_run'], '1 hour', 1, 'w-c') \gset
SELECT jobq.jq_cancel(:id) AS result, pg_temp.state(:id) AS state;
SELECT jobq.jq_cancel(:id) AS again;
SELECT code, message FROM pg_temp.rejection(format('SELECT jobq.jq_extend(%s, %L)', :id, :'tok'));
SELECT outcome, locked_until = (SELECT locked_until FROM jobq.jobs WHERE id = :id) AS lease_unchanged
FROM jobq.jq_extend_many(ARRAY[:id]::bigint[], ARRAY[:'tok']::uuid[]);
SELECT code, message FROM pg_temp.rejection(format('SELECT jobq.jq_replace(%s, %L, ''[{"job_type": "ctl_x"}]'')', :id, :'tok'));
SELECT count(*) AS nothing_inserted FROM jobq.jobs WHERE job_type = 'ctl_x';
-- notes still work; the failure report ends it cancelled
SELECT jobq.jq_note(:id, :'tok', '{"stopping": true}');
SELECT state, run_at FROM jobq.jq_temp_fail(:id, :'tok', 'stopped on request', '0');
SELECT d ->> 'state' AS state, d -> 'failures' -> 0 ->> 'message' AS failure,
       d -> 'cancel_requested_at' <> 'null' AS requested
FROM jobq.jq_details(:id) AS d;
SELECT * FROM pg_temp.events_of(:id);
-- perm_fail and release end it cancelled too; complete completes it
SELECT jobq.jq_enqueue('ctl_cancel_run') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_cancel_run'], '1 hour', 1, 'w-c') \gset
SELECT jobq.jq_cancel(:id);
SELECT jobq.jq_perm_fail(:id, :'tok', 'gave up');
SELECT pg_temp.state(:id) AS after_perm_fail;
SELECT jobq.jq_enqueue('ctl_cancel_run') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_cancel_run'], '1 hour', 1, 'w-c') \gset
SELECT jobq.jq_cancel(:id);
SELECT outcome FROM jobq.jq_release_many(ARRAY[:id]::bigint[], ARRAY[:'tok']::uuid[]);
SELECT pg_temp.state(:id) AS after_release;
SELECT jobq.jq_enqueue('ctl_cancel_run') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_cancel_run'], '1 hour', 1, 'w-c') \gset
SELECT jobq.jq_cancel(:id);
SELECT jobq.jq_complete(:id, :'tok', '{"done": "anyway"}');
SELECT pg_temp.state(:id) AS after_complete;
-- a worker that ignores the request: its lease runs out and the job ends
-- cancelled, not retried
SELECT jobq.jq_enqueue('ctl_cancel_run') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_cancel_run'], '10 ms', 1, 'w-c') \gset
SELECT jobq.jq_cancel(:id);
SELECT pg_sleep(0.05);
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ctl_cancel_run'], '1 hour', 1);
SELECT pg_temp.state(:id) AS after_lease_ran_out;
SELECT * FROM pg_temp.events_of(:id);
-- errors
SELECT * FROM pg_temp.rejection(format('SELECT jobq.jq_cancel(%s)',
    (SELECT id FROM jobq.jobs WHERE job_type = 'ctl_cancel_run' AND state = 'completed')));
SELECT * FROM pg_temp.rejection('SELECT jobq.jq_cancel(-1)');
SELECT * FROM pg_temp.rejection('SELECT jobq.jq_cancel(NULL)');
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- ---------------------------------------------------------------------------
-- retry: a fresh attempt budget, the history kept
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('ctl_retry', max_attempts => 2) AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_retry'], '1 hour', 1, 'w-r') \gset
SELECT state FROM jobq.jq_temp_fail(:id, :'tok', 'first', '0');
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_retry'], '1 hour', 1, 'w-r') \gset
SELECT state FROM jobq.jq_temp_fail(:id, :'tok', 'second', '0');
SELECT * FROM pg_temp.rejection(format('SELECT jobq.jq_retry(%s, 0)', :id));
SELECT jobq.jq_retry(:id, 3) AS retried;
SELECT d ->> 'state' AS state, d -> 'attempts' AS attempts, d -> 'max_attempts' AS max_attempts,
       jsonb_array_length(d -> 'failures') AS failures, d -> 'finished_at' AS finished_at
FROM jobq.jq_details(:id) AS d;
SELECT attempt FROM jobq.jq_grab(ARRAY['ctl_retry'], '1 hour', 1, 'w-r');
-- the default budget is the type's max_attempts
SELECT jobq.jq_enqueue('ctl_retry2', max_attempts => 1) AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_retry2'], '1 hour', 1) \gset
SELECT jobq.jq_perm_fail(:id, :'tok', 'nope');
SELECT jobq.jq_retry(:id);
SELECT jobq.jq_details(:id) -> 'max_attempts' AS max_attempts;
SELECT * FROM pg_temp.events_of(:id);
-- only failed, cancelled or expired jobs
SELECT * FROM pg_temp.rejection(format('SELECT jobq.jq_retry(%s)', :id));
SELECT * FROM pg_temp.rejection('SELECT jobq.jq_retry(-1)');
SELECT * FROM pg_temp.rejection('SELECT jobq.jq_retry(NULL)');
-- an expired job loses the deadline it missed
SELECT jobq.jq_enqueue('ctl_retry_exp', expires_at => clock_timestamp() + interval '20 ms') AS id \gset
SELECT pg_sleep(0.05);
SELECT jobq.jq_maintain() ->> 'expired_jobs' AS expired_by_maintenance;
SELECT pg_temp.state(:id) AS state;
SELECT jobq.jq_retry(:id);
SELECT jobq.jq_details(:id) -> 'expires_at' AS expires_at;
-- a unique key taken meanwhile
SELECT jobq.jq_enqueue('ctl_retry_u', unique_key => 'ru') AS id \gset
SELECT jobq.jq_cancel(:id);
SELECT jobq.jq_enqueue('ctl_retry_u', unique_key => 'ru') <> :id AS other_holds_key;
SELECT * FROM pg_temp.rejection(format('SELECT jobq.jq_retry(%s)', :id));
-- a child whose parent failed: retry the parent first; then the child waits for it
SELECT jobq.jq_enqueue('ctl_rp', max_attempts => 1) AS p \gset
SELECT jobq.jq_enqueue('ctl_rc', depends_on => ARRAY[:p]) AS c \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_rp'], '1 hour', 1) \gset
SELECT jobq.jq_perm_fail(:p, :'tok', 'parent broke');
SELECT pg_temp.state(:c) AS child;
SELECT * FROM pg_temp.rejection(format('SELECT jobq.jq_retry(%s)', :c));
SELECT jobq.jq_retry(:p) AS parent, jobq.jq_retry(:c) AS child;
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_rp'], '1 hour', 1) \gset
SELECT jobq.jq_complete(:p, :'tok');
SELECT pg_temp.state(:c) AS child_after_parent;
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- ---------------------------------------------------------------------------
-- pause and resume a queue
-- ---------------------------------------------------------------------------
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    '[{"job_type": "ctl_pq", "queue": "ctl_paused"}, {"job_type": "ctl_pq", "queue": "ctl_other"}]');
SELECT jobq.jq_pause_queue('ctl_paused');
SELECT jobq.jq_pause_queue('ctl_paused');
SELECT queue, paused, paused_at IS NOT NULL AS since FROM jobq.queues;
SELECT queue FROM jobq.jq_grab(ARRAY['ctl_pq'], '1 hour', 10);
SELECT count(*) AS only_paused_asked FROM jobq.jq_grab(NULL, '1 hour', 10, NULL, NULL, ARRAY['ctl_paused']);
SELECT jobq.jq_resume_queue('ctl_paused');
SELECT jobq.jq_resume_queue('ctl_never_paused');
SELECT queue FROM jobq.jq_grab(NULL, '1 hour', 10, NULL, NULL, ARRAY['ctl_paused', 'ctl_other']);
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_pause_queue('bad queue')$$);
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_pause_queue(NULL)$$);
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
DELETE FROM jobq.queues;

-- ---------------------------------------------------------------------------
-- notes
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('ctl_note') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['ctl_note'], '1 hour', 1, 'w-n') \gset
SELECT jobq.jq_note(:id, :'tok', '{"progress": 10, "stage": "download"}');
SELECT jobq.jq_note(:id, :'tok', '{"progress": 50}');
SELECT jobq.jq_note(:id, :'tok', '{"stage": null, "rows": [1, 2]}');
SELECT jobq.jq_note(:id, :'tok', '{}');
SELECT jobq.jq_details(:id) -> 'notes' AS notes;
SELECT notes FROM jobq.running_jobs WHERE id = :id;
SELECT * FROM pg_temp.events_of(:id);
SELECT * FROM pg_temp.rejection(format('SELECT jobq.jq_note(%s, %L, ''[1]'')', :id, :'tok'));
SELECT * FROM pg_temp.rejection(format('SELECT jobq.jq_note(%s, %L, NULL)', :id, :'tok'));
SELECT * FROM pg_temp.rejection(format('SELECT jobq.jq_note(%s, gen_random_uuid(), ''{}'')', :id));
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_note(-1, gen_random_uuid(), '{}')$$);
SELECT jobq.jq_complete(:id, :'tok');
SELECT jobq.jq_details(:id) -> 'notes' AS notes_kept;
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- ---------------------------------------------------------------------------
-- maintenance: leases, deadlines, retention per type, events outlive jobs
-- ---------------------------------------------------------------------------
INSERT INTO jobq.job_types (job_type, retention) VALUES ('ctl_keep', '30 days'), ('ctl_brief', '1 hour');
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    (SELECT jsonb_agg(jsonb_build_object('job_type', t)) FROM (VALUES ('ctl_keep'), ('ctl_keep'), ('ctl_brief'),
         ('ctl_brief'), ('ctl_plain'), ('ctl_plain'), ('ctl_open')) v(t)));
SELECT array_agg(id) AS ids, array_agg(lease_token) AS toks
FROM jobq.jq_grab(ARRAY['ctl_keep', 'ctl_brief', 'ctl_plain'], '1 hour', 10) \gset
SELECT count(*) AS completed FROM jobq.jq_complete_many(:'ids', :'toks');
-- finished 2 hours ago: only ctl_brief (1 hour) is past retention
UPDATE jobq.job_history SET finished_at = now() - interval '2 hours' WHERE state = 'completed';
SELECT jobq.jq_maintain() - 'ms' AS summary;
SELECT job_type, count(*) FROM jobq.jobs GROUP BY 1 ORDER BY 1;
-- 10 days: ctl_plain ('*': 7 days) goes too; ctl_keep stays
UPDATE jobq.job_history SET finished_at = now() - interval '10 days' WHERE state = 'completed';
SELECT jobq.jq_maintain() ->> 'pruned_jobs' AS pruned;
SELECT job_type, count(*) FROM jobq.jobs GROUP BY 1 ORDER BY 1;
-- hidden at once, their rows stay until older than the longest retention
-- (ctl_keep's 30 days): then a whole day's partition is dropped, and rows of
-- days without a partition are deleted from the default one
SELECT count(*) AS rows_kept FROM jobq.job_history;
SELECT jobq._create_history_partitions(now() - interval '40 days', now() - interval '40 days') AS created;
UPDATE jobq.job_history SET finished_at = now() - interval '40 days' WHERE job_type <> 'ctl_plain';
UPDATE jobq.job_history SET finished_at = now() - interval '50 days' WHERE job_type = 'ctl_plain';
SELECT (SELECT count(*) FROM jobq.job_history_default) AS in_default,
       (SELECT count(*) FROM jobq._history_partitions() WHERE day < current_date - 30) AS old_partitions;
SELECT s ->> 'dropped_partitions' AS dropped, s ->> 'pruned_jobs' AS pruned_from_default
FROM jobq.jq_maintain() AS s;
SELECT (SELECT count(*) FROM jobq.job_history) AS rows_left,
       (SELECT count(*) FROM jobq._history_partitions() WHERE day < current_date - 30) AS old_partitions,
       (SELECT count(*) FROM jobq._history_partitions() WHERE day >= current_date) AS ahead;
-- the pruned jobs' events remain, until their own retention
SELECT job_type, count(*) AS events FROM jobq.events
WHERE job_type IN ('ctl_keep', 'ctl_brief', 'ctl_plain') GROUP BY 1 ORDER BY 1;
-- expired leases are reaped; the last run is recorded
SELECT jobq.jq_enqueue('ctl_reap') AS id \gset
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ctl_reap'], '10 ms', 1, 'w-gone');
SELECT pg_sleep(0.05);
SELECT jobq.jq_maintain() ->> 'reaped_leases' AS reaped;
SELECT pg_temp.state(:id) AS state;
SELECT last_summary ->> 'complete' AS complete, last_run_at IS NOT NULL AS ran FROM jobq.maintenance;
-- the background pass (what the wake-up worker runs) leaves leases that ran
-- out less than 5 seconds ago to the grabs, and stops at its budget
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['ctl_reap'], '10 ms', 1, 'w-gone');
SELECT pg_sleep(0.05);
SELECT jobq._maintain(clock_timestamp(), interval '1 minute', interval '5 seconds') ->> 'reaped_leases' AS reaped;
SELECT jobq._maintain(clock_timestamp(), interval '1 microsecond', interval '5 seconds') ->> 'complete' AS complete;
SELECT behind FROM jobq.maintenance;
DELETE FROM jobq.job_types WHERE job_type LIKE 'ctl\_%';
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- ---------------------------------------------------------------------------
-- operators' views
-- ---------------------------------------------------------------------------
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many(
    '[{"job_type": "ctl_v1", "queue": "ctl_q"}, {"job_type": "ctl_v1", "queue": "ctl_q"},
      {"job_type": "ctl_v1", "queue": "ctl_q"}, {"job_type": "ctl_v2", "queue": "ctl_q"},
      {"job_type": "ctl_v2", "queue": "ctl_q", "run_at": "2999-01-01T00:00:00Z"}]');
SELECT array_agg(id) AS ids, array_agg(lease_token) AS toks FROM jobq.jq_grab(ARRAY['ctl_v1'], '1 hour', 2, 'w-view') \gset
SELECT jobq.jq_complete((:'ids'::bigint[])[1], (:'toks'::uuid[])[1]);
SELECT jobq.jq_perm_fail((:'ids'::bigint[])[2], (:'toks'::uuid[])[2], 'disk full');
SELECT id AS rid, lease_token AS rtok FROM jobq.jq_grab(ARRAY['ctl_v2'], '1 hour', 1, 'w-view2') \gset
SELECT jobq.jq_note(:rid, :'rtok', '{"progress": 0.5}');
SELECT jobq.jq_pause_queue('ctl_q');
SELECT queue, job_type, paused, blocked, scheduled, due, running, max_running, completed, failed,
       cancelled, expired, replaced, oldest_due_age IS NOT NULL AS has_oldest,
       completed_last_minute, completed_last_hour, failed_last_hour
FROM jobq.queue_stats;
SELECT job_type, queue, worker, attempt, running_for >= '0' AS running_for, lease_left > '50 minutes' AS lease_left,
       cancel_requested, notes
FROM jobq.running_jobs;
SELECT job_type, queue, attempts, last_failure, last_error, last_worker FROM jobq.failed_jobs;
SELECT worker, running, job_types, queues, last_seen_ago < '1 minute' AS recent FROM jobq.workers
WHERE worker LIKE 'w-view%';

-- who may read them: observers and admins; producers and workers may not
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_ctl_observer;
DROP ROLE IF EXISTS regress_ctl_producer;
DROP ROLE IF EXISTS regress_ctl_worker;
RESET client_min_messages;
CREATE ROLE regress_ctl_observer NOLOGIN IN ROLE jobq_observer;
CREATE ROLE regress_ctl_producer NOLOGIN IN ROLE jobq_producer;
CREATE ROLE regress_ctl_worker NOLOGIN IN ROLE jobq_worker;
SELECT v.relname, r.rolname, has_table_privilege(r.rolname, ('jobq.' || v.relname)::regclass, 'SELECT') AS sel
FROM (VALUES ('queue_stats'), ('running_jobs'), ('failed_jobs'), ('workers')) v(relname)
CROSS JOIN (VALUES ('regress_ctl_observer'), ('regress_ctl_producer'), ('regress_ctl_worker'), ('jobq_admin')) r(rolname)
ORDER BY 1, 2;
SET ROLE regress_ctl_observer;
SELECT count(*) AS observer_sees FROM jobq.queue_stats;
SELECT count(*) AS observer_sees FROM jobq.running_jobs;
RESET ROLE;
-- a producer may cancel, not retry or pause
SET ROLE regress_ctl_producer;
SELECT jobq.jq_enqueue('ctl_prod') AS pid \gset
SELECT jobq.jq_cancel(:pid) AS producer_cancels;
SELECT * FROM pg_temp.rejection(format('SELECT jobq.jq_retry(%s)', :pid));
SELECT * FROM pg_temp.rejection($$SELECT jobq.jq_pause_queue('x')$$);
SELECT * FROM pg_temp.rejection('SELECT jobq.jq_maintain()');
RESET ROLE;
DROP ROLE regress_ctl_observer;
DROP ROLE regress_ctl_producer;
DROP ROLE regress_ctl_worker;
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
DELETE FROM jobq.queues;
DELETE FROM jobq.seen_workers;
UPDATE jobq.maintenance SET every = '10 seconds', last_run_at = NULL, behind = false;
