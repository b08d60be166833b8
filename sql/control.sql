-- ============================================================================
-- jobq: job control and operations
--
-- Dependencies between jobs, cancellation, retry, pausing queues, notes,
-- retention and maintenance, and the operators' views. The tables are in
-- schema.sql.
-- ============================================================================

-- ---------------------------------------------------------------------------
-- Dependencies
--
-- A job with parents is inserted 'blocked' and gets one jobq.job_dependencies
-- row per distinct parent, pending_parents counting them. No index that a
-- grab reads holds blocked jobs. When a parent finishes, its rows go:
--   completed                   each child's count drops; at 0 it waits
--   failed, cancelled, expired  each child is cancelled (and through the same
--                               trigger its own dependants), or, enqueued
--                               with run_anyway, counts the parent as done
--   replaced (jq_replace)       each child waits for all the replacements
--                               instead: the parent's work goes on in them
-- Parent and child rows are locked in id order while this happens, and a
-- parent is locked by whoever adds a dependant to it, so a dependant added
-- while its parent finishes is never missed.
-- ---------------------------------------------------------------------------

-- Announces jobs that just became waiting (released by their parents, or
-- retried): one wake-up per (queue, job_type) of those due now, and a rescan
-- request for those due later.
CREATE FUNCTION jobq._announce_waiting(p_ids bigint[], p_now timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobq._wake('jobq_wakeup', jobq._wakeup_payload(d.queue, d.job_type))
    FROM (SELECT DISTINCT j.queue, j.job_type FROM jobq.jobs j
          WHERE j.id = ANY (p_ids) AND j.state = 'waiting' AND j.run_at <= p_now) d;
    IF EXISTS (SELECT 1 FROM jobq.jobs j
               WHERE j.id = ANY (p_ids) AND j.state = 'waiting' AND j.run_at > p_now) THEN
        PERFORM jobq._due_time_added();
    END IF;
END;
$$;

-- Locks the given jobs in id order and marks them as having dependants;
-- returns those that exist. The mark is an update rather than a lock alone,
-- so that a parent finishing concurrently under REPEATABLE READ fails with a
-- serialization error instead of missing its new dependant; under READ
-- COMMITTED the finishing update waits for this transaction and then sees
-- the mark (and the dependency rows).
CREATE FUNCTION jobq._lock_parents(p_ids bigint[])
RETURNS TABLE (id bigint, state text)
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH locked AS (
        SELECT j.id FROM jobq.jobs j WHERE j.id = ANY (p_ids) ORDER BY j.id FOR NO KEY UPDATE
    )
    UPDATE jobq.jobs j SET has_dependants = true
    FROM locked WHERE j.id = locked.id
    RETURNING j.id, j.state;
END;
$$;

-- Makes each p_children[i] depend on p_parents[i] (pairs; a child may appear
-- many times). p_blocked are the children to (re)count: they must be
-- 'blocked'; each ends with pending_parents = its open dependency rows, and
-- waits at once when there are none. Parents that already finished are then
-- applied as if they had just finished. Pairs whose parent does not exist are
-- dropped; the smallest such parent id is returned (NULL when all exist), so
-- that callers can refuse.
CREATE FUNCTION jobq._add_dependencies(p_children bigint[], p_parents bigint[], p_blocked bigint[],
                                       p_now timestamptz)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_locked bigint[];
    v_missing bigint;
    v_released bigint[];
    r record;
BEGIN
    v_locked := ARRAY(SELECT l.id FROM jobq._lock_parents(
                          ARRAY(SELECT DISTINCT p FROM unnest(p_parents) AS p)) AS l);
    -- Joins rather than "<> ALL": fan-ins can be large.
    SELECT min(p.id) INTO v_missing
    FROM unnest(p_parents) AS p(id) LEFT JOIN unnest(v_locked) AS l(id) ON l.id = p.id
    WHERE l.id IS NULL;

    INSERT INTO jobq.job_dependencies (parent_id, child_id)
    SELECT e.parent, e.child
    FROM unnest(p_parents, p_children) AS e(parent, child)
    JOIN unnest(v_locked) AS l(id) ON l.id = e.parent
    WHERE e.parent <> e.child
    ON CONFLICT DO NOTHING;

    UPDATE jobq.jobs c
    SET pending_parents = (SELECT count(*) FROM jobq.job_dependencies d WHERE d.child_id = c.id)
    WHERE c.id = ANY (p_blocked) AND c.state = 'blocked';
    WITH released AS (
        UPDATE jobq.jobs c SET state = 'waiting'
        WHERE c.id = ANY (p_blocked) AND c.state = 'blocked' AND c.pending_parents = 0
        RETURNING c.id)
    SELECT array_agg(released.id) INTO v_released FROM released;
    IF v_released IS NOT NULL THEN
        PERFORM jobq._announce_waiting(v_released, p_now);
    END IF;

    FOR r IN SELECT j.id, j.state, j.replaced_by FROM jobq.jobs j
             WHERE j.id = ANY (v_locked)
               AND j.state IN ('completed', 'failed', 'cancelled', 'expired', 'replaced')
             ORDER BY j.id LOOP
        PERFORM jobq._release_dependants(r.id, r.state, r.replaced_by, p_now, p_blocked);
    END LOOP;
    RETURN v_missing;
END;
$$;

-- Records and resolves the parents of freshly inserted specs (called by
-- _insert_specs when some spec has depends_on or depends_on_index). Specs
-- that resolved to an existing job through their unique_key are left alone:
-- that job keeps the dependencies it has. A parent id that does not exist
-- fails the whole call with JQ002.
CREATE FUNCTION jobq._wire_dependencies(p_specs jobq.job_spec[], p_ids bigint[], p_created boolean[],
                                        p_now timestamptz, p_where text)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_children bigint[];
    v_parents bigint[];
    v_blocked bigint[];
    v_missing bigint;
    v_ord bigint;
BEGIN
    -- (child, parent) pairs: the ids of depends_on, and the new ids of the
    -- siblings that depends_on_index names.
    SELECT array_agg(e.child), array_agg(e.parent) INTO v_children, v_parents
    FROM (SELECT DISTINCT p_ids[u.ord] AS child, x.parent
          FROM unnest(p_specs) WITH ORDINALITY
                   AS u(job_type, args, queue, priority, run_at, max_attempts, unique_key,
                        expires_at, depends_on, run_anyway, depends_on_index, ord)
          CROSS JOIN LATERAL (SELECT d FROM unnest(u.depends_on) AS d
                              UNION ALL
                              SELECT p_ids[i + 1] FROM unnest(u.depends_on_index) AS i) AS x(parent)
          WHERE p_created[u.ord]) e;
    v_blocked := ARRAY(SELECT p_ids[u.ord]
                       FROM unnest(p_specs) WITH ORDINALITY
                                AS u(job_type, args, queue, priority, run_at, max_attempts,
                                     unique_key, expires_at, depends_on, run_anyway,
                                     depends_on_index, ord)
                       WHERE p_created[u.ord]
                         AND (cardinality(u.depends_on) > 0 OR cardinality(u.depends_on_index) > 0));
    IF cardinality(v_blocked) = 0 THEN
        RETURN;
    END IF;

    -- depends_on as jq_details shows it: every parent by id, siblings included.
    UPDATE jobq.jobs c SET depends_on = x.parents
    FROM (SELECT e.child, array_agg(DISTINCT e.parent ORDER BY e.parent) AS parents
          FROM unnest(v_children, v_parents) AS e(child, parent)
          GROUP BY e.child) x
    WHERE c.id = x.child AND c.depends_on IS DISTINCT FROM x.parents;

    v_missing := jobq._add_dependencies(coalesce(v_children, '{}'), coalesce(v_parents, '{}'),
                                        v_blocked, p_now);
    IF v_missing IS NOT NULL THEN
        SELECT u.ord INTO v_ord
        FROM unnest(p_specs) WITH ORDINALITY
                 AS u(job_type, args, queue, priority, run_at, max_attempts, unique_key, expires_at,
                      depends_on, run_anyway, depends_on_index, ord)
        WHERE v_missing = ANY (u.depends_on)
        ORDER BY u.ord
        LIMIT 1;
        PERFORM jobq._raise('JQ002', format('%sdepends_on names job %s, which does not exist',
            CASE WHEN p_where IS NULL THEN '' ELSE format('%s[%s].', p_where, v_ord - 1) END,
            v_missing));
    END IF;
END;
$$;

-- Applies a parent's final state to its dependants (p_only: only these
-- children). Called by the trigger below, by jq_replace, and for parents that
-- had already finished when a dependant was added.
CREATE FUNCTION jobq._release_dependants(p_parent bigint, p_state text, p_replaced_by bigint[],
                                         p_now timestamptz, p_only bigint[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_children bigint[];
    v_released bigint[];
BEGIN
    IF p_state = 'replaced' THEN
        PERFORM jobq._transfer_dependants(p_parent, coalesce(p_replaced_by, '{}'), p_now, p_only);
        RETURN;
    END IF;
    IF p_state IS NULL OR p_state NOT IN ('completed', 'failed', 'cancelled', 'expired') THEN
        RETURN;
    END IF;
    WITH gone AS (
        DELETE FROM jobq.job_dependencies d
        WHERE d.parent_id = p_parent AND (p_only IS NULL OR d.child_id = ANY (p_only))
        RETURNING d.child_id)
    SELECT array_agg(gone.child_id) INTO v_children FROM gone;
    IF v_children IS NULL THEN
        RETURN;
    END IF;
    -- Children in id order, so that parents finishing together lock the
    -- children they share in one order. A child no longer blocked (cancelled
    -- by an operator, say) only loses the dependency row.
    WITH locked AS (
        SELECT c.id FROM jobq.jobs c
        WHERE c.id = ANY (v_children) AND c.state = 'blocked'
        ORDER BY c.id
        FOR NO KEY UPDATE
    ), changed AS (
        UPDATE jobq.jobs c
        SET pending_parents = c.pending_parents - 1,
            state = CASE WHEN p_state <> 'completed' AND NOT c.run_anyway THEN 'cancelled'
                         WHEN c.pending_parents <= 1 THEN 'waiting'
                         ELSE 'blocked' END,
            finished_at = CASE WHEN p_state <> 'completed' AND NOT c.run_anyway THEN p_now END
        FROM locked
        WHERE c.id = locked.id AND c.state = 'blocked'
        RETURNING c.id, c.state)
    SELECT array_agg(changed.id) FILTER (WHERE changed.state = 'waiting') INTO v_released
    FROM changed;
    IF v_released IS NOT NULL THEN
        PERFORM jobq._announce_waiting(v_released, p_now);
    END IF;
END;
$$;

-- A replaced parent hands its dependants on to its replacements: each blocked
-- child now waits for every one of them (none: the parent counts as done).
CREATE FUNCTION jobq._transfer_dependants(p_parent bigint, p_new bigint[], p_now timestamptz,
                                          p_only bigint[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_children bigint[];
    v_new bigint[];
    v_released bigint[];
    r record;
BEGIN
    WITH gone AS (
        DELETE FROM jobq.job_dependencies d
        WHERE d.parent_id = p_parent AND (p_only IS NULL OR d.child_id = ANY (p_only))
        RETURNING d.child_id)
    SELECT array_agg(gone.child_id) INTO v_children FROM gone;
    IF v_children IS NULL THEN
        RETURN;
    END IF;
    v_children := ARRAY(SELECT c.id FROM jobq.jobs c
                        WHERE c.id = ANY (v_children) AND c.state = 'blocked'
                        ORDER BY c.id
                        FOR NO KEY UPDATE);
    IF cardinality(v_children) = 0 THEN
        RETURN;
    END IF;
    -- Replacements that no longer exist were pruned, so finished long ago.
    v_new := ARRAY(SELECT l.id FROM jobq._lock_parents(
                       ARRAY(SELECT DISTINCT n FROM unnest(p_new) AS n WHERE n IS NOT NULL)) AS l);

    WITH added AS (
        INSERT INTO jobq.job_dependencies (parent_id, child_id)
        SELECT n.id, c.id FROM unnest(v_new) AS n(id) CROSS JOIN unnest(v_children) AS c(id)
        WHERE n.id <> c.id
        ON CONFLICT DO NOTHING
        RETURNING child_id
    ), counts AS (
        SELECT c.id, count(a.child_id) AS added
        FROM unnest(v_children) AS c(id) LEFT JOIN added a ON a.child_id = c.id
        GROUP BY c.id
    ), changed AS (
        UPDATE jobq.jobs j
        SET pending_parents = j.pending_parents - 1 + counts.added,
            state = CASE WHEN j.pending_parents - 1 + counts.added <= 0 THEN 'waiting'
                         ELSE 'blocked' END
        FROM counts
        WHERE j.id = counts.id AND j.state = 'blocked'
        RETURNING j.id, j.state)
    SELECT array_agg(changed.id) FILTER (WHERE changed.state = 'waiting') INTO v_released
    FROM changed;
    IF v_released IS NOT NULL THEN
        PERFORM jobq._announce_waiting(v_released, p_now);
    END IF;

    -- Replacements that already finished (only when the dependant was added
    -- after the replacement happened).
    FOR r IN SELECT j.id, j.state, j.replaced_by FROM jobq.jobs j
             WHERE j.id = ANY (v_new)
               AND j.state IN ('completed', 'failed', 'cancelled', 'expired', 'replaced')
             ORDER BY j.id LOOP
        PERFORM jobq._release_dependants(r.id, r.state, r.replaced_by, p_now, v_children);
    END LOOP;
END;
$$;

CREATE FUNCTION jobq._dependants_after_update()
RETURNS trigger
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobq._release_dependants(NEW.id, NEW.state, NEW.replaced_by, clock_timestamp());
    RETURN NULL;
END;
$$;

-- A row trigger whose WHEN clause the executor checks without calling any
-- function: finishing a job that nobody depends on (the hot path) costs
-- nothing here. 'replaced' is left to jq_replace, which knows the
-- replacements when it fills in replaced_by. The events of the dependants
-- it changes are written before the parent's own event of the statement.
CREATE TRIGGER jobs_release_dependants
    AFTER UPDATE OF state ON jobq.jobs
    FOR EACH ROW
    WHEN (NEW.has_dependants AND OLD.state IS DISTINCT FROM NEW.state
          AND NEW.state IN ('completed', 'failed', 'cancelled', 'expired'))
    EXECUTE FUNCTION jobq._dependants_after_update();

-- ---------------------------------------------------------------------------
-- Control
-- ---------------------------------------------------------------------------

-- Cancels a job. A blocked or waiting job ends 'cancelled' at once (and its
-- dependants with it, unless they run anyway); returns 'cancelled'. A running
-- job is asked to stop: returns 'cancel_requested'. Its worker learns it at
-- its next jq_extend (JQ004) or jq_extend_many (outcome 'cancel_requested'),
-- the lease is no longer extended, and whatever ends the attempt except a
-- completion (jq_temp_fail, jq_perm_fail, jq_release, the lease running out)
-- ends the job 'cancelled'; a jq_complete still completes it, because the
-- work was done. Cancelling a cancelled job returns 'cancelled' again; any
-- other finished job raises JQ003.
CREATE FUNCTION jobq.jq_cancel(id bigint)
RETURNS text
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_state text;
BEGIN
    IF jq_cancel.id IS NULL THEN
        PERFORM jobq._raise('JQ010', 'id is required');
    END IF;
    UPDATE jobq.jobs j
    SET state = CASE WHEN j.state = 'running' THEN j.state ELSE 'cancelled' END,
        finished_at = CASE WHEN j.state = 'running' THEN j.finished_at ELSE v_now END,
        cancel_requested_at = CASE WHEN j.state = 'running'
                                   THEN coalesce(j.cancel_requested_at, v_now) END
    WHERE j.id = jq_cancel.id AND j.state IN ('blocked', 'waiting', 'running')
    RETURNING j.state INTO v_state;
    IF FOUND THEN
        RETURN CASE WHEN v_state = 'running' THEN 'cancel_requested' ELSE 'cancelled' END;
    END IF;
    SELECT j.state INTO v_state FROM jobq.jobs j WHERE j.id = jq_cancel.id;
    IF NOT FOUND THEN
        PERFORM jobq._raise('JQ002', format('job %s does not exist', jq_cancel.id));
    ELSIF v_state = 'cancelled' THEN
        RETURN 'cancelled';
    END IF;
    PERFORM jobq._raise('JQ003', format('job %s is %s and cannot be cancelled', jq_cancel.id, v_state),
                        'Only blocked, waiting and running jobs can be cancelled.');
END;
$$;
COMMENT ON FUNCTION jobq.jq_cancel IS
    'Cancel a waiting job, or ask a running one to stop; returns cancelled or cancel_requested.';

-- Runs a failed, cancelled or expired job again: it waits again, due now,
-- with a fresh budget of max_attempts more attempts (default: what a new job
-- of its type gets from jobq.job_types). The attempt counter goes on counting
-- and the failure history stays, so no attempt number is ever reused. A job
-- with parents waits for those that have not completed yet; one whose parent
-- failed for good raises JQ003 (retry the parent first). An expired job's
-- deadline, which has passed, is dropped. Returns the new state ('waiting' or
-- 'blocked').
CREATE FUNCTION jobq.jq_retry(id bigint, max_attempts integer DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_job jobq.jobs;
    v_parent record;
    v_budget integer;
    v_holder bigint;
    v_state text;
BEGIN
    IF jq_retry.id IS NULL THEN
        PERFORM jobq._raise('JQ010', 'id is required');
    END IF;
    IF jq_retry.max_attempts NOT BETWEEN 1 AND 1000 THEN
        PERFORM jobq._raise('JQ010', 'max_attempts must be between 1 and 1000; got '
                                     || jq_retry.max_attempts);
    END IF;
    SELECT * INTO v_job FROM jobq.jobs j WHERE j.id = jq_retry.id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM jobq._raise('JQ002', format('job %s does not exist', jq_retry.id));
    END IF;
    IF v_job.state NOT IN ('failed', 'cancelled', 'expired') THEN
        PERFORM jobq._raise('JQ003', format('job %s is %s and cannot be retried', jq_retry.id, v_job.state),
                            'Only failed, cancelled and expired jobs can be retried.');
    END IF;
    IF NOT v_job.run_anyway AND cardinality(v_job.depends_on) > 0 THEN
        SELECT p.id, p.state INTO v_parent FROM jobq.jobs p
        WHERE p.id = ANY (v_job.depends_on) AND p.state IN ('failed', 'cancelled', 'expired')
        ORDER BY p.id LIMIT 1;
        IF FOUND THEN
            PERFORM jobq._raise('JQ003', format('job %s depends on job %s, which is %s',
                                                jq_retry.id, v_parent.id, v_parent.state),
                                NULL, 'Retry the parent first.');
        END IF;
    END IF;
    v_budget := coalesce(jq_retry.max_attempts, (jobq._type_settings(v_job.job_type)).max_attempts);

    BEGIN
        UPDATE jobq.jobs j
        SET state = CASE WHEN cardinality(j.depends_on) > 0 THEN 'blocked' ELSE 'waiting' END,
            run_at = v_now, max_attempts = j.attempts + v_budget, pending_parents = 0,
            finished_at = NULL, cancel_requested_at = NULL, result = NULL,
            expires_at = CASE WHEN j.expires_at > v_now THEN j.expires_at END
        WHERE j.id = jq_retry.id
        RETURNING j.state INTO v_state;
    EXCEPTION WHEN unique_violation THEN
        SELECT j.id INTO v_holder FROM jobq.jobs j
        WHERE j.job_type = v_job.job_type AND j.unique_key = v_job.unique_key
          AND j.state IN ('blocked', 'waiting', 'running');
        PERFORM jobq._raise('JQ003', format('job %s cannot be retried: job %s holds its unique_key',
                                            jq_retry.id, v_holder));
    END;

    IF v_state = 'blocked' THEN
        -- Parents that were pruned finished long ago: they no longer hold it back.
        PERFORM jobq._add_dependencies(array_fill(jq_retry.id, ARRAY[cardinality(v_job.depends_on)]),
                                       v_job.depends_on, ARRAY[jq_retry.id], v_now);
        SELECT j.state INTO v_state FROM jobq.jobs j WHERE j.id = jq_retry.id;
        IF v_state = 'cancelled' THEN
            PERFORM jobq._raise('JQ003', format('job %s cannot be retried: a job it waits for '
                                                || 'through a replacement has failed', jq_retry.id),
                                NULL, 'Retry that job first.');
        END IF;
    ELSE
        PERFORM jobq._announce_waiting(ARRAY[jq_retry.id], v_now);
    END IF;
    RETURN v_state;
END;
$$;
COMMENT ON FUNCTION jobq.jq_retry IS
    'Run a failed, cancelled or expired job again with a fresh attempt budget; history kept.';

-- Pauses a queue: no grab takes its jobs until jq_resume_queue. Jobs can still
-- be enqueued into it, and running jobs finish as usual.
CREATE FUNCTION jobq.jq_pause_queue(queue text)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF jobq._name_problem(jq_pause_queue.queue) IS NOT NULL THEN
        PERFORM jobq._raise('JQ010', 'queue ' || jobq._name_problem(jq_pause_queue.queue));
    END IF;
    INSERT INTO jobq.queues AS q (queue, paused, paused_at)
    VALUES (jq_pause_queue.queue, true, clock_timestamp())
    ON CONFLICT (queue) DO UPDATE
        SET paused = true, paused_at = CASE WHEN q.paused THEN q.paused_at ELSE excluded.paused_at END;
END;
$$;
COMMENT ON FUNCTION jobq.jq_pause_queue IS 'Pause a queue: grabs skip it until jq_resume_queue.';

-- Resumes a paused queue (a queue that is not paused is left alone) and wakes
-- its listeners: {"queue": <queue>, "job_type": "*"}.
CREATE FUNCTION jobq.jq_resume_queue(queue text)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF jobq._name_problem(jq_resume_queue.queue) IS NOT NULL THEN
        PERFORM jobq._raise('JQ010', 'queue ' || jobq._name_problem(jq_resume_queue.queue));
    END IF;
    UPDATE jobq.queues q SET paused = false, paused_at = NULL
    WHERE q.queue = jq_resume_queue.queue AND q.paused;
    IF FOUND THEN
        PERFORM jobq._wake('jobq_wakeup', jobq._wakeup_payload(jq_resume_queue.queue, '*'));
    END IF;
END;
$$;
COMMENT ON FUNCTION jobq.jq_resume_queue IS 'Resume a paused queue.';

-- Progress and notes of a running job (Minion's note): merges the keys of
-- note into the job's notes; a key whose value is JSON null is removed.
-- Fenced by the lease like every worker call. Returns the notes after the
-- merge. The 'noted' event carries what changed.
CREATE FUNCTION jobq.jq_note(id bigint, lease_token uuid, note jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_notes jsonb;
BEGIN
    IF jsonb_typeof(jq_note.note) IS DISTINCT FROM 'object' THEN
        PERFORM jobq._raise('JQ010', 'note must be a JSON object, not '
                                     || coalesce(jsonb_typeof(jq_note.note), 'NULL'));
    END IF;
    UPDATE jobq.jobs j
    SET notes = (coalesce(j.notes, '{}') || jq_note.note)
                - ARRAY(SELECT n.key FROM jsonb_each(jq_note.note) AS n WHERE n.value = 'null')
    WHERE j.id = jq_note.id AND j.lease_token = jq_note.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp()
    RETURNING j.notes INTO v_notes;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_note.id, jq_note.lease_token, v_now);
    END IF;
    IF pg_column_size(v_notes) > 1048576 THEN
        PERFORM jobq._raise('JQ011', 'notes would be ' || pg_column_size(v_notes)
                                     || ' bytes; the limit is 1048576');
    END IF;
    RETURN v_notes;
END;
$$;
COMMENT ON FUNCTION jobq.jq_note IS 'Merge progress or notes into a running job''s notes.';

-- Records that a worker grabbed (or polled), for the jobq.workers view. At
-- most one write per worker, session and second: the session keeps the second
-- and worker of its last write in a custom setting, so most grabs only compare
-- two strings (jq_grab makes that comparison itself before calling). The
-- setting's prefix is not "jobq", which the library may one day reserve for
-- GUCs of its own. A row another session is writing is skipped, never waited
-- for.
CREATE FUNCTION jobq._worker_seen(p_worker text, p_job_types text[], p_queues text[],
                                  p_now timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_mark constant text := floor(extract(epoch FROM p_now))::bigint || ' ' || p_worker;
BEGIN
    IF current_setting('jobq_session.worker_seen', true) IS NOT DISTINCT FROM v_mark THEN
        RETURN;
    END IF;
    UPDATE jobq.seen_workers w
    SET last_seen = p_now, job_types = p_job_types, queues = p_queues
    FROM (SELECT s.worker FROM jobq.seen_workers s WHERE s.worker = p_worker
          FOR UPDATE SKIP LOCKED) l
    WHERE w.worker = l.worker AND w.last_seen < p_now;
    IF NOT FOUND AND NOT EXISTS (SELECT 1 FROM jobq.seen_workers s WHERE s.worker = p_worker) THEN
        INSERT INTO jobq.seen_workers (worker, first_seen, last_seen, job_types, queues)
        VALUES (p_worker, p_now, p_now, p_job_types, p_queues)
        ON CONFLICT (worker) DO NOTHING;
    END IF;
    PERFORM set_config('jobq_session.worker_seen', v_mark, false);
END;
$$;

-- ---------------------------------------------------------------------------
-- Retention and maintenance
-- ---------------------------------------------------------------------------

-- Deletes up to p_limit finished jobs whose finished_at is older than their
-- type's retention; returns how many. Each type's old rows are one range of
-- jobs_finished_idx, and the types present are found by skipping through that
-- index, so nothing younger than its retention is ever read. Within a type it
-- deletes in chunks, each starting where the last one ended: rows deleted
-- earlier in the same transaction stay in the index until vacuum, and
-- starting every chunk from the oldest would walk them again and again. The
-- dependency rows of a pruned child go with it. Events stay: they have a
-- retention of their own.
CREATE FUNCTION jobq._prune_jobs(p_now timestamptz, p_limit integer)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_chunk constant integer := 10000;
    v_type text;
    v_retention interval;
    v_from timestamptz;
    v_last timestamptz;
    v_want integer;
    v_count bigint;
    v_total bigint := 0;
BEGIN
    <<types>>
    FOR v_type IN
        WITH RECURSIVE types(job_type) AS (
            (SELECT j.job_type FROM jobq.jobs j WHERE j.finished_at IS NOT NULL
             ORDER BY j.job_type LIMIT 1)
            UNION ALL
            SELECT (SELECT j.job_type FROM jobq.jobs j
                    WHERE j.finished_at IS NOT NULL AND j.job_type > t.job_type
                    ORDER BY j.job_type LIMIT 1)
            FROM types t WHERE t.job_type IS NOT NULL)
        SELECT t.job_type FROM types t WHERE t.job_type IS NOT NULL
    LOOP
        v_retention := (jobq._type_settings(v_type)).retention;
        v_from := '-infinity';
        LOOP
            v_want := least(v_chunk, p_limit - v_total);
            WITH doomed AS (
                SELECT j.id FROM jobq.jobs j
                WHERE j.job_type = v_type AND j.finished_at IS NOT NULL
                  AND j.finished_at >= v_from AND j.finished_at < p_now - v_retention
                ORDER BY j.finished_at
                LIMIT v_want
                -- A job being retried right now is not pruned under it.
                FOR UPDATE SKIP LOCKED
            ), gone AS (
                DELETE FROM jobq.jobs j USING doomed WHERE j.id = doomed.id
                RETURNING j.id, j.finished_at
            ), edges AS (
                DELETE FROM jobq.job_dependencies d USING gone WHERE d.child_id = gone.id
            )
            SELECT count(*), max(gone.finished_at) INTO v_count, v_last FROM gone;
            v_total := v_total + v_count;
            EXIT types WHEN v_total >= p_limit;
            EXIT WHEN v_count < v_want;
            v_from := v_last;
        END LOOP;
    END LOOP;
    RETURN v_total;
END;
$$;

-- One maintenance run: ends leases that ran out and jobs whose deadline
-- passed (both at least p_grace ago), prunes finished jobs and events past
-- their retention, and forgets workers not seen for a day. Works in batches
-- and stops at p_budget (NULL: when done). Returns and records a summary.
CREATE FUNCTION jobq._maintain(p_now timestamptz, p_budget interval, p_grace interval)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_started constant timestamptz := clock_timestamp();
    v_deadline constant timestamptz := CASE WHEN p_budget IS NULL THEN 'infinity'::timestamptz
                                            ELSE v_started + p_budget END;
    -- Small batches when the run has a budget, so that it stops close to it;
    -- large ones otherwise, because every batch of event pruning walks again
    -- the rows the earlier ones deleted in this transaction.
    v_batch constant integer := CASE WHEN p_budget IS NULL THEN 100000 ELSE 1000 END;
    v_counts bigint[] := ARRAY[0, 0, 0, 0]::bigint[];
    v_step integer;
    v_n bigint;
    v_workers bigint := 0;
    v_behind boolean := false;
    v_summary jsonb;
BEGIN
    -- Two runs at once (the wake-up worker and a cron job) would only get in
    -- each other's way. (The first key differs from the one of jq_grab's
    -- per-type locks, whose second key is the hash of any type name.)
    IF NOT pg_try_advisory_xact_lock(1785684594, 0) THEN
        RETURN jsonb_build_object('skipped', 'another maintenance run is in progress');
    END IF;
    <<steps>>
    FOR v_step IN 1 .. 4 LOOP
        LOOP
            IF clock_timestamp() >= v_deadline THEN
                v_behind := true;
                EXIT steps;
            END IF;
            v_n := CASE v_step
                WHEN 1 THEN jobq._reap_expired_leases(p_now, v_batch, p_now - coalesce(p_grace, '0'))
                WHEN 2 THEN jobq._expire_jobs(p_now, v_batch, p_now - coalesce(p_grace, '0'))
                WHEN 3 THEN jobq._prune_jobs(p_now, v_batch)
                ELSE jobq._prune_events(p_now, v_batch)
            END;
            v_counts[v_step] := v_counts[v_step] + v_n;
            EXIT WHEN v_n < v_batch;
        END LOOP;
    END LOOP;
    IF NOT v_behind THEN
        DELETE FROM jobq.seen_workers w WHERE w.last_seen < p_now - interval '1 day';
        GET DIAGNOSTICS v_workers = ROW_COUNT;
    END IF;
    v_summary := jsonb_build_object(
        'reaped_leases', v_counts[1], 'expired_jobs', v_counts[2], 'pruned_jobs', v_counts[3],
        'pruned_events', v_counts[4], 'forgotten_workers', v_workers, 'complete', NOT v_behind,
        'ms', round(extract(epoch FROM clock_timestamp() - v_started)::numeric * 1000, 1));
    UPDATE jobq.maintenance m
    SET last_run_at = p_now, last_summary = v_summary, behind = v_behind;
    RETURN v_summary;
END;
$$;

-- All of maintenance, now, until done (for cron, when jobq is not preloaded,
-- or for an operator): see _maintain. Returns the summary, e.g.
-- {"reaped_leases": 0, "expired_jobs": 2, "pruned_jobs": 5120, ...}.
CREATE FUNCTION jobq.jq_maintain()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    RETURN jobq._maintain(clock_timestamp(), NULL, NULL);
END;
$$;
COMMENT ON FUNCTION jobq.jq_maintain IS
    'Reap expired leases, expire overdue jobs, prune jobs and events past retention; returns a summary.';

-- Called by every scanning tick of the wake-up worker (_wakeup_tick): runs
-- maintenance when jobq.maintenance.every has passed since the last run, or
-- after a second when the last run stopped at its budget with work left. The
-- tick's notifications wait for it, so a run is bounded by budget. Leases and
-- deadlines are only ended once they passed 5 seconds ago: a grab ends them
-- at once anyway, and the background pass is for idle queues. A failure is
-- logged and recorded, never raised: it must not stop the wake-up worker.
CREATE FUNCTION jobq._maintain_if_due(p_now timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_m jobq.maintenance;
    v_next timestamptz;
BEGIN
    -- Everything inside the handler: an error here would end the tick's
    -- transaction, and with it the wake-up worker.
    BEGIN
        SELECT * INTO v_m FROM jobq.maintenance m;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        v_next := v_m.last_run_at + CASE WHEN v_m.behind THEN interval '1 second' ELSE v_m.every END;
        IF p_now < v_next THEN
            RETURN;
        END IF;
        PERFORM jobq._maintain(p_now, v_m.budget, interval '5 seconds');
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'jobq: maintenance failed: %', SQLERRM;
        UPDATE jobq.maintenance m
        SET last_run_at = p_now, behind = false,
            last_summary = jsonb_build_object('error', SQLERRM, 'sqlstate', SQLSTATE);
    END;
END;
$$;

-- ---------------------------------------------------------------------------
-- Operators' views (jobq_observer, jobq_admin). They read the tables as their
-- owner, so observers need no table privileges; none shows args or results.
-- ---------------------------------------------------------------------------

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
FROM jobq.jobs j
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
LEFT JOIN (SELECT j.worker, count(*) AS running FROM jobq.jobs j
           WHERE j.state = 'running' GROUP BY j.worker) r ON r.worker = w.worker
ORDER BY w.last_seen DESC, w.worker;
COMMENT ON VIEW jobq.workers IS 'Workers seen recently (by their grabs) and the jobs they hold.';
