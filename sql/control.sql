-- ============================================================================
-- jobq: job control
--
-- Cancelling and retrying jobs, pausing queues, notes of running jobs, and
-- the record of workers seen. Dependencies are in dependencies.sql,
-- maintenance in maintenance.sql, the operators' views in views.sql.
-- ============================================================================

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
    v_new boolean;
BEGIN
    IF jq_cancel.id IS NULL THEN
        PERFORM jobq._raise('JQ010', 'id is required');
    END IF;
    SELECT j.state INTO v_state FROM jobq.live_jobs j WHERE j.id = jq_cancel.id FOR NO KEY UPDATE;
    IF v_state = 'running' THEN
        UPDATE jobq.live_jobs j
        SET cancel_requested_at = coalesce(j.cancel_requested_at, v_now),
            event_xid = CASE WHEN j.cancel_requested_at IS NULL
                             THEN greatest((SELECT jobq._event_key()), j.event_xid) ELSE j.event_xid END
        WHERE j.id = jq_cancel.id
        RETURNING j.cancel_requested_at = v_now INTO v_new;
        IF v_new THEN
            PERFORM jobq._emit_live(jq_cancel.id, 'cancel_requested', 'running');
        END IF;
        RETURN 'cancel_requested';
    ELSIF v_state IS NOT NULL THEN
        PERFORM jobq._finish_one(jq_cancel.id, 'cancelled', v_now, 'cancelled');
        RETURN 'cancelled';
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
    v_job jobq.job_history;
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
    -- The job's history row, locked: a concurrent retry waits here, and then
    -- finds the job gone from the history (live again) and says so below.
    SELECT * INTO v_job FROM jobq.job_history h WHERE h.id = jq_retry.id
    ORDER BY h.finished_at DESC LIMIT 1 FOR UPDATE;
    IF NOT FOUND OR NOT jobq._retained(v_job.job_type, v_job.finished_at) THEN
        SELECT j.state INTO v_state FROM jobq.live_jobs j WHERE j.id = jq_retry.id;
        IF NOT FOUND THEN
            PERFORM jobq._raise('JQ002', format('job %s does not exist', jq_retry.id));
        END IF;
        PERFORM jobq._raise('JQ003', format('job %s is %s and cannot be retried', jq_retry.id, v_state),
                            'Only failed, cancelled and expired jobs can be retried.');
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
        -- Back to the live table under the same id, in one statement.
        WITH gone AS (
            DELETE FROM jobq.job_history h WHERE h.id = jq_retry.id RETURNING h.*
        )
        INSERT INTO jobq.live_jobs (id, job_type, queue, state, priority, attempts, max_attempts,
            run_at, created_at, expires_at, started_at, attempted_at, locked_until, lease_token,
            worker, unique_key, args, failures, notes, cancel_requested_at, depends_on,
            pending_parents, run_anyway, has_dependants, event_xid)
        SELECT g.id, g.job_type, g.queue,
               CASE WHEN cardinality(g.depends_on) > 0 THEN 'blocked' ELSE 'waiting' END,
               g.priority, g.attempts, g.attempts + v_budget, v_now, g.created_at,
               CASE WHEN g.expires_at > v_now THEN g.expires_at END, g.started_at, g.attempted_at,
               NULL, NULL, g.worker, g.unique_key, g.args, g.failures, g.notes, NULL, g.depends_on,
               0, g.run_anyway, g.has_dependants, greatest((SELECT jobq._event_key()), g.event_xid)
        FROM gone g
        RETURNING state INTO v_state;
    EXCEPTION WHEN unique_violation THEN
        SELECT j.id INTO v_holder FROM jobq.live_jobs j
        WHERE j.job_type = v_job.job_type AND j.unique_key = v_job.unique_key;
        PERFORM jobq._raise('JQ003', format('job %s cannot be retried: job %s holds its unique_key',
                                            jq_retry.id, v_holder));
    END;
    PERFORM jobq._emit_live(jq_retry.id, 'retried', v_job.state);

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
    v_old jsonb;
    v_notes jsonb;
BEGIN
    IF jsonb_typeof(jq_note.note) IS DISTINCT FROM 'object' THEN
        PERFORM jobq._raise('JQ010', 'note must be a JSON object, not '
                                     || coalesce(jsonb_typeof(jq_note.note), 'NULL'));
    END IF;
    SELECT j.notes INTO v_old FROM jobq.live_jobs j
    WHERE j.id = jq_note.id AND j.lease_token = jq_note.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp()
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_note.id, jq_note.lease_token, v_now);
    END IF;
    v_notes := (coalesce(v_old, '{}') || jq_note.note)
               - ARRAY(SELECT n.key FROM jsonb_each(jq_note.note) AS n WHERE n.value = 'null');
    IF pg_column_size(v_notes) > 1048576 THEN
        PERFORM jobq._raise('JQ011', 'notes would be ' || pg_column_size(v_notes)
                                     || ' bytes; the limit is 1048576');
    END IF;
    IF v_notes IS DISTINCT FROM v_old THEN
        UPDATE jobq.live_jobs j
        SET notes = v_notes, event_xid = greatest((SELECT jobq._event_key()), j.event_xid)
        WHERE j.id = jq_note.id;
        PERFORM jobq._emit_live(jq_note.id, 'noted', 'running',
                                left(jobq._notes_change(v_old, v_notes)::text, 8192));
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

