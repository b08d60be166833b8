-- ============================================================================
-- jobq: worker API
--
-- Every call about a grabbed job presents the lease_token its grab returned.
-- The update that acts on the job matches on (id, lease_token, running, lease
-- not yet run out by the database clock); when it matches nothing,
-- _lease_rejected says why (JQ001 lease lost, JQ002 no such job, JQ004
-- cancellation requested, for the calls that refuse to go on then) and
-- nothing has changed. A worker whose lease ran out can therefore never finish a job,
-- even before anyone else has grabbed it. The fence reads clock_timestamp()
-- itself rather than the call's start time: if the update waits on a row lock,
-- the recheck after the wait uses the time the lock was obtained.
--
-- Parameter names follow SPEC.md, so they coincide with column names;
-- "#variable_conflict use_column" makes bare names mean columns and every
-- parameter is written qualified (jq_grab.lease).
-- ============================================================================

-- Leases up to max_jobs due jobs, ordered by priority, run_at, id. NULL
-- job_types or queues means any; search keeps only jobs whose args contain it.
-- Each returned job carries the lease_token that later calls must present.
--
-- Paused queues (jobq.queues) are skipped. A type with max_running (in
-- jobq.job_types) is taken only up to its free capacity. SKIP LOCKED alone
-- would let two grabbers both see the last free slot, so the capacity check
-- of a limited type runs under a transaction-level advisory lock on that type,
-- held until the grab commits, when its new running jobs become visible to
-- the next check. A grabber that finds the lock taken skips the type for this
-- call instead of waiting (grabbers never wait for each other); the holder is
-- taking the free slots anyway. Types without a limit take no lock and no
-- count, and blocked jobs are in no index a grab reads.
--
-- durable => false makes the caller's transaction commit without waiting for
-- the WAL to reach disk (synchronous_commit = off for the rest of the
-- transaction), which takes a disk flush off the time from enqueue to a
-- handler's start. A crash can then undo the grab: the job is waiting again,
-- the worker's later calls fail with JQ001, and the job runs again, as after
-- any lost lease. Event readers never see such a grab before it is on disk
-- (jq_events_since flushes first). Only for transactions that hold nothing
-- else worth an fsync: the worker runtime grabs this way, in a transaction of
-- its own.
CREATE FUNCTION jobq.jq_grab(
    job_types text[]   DEFAULT NULL,
    lease     interval DEFAULT '5 minutes',
    max_jobs  integer  DEFAULT 1,
    worker    text     DEFAULT NULL,
    search    jsonb    DEFAULT NULL,
    queues    text[]   DEFAULT NULL,
    durable   boolean  DEFAULT true)
RETURNS TABLE (id bigint, job_type text, queue text, args jsonb, priority integer,
               attempt integer, max_attempts integer, lease_token uuid,
               locked_until timestamptz, run_at timestamptz, created_at timestamptz)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_lease constant interval := jobq._check_interval(
        'lease', coalesce(jq_grab.lease, '5 minutes'), '0', '1 day', false);
    v_max_jobs constant integer := coalesce(jq_grab.max_jobs, 1);
    v_queues text[] := jq_grab.queues;
    v_paused text[];
    -- The limited types this grab could take, and their limits (same order).
    v_limited text[];
    v_limits integer[];
    -- Those whose lock this grab holds and that have free slots.
    v_open_types text[] := '{}';
    v_open_slots integer[] := '{}';
    -- Whether any type has a limit, and whether any type the grab asks for has none.
    v_any_limited boolean;
    v_unlimited boolean;
    v_running integer;
    v_reap boolean;
    v_expire boolean;
BEGIN
    IF v_max_jobs NOT BETWEEN 1 AND 10000 THEN
        PERFORM jobq._raise('JQ010', 'max_jobs must be between 1 and 10000; got ' || v_max_jobs);
    END IF;
    IF length(jq_grab.worker) > 256 THEN
        PERFORM jobq._raise('JQ010', 'worker must be at most 256 characters');
    END IF;
    IF jsonb_typeof(jq_grab.search) <> 'object' THEN
        PERFORM jobq._raise('JQ010', 'search must be a JSON object, not ' || jsonb_typeof(jq_grab.search));
    END IF;
    IF NOT coalesce(jq_grab.durable, true) THEN
        -- The caller's transaction commits without waiting for its WAL flush.
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;

    -- Leases that ran out and deadlines that passed, ended before the pick.
    -- Both are rare, so one statement probes for both and the functions run
    -- only when there is something to end (each call costs more than the probe).
    SELECT coalesce((SELECT d.deadline <= v_now FROM jobq.lease_deadlines d
                     ORDER BY d.deadline LIMIT 1), false),
           EXISTS (SELECT 1 FROM jobq.live_jobs j
                   WHERE j.expires_at IS NOT NULL AND j.expires_at <= v_now
                     AND j.state IN ('waiting', 'blocked'))
    INTO v_reap, v_expire;
    IF v_reap THEN
        PERFORM jobq._reap_expired_leases(v_now, 100);
    END IF;
    IF v_expire THEN
        PERFORM jobq._expire_jobs(v_now, 100);
    END IF;
    -- Starts this database's wake-up worker after a server restart; a
    -- shared-memory lookup when it already runs.
    PERFORM jobq._ensure_wakeup_worker();
    -- Records the worker for jobq.workers, at most once a second per session:
    -- the session remembers its last write (see _worker_seen), and this check
    -- is done here to save most grabs a function call.
    IF jq_grab.worker IS NOT NULL
       AND current_setting('jobq_session.worker_seen', true) IS DISTINCT FROM
           (floor(extract(epoch FROM v_now))::bigint || ' ' || jq_grab.worker) THEN
        PERFORM jobq._worker_seen(jq_grab.worker, jq_grab.job_types, jq_grab.queues, v_now);
    END IF;

    -- The two small control tables, in one statement that answers cheaply
    -- (a few microseconds when nothing is paused or limited).
    SELECT (SELECT array_agg(q.queue) FROM jobq.queues q WHERE q.paused),
           EXISTS (SELECT 1 FROM jobq.job_types t WHERE t.max_running IS NOT NULL)
    INTO v_paused, v_any_limited;
    IF v_any_limited THEN
        SELECT array_agg(t.job_type ORDER BY t.job_type), array_agg(t.max_running ORDER BY t.job_type)
        INTO v_limited, v_limits
        FROM jobq.job_types t
        WHERE t.max_running IS NOT NULL
          AND (jq_grab.job_types IS NULL OR t.job_type = ANY (jq_grab.job_types));
    END IF;

    IF v_paused IS NOT NULL AND v_queues IS NOT NULL THEN
        -- Named queues: drop the paused ones here, so the scan needs no filter.
        v_queues := ARRAY(SELECT q FROM unnest(v_queues) AS q WHERE q <> ALL (v_paused));
        v_paused := NULL;
        IF cardinality(v_queues) = 0 THEN
            RETURN;
        END IF;
    END IF;

    IF v_limited IS NULL THEN
        -- No limited type involved: the plain grab. It is a statement of its
        -- own because the limited form below costs about 100 µs more per call
        -- (planning and starting its larger plan), which unlimited types must
        -- not pay.
        RETURN QUERY
        WITH picked AS (
            SELECT j.id FROM jobq.live_jobs j
            WHERE j.state = 'waiting' AND j.pending_parents = 0 AND j.run_at <= v_now
              AND (j.expires_at IS NULL OR j.expires_at > v_now)
              AND (jq_grab.job_types IS NULL OR j.job_type = ANY (jq_grab.job_types))
              AND (v_queues IS NULL OR j.queue = ANY (v_queues))
              AND (v_paused IS NULL OR j.queue <> ALL (v_paused))
              AND (jq_grab.search IS NULL OR j.args @> jq_grab.search)
            ORDER BY j.priority, j.run_at, j.id
            LIMIT v_max_jobs
            FOR UPDATE SKIP LOCKED
        ), leased AS (
            UPDATE jobq.live_jobs j
            SET state = 'running', attempts = j.attempts + 1,
                lease_token = gen_random_uuid(), locked_until = v_now + v_lease,
                worker = jq_grab.worker, started_at = coalesce(j.started_at, v_now),
                attempted_at = v_now, event_xid = greatest((SELECT jobq._event_key()), j.event_xid)
            FROM picked
            WHERE j.id = picked.id
            RETURNING j.*
        ), deadline AS (
            INSERT INTO jobq.lease_deadlines (deadline, job_ids)
            SELECT v_now + v_lease, array_agg(l.id) FROM leased l HAVING count(*) > 0
        ), recorded AS (
            SELECT jobq._emit('grabbed', 'waiting', array_agg(l.id ORDER BY l.id),
                              array_fill('running'::text, ARRAY[count(*)::integer]),
                              array_agg(l.job_type ORDER BY l.id), array_agg(l.queue ORDER BY l.id),
                              array_agg(l.attempts ORDER BY l.id), array_agg(l.worker ORDER BY l.id),
                              array_agg(l.event_xid ORDER BY l.id)) AS n
            FROM leased l
        )
        SELECT l.id, l.job_type, l.queue, l.args, l.priority::integer, l.attempts, l.max_attempts,
               l.lease_token, l.locked_until, l.run_at, l.created_at
        FROM leased l, recorded
        ORDER BY l.priority, l.run_at, l.id;
        RETURN;
    END IF;

    -- Under REPEATABLE READ the count would come from the transaction's
    -- snapshot and miss jobs that others grabbed since: the limit would not hold.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        PERFORM jobq._raise('JQ010',
            'jq_grab of a job type with max_running must run in a READ COMMITTED transaction',
            format('Limited types asked for: %s.', array_to_string(v_limited, ', ')));
    END IF;
    v_unlimited := jq_grab.job_types IS NULL
                   OR EXISTS (SELECT 1 FROM unnest(jq_grab.job_types) AS t WHERE t <> ALL (v_limited));
    FOR i IN 1 .. cardinality(v_limited) LOOP
        -- Keyed by the type's name ('jobq' in ASCII as the first key); a
        -- hash collision only makes two types share a lock.
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(1785684593, hashtext(v_limited[i]));
        -- Grabs of limited types mark their jobs with running_type, which
        -- has an index of its own (unlimited types never set it).
        SELECT count(*) INTO v_running FROM jobq.live_jobs j
        WHERE j.running_type = v_limited[i];
        IF v_running < v_limits[i] THEN
            v_open_types := v_open_types || v_limited[i];
            v_open_slots := v_open_slots || least(v_limits[i] - v_running, v_max_jobs);
        END IF;
    END LOOP;

    RETURN QUERY
    WITH unlimited AS (
        -- v_unlimited is a constant of the statement: when false, the scan
        -- does not run at all.
        SELECT j.id, j.priority, j.run_at FROM jobq.live_jobs j
        WHERE v_unlimited
          AND j.state = 'waiting' AND j.pending_parents = 0 AND j.run_at <= v_now
          AND (j.expires_at IS NULL OR j.expires_at > v_now)
          AND (jq_grab.job_types IS NULL OR j.job_type = ANY (jq_grab.job_types))
          AND j.job_type <> ALL (v_limited)
          AND (v_queues IS NULL OR j.queue = ANY (v_queues))
          AND (v_paused IS NULL OR j.queue <> ALL (v_paused))
          AND (jq_grab.search IS NULL OR j.args @> jq_grab.search)
        ORDER BY j.priority, j.run_at, j.id
        LIMIT v_max_jobs
        FOR UPDATE SKIP LOCKED
    ), limited AS (
        -- At most the free slots of each limited type whose lock this grab holds.
        SELECT l.id, l.priority, l.run_at
        FROM unnest(v_open_types, v_open_slots) AS o(job_type, slots)
        CROSS JOIN LATERAL (
            SELECT j.id, j.priority, j.run_at FROM jobq.live_jobs j
            WHERE j.state = 'waiting' AND j.pending_parents = 0 AND j.run_at <= v_now
              AND (j.expires_at IS NULL OR j.expires_at > v_now)
              AND j.job_type = o.job_type
              AND (v_queues IS NULL OR j.queue = ANY (v_queues))
              AND (v_paused IS NULL OR j.queue <> ALL (v_paused))
              AND (jq_grab.search IS NULL OR j.args @> jq_grab.search)
            ORDER BY j.priority, j.run_at, j.id
            LIMIT o.slots
            FOR UPDATE SKIP LOCKED
        ) l
    ), picked AS (
        SELECT c.id FROM (SELECT * FROM unlimited UNION ALL SELECT * FROM limited) c
        ORDER BY c.priority, c.run_at, c.id
        LIMIT v_max_jobs
    ), leased AS (
        UPDATE jobq.live_jobs j
        SET state = 'running', attempts = j.attempts + 1,
            lease_token = gen_random_uuid(), locked_until = v_now + v_lease,
            worker = jq_grab.worker, started_at = coalesce(j.started_at, v_now),
            attempted_at = v_now, event_xid = greatest((SELECT jobq._event_key()), j.event_xid),
            running_type = CASE WHEN j.job_type = ANY (v_limited) THEN j.job_type END
        FROM picked
        WHERE j.id = picked.id
        RETURNING j.*
    ), deadline AS (
        INSERT INTO jobq.lease_deadlines (deadline, job_ids)
        SELECT v_now + v_lease, array_agg(l.id) FROM leased l HAVING count(*) > 0
    ), recorded AS (
        SELECT jobq._emit('grabbed', 'waiting', array_agg(l.id ORDER BY l.id),
                          array_fill('running'::text, ARRAY[count(*)::integer]),
                          array_agg(l.job_type ORDER BY l.id), array_agg(l.queue ORDER BY l.id),
                          array_agg(l.attempts ORDER BY l.id), array_agg(l.worker ORDER BY l.id),
                          array_agg(l.event_xid ORDER BY l.id)) AS n
        FROM leased l
    )
    SELECT l.id, l.job_type, l.queue, l.args, l.priority::integer, l.attempts, l.max_attempts,
           l.lease_token, l.locked_until, l.run_at, l.created_at
    FROM leased l, recorded
    ORDER BY l.priority, l.run_at, l.id;
END;
$$;
COMMENT ON FUNCTION jobq.jq_grab IS 'Lease up to max_jobs due jobs; returns them with their lease tokens.';


-- Finishes a job successfully, keeping the optional result: the job moves to
-- jobq.job_history in one statement with its 'completed' event.
CREATE FUNCTION jobq.jq_complete(id bigint, lease_token uuid, result jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_done integer;
BEGIN
    IF pg_column_size(jq_complete.result) > 1048576 THEN
        PERFORM jobq._raise('JQ011', 'result is ' || pg_column_size(jq_complete.result)
                                     || ' bytes; the limit is 1048576');
    END IF;
    SELECT count(*) INTO v_done FROM jobq._finish_running(
        ARRAY[jq_complete.id], ARRAY[jq_complete.lease_token], ARRAY[jq_complete.result], v_now);
    IF v_done = 0 THEN
        PERFORM jobq._lease_rejected(jq_complete.id, jq_complete.lease_token, v_now);
    END IF;
END;
$$;
COMMENT ON FUNCTION jobq.jq_complete IS 'Finish a leased job successfully.';

-- Batch form of jq_complete for the hot path: one statement for many jobs.
-- Never raises for a lost lease; it reports an outcome per job instead:
-- 'completed', 'lease_lost' or 'not_found'. results may be NULL or shorter.
CREATE FUNCTION jobq.jq_complete_many(ids bigint[], lease_tokens uuid[], results jsonb[] DEFAULT NULL)
RETURNS TABLE (id bigint, outcome text)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
BEGIN
    IF cardinality(jq_complete_many.ids) IS DISTINCT FROM cardinality(jq_complete_many.lease_tokens)
       OR cardinality(jq_complete_many.results) > cardinality(jq_complete_many.ids) THEN
        PERFORM jobq._raise('JQ010', 'ids and lease_tokens must have the same length, and results no more');
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(jq_complete_many.results) AS r WHERE pg_column_size(r) > 1048576) THEN
        PERFORM jobq._raise('JQ011', 'a result is larger than the limit of 1048576 bytes');
    END IF;

    RETURN QUERY
    WITH done AS MATERIALIZED (
        SELECT f.ord FROM jobq._finish_running(jq_complete_many.ids, jq_complete_many.lease_tokens,
                                               jq_complete_many.results, v_now) AS f
    )
    SELECT u.id,
           CASE WHEN done.ord IS NOT NULL THEN 'completed'
                WHEN EXISTS (SELECT 1 FROM jobq.jobs j WHERE j.id = u.id) THEN 'lease_lost'
                ELSE 'not_found' END
    FROM unnest(jq_complete_many.ids) WITH ORDINALITY AS u(id, ord)
    LEFT JOIN done ON done.ord = u.ord
    ORDER BY u.ord;
END;
$$;
COMMENT ON FUNCTION jobq.jq_complete_many IS 'Complete many leased jobs; one outcome per job.';

-- The completion itself, shared by jq_complete and jq_complete_many: moves
-- every job whose lease (id, token) is still good to the history as
-- completed, with its result and its event, in one statement. Returns the
-- input positions (1-based) that completed; when an id is given twice, only
-- one of its positions completes it.
CREATE FUNCTION jobq._finish_running(p_ids bigint[], p_tokens uuid[], p_results jsonb[],
                                     p_now timestamptz)
RETURNS TABLE (ord bigint)
-- PL/pgSQL rather than SQL only because PostgreSQL 15 plans the body of a SQL
-- function at every call, and planning this statement (a partitioned insert
-- among others) took longer than running it for 10 jobs.
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH input AS (
        SELECT u.id, u.token, u.result, u.ord
        FROM unnest(p_ids, p_tokens, coalesce(p_results, '{}'))
                 WITH ORDINALITY AS u(id, token, result, ord)
        WHERE u.ord <= cardinality(p_ids)
    ), gone AS (
        -- A job holds a lease token exactly while it is running (the table's
        -- lease check), so the fence needs no state = 'running'. Leaving it
        -- out keeps the planner from driving this join from the partial
        -- lease index, whose statistics are often stale when a batch was
        -- just grabbed: that plan rescans the input per running job, which
        -- is quadratic in the batch size.
        DELETE FROM jobq.live_jobs j
        USING input
        WHERE j.id = input.id AND j.lease_token = input.token
          AND j.locked_until > clock_timestamp()
        RETURNING j.*, input.result AS new_result, input.ord AS input_ord
    ), moved AS (
        INSERT INTO jobq.job_history (id, job_type, queue, state, priority, attempts, max_attempts,
            run_at, created_at, expires_at, started_at, attempted_at, finished_at, worker,
            unique_key, args, result, failures, replaced_by, notes, cancel_requested_at,
            depends_on, run_anyway, has_dependants, event_xid)
        SELECT g.id, g.job_type, g.queue, 'completed', g.priority, g.attempts, g.max_attempts,
               g.run_at, g.created_at, g.expires_at, g.started_at, g.attempted_at, p_now, g.worker,
               g.unique_key, g.args, g.new_result, g.failures, NULL, g.notes,
               g.cancel_requested_at, g.depends_on, g.run_anyway, g.has_dependants,
               greatest((SELECT jobq._event_key()), g.event_xid)
        FROM gone g
        RETURNING id, job_type, queue, attempts, worker, event_xid
    ), recorded AS (
        SELECT jobq._emit('completed', 'running', array_agg(m.id ORDER BY m.id),
                          array_fill('completed'::text, ARRAY[count(*)::integer]),
                          array_agg(m.job_type ORDER BY m.id), array_agg(m.queue ORDER BY m.id),
                          array_agg(m.attempts ORDER BY m.id), array_agg(m.worker ORDER BY m.id),
                          array_agg(m.event_xid ORDER BY m.id)) AS n
        FROM moved m
    )
    SELECT g.input_ord FROM gone g, recorded;
END;
$$;

-- Moves one live job, already locked by the caller's statement, to the
-- history in a final state, with a failure appended when p_failure is given,
-- and records its event. Returns false when the job was not there. For the rarer finishing paths (failures,
-- cancellation, release); completions use _finish_running.
CREATE FUNCTION jobq._finish_one(p_id bigint, p_state text, p_now timestamptz, p_event text,
                                 p_failure jsonb DEFAULT NULL, p_replaced_by bigint[] DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_row record;
BEGIN
    WITH gone AS (
        DELETE FROM jobq.live_jobs j WHERE j.id = p_id RETURNING j.*
    ), moved AS (
        INSERT INTO jobq.job_history (id, job_type, queue, state, priority, attempts, max_attempts,
            run_at, created_at, expires_at, started_at, attempted_at, finished_at, worker,
            unique_key, args, result, failures, replaced_by, notes, cancel_requested_at,
            depends_on, run_anyway, has_dependants, event_xid)
        SELECT g.id, g.job_type, g.queue, p_state, g.priority, g.attempts, g.max_attempts,
               g.run_at, g.created_at, g.expires_at, g.started_at, g.attempted_at, p_now, g.worker,
               g.unique_key, g.args, NULL,
               CASE WHEN p_failure IS NULL THEN g.failures ELSE g.failures || p_failure END,
               p_replaced_by, g.notes, g.cancel_requested_at, g.depends_on, g.run_anyway,
               g.has_dependants, greatest((SELECT jobq._event_key()), g.event_xid)
        FROM gone g
        RETURNING id, job_type, queue, attempts, worker, event_xid
    )
    SELECT m.id, m.job_type, m.queue, m.attempts, m.worker, m.event_xid, g.state AS from_state
    INTO v_row
    FROM moved m, gone g;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM jobq._emit(p_event, v_row.from_state, ARRAY[v_row.id], ARRAY[p_state],
                       ARRAY[v_row.job_type], ARRAY[v_row.queue], ARRAY[v_row.attempts],
                       ARRAY[CASE WHEN v_row.from_state = 'running' THEN v_row.worker END],
                       ARRAY[v_row.event_xid], ARRAY[p_failure ->> 'message']);
    RETURN true;
END;
$$;

-- Records the event of an update that kept a job live: p_event from p_from to
-- the row's current state, with an optional message.
CREATE FUNCTION jobq._emit_live(p_id bigint, p_event text, p_from text, p_message text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT jobq._emit(p_event, p_from, ARRAY[j.id], ARRAY[j.state], ARRAY[j.job_type],
                      ARRAY[j.queue], ARRAY[j.attempts],
                      ARRAY[CASE WHEN 'running' IN (p_from, j.state) THEN j.worker END],
                      ARRAY[j.event_xid], ARRAY[p_message])
    FROM jobq.live_jobs j WHERE j.id = p_id
$$;

-- Fails this attempt. The job waits again until now + retry_in (or the job
-- type's backoff when retry_in is NULL), or fails for good when its attempts
-- are used up. Returns the job's new state and, when waiting, when it is due.
-- After jq_cancel asked for cancellation, the job ends 'cancelled' instead:
-- a worker that stops because of the request reports it as a failure.
CREATE FUNCTION jobq.jq_temp_fail(id bigint, lease_token uuid, message text DEFAULT NULL,
                                  retry_in interval DEFAULT NULL)
RETURNS TABLE (state text, run_at timestamptz)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_job record;
    v_state text;
    v_run_at timestamptz;
BEGIN
    IF jq_temp_fail.retry_in IS NOT NULL THEN
        PERFORM jobq._check_interval('retry_in', jq_temp_fail.retry_in, '0', '365 days');
    END IF;
    -- Lock the leased row first: what happens next depends on it.
    SELECT j.attempts, j.max_attempts, j.cancel_requested_at, j.worker, j.job_type INTO v_job
    FROM jobq.live_jobs j
    WHERE j.id = jq_temp_fail.id AND j.lease_token = jq_temp_fail.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp()
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_temp_fail.id, jq_temp_fail.lease_token, v_now);
    END IF;
    IF v_job.cancel_requested_at IS NOT NULL OR v_job.attempts >= v_job.max_attempts THEN
        v_state := CASE WHEN v_job.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'failed' END;
        PERFORM jobq._finish_one(jq_temp_fail.id, v_state, v_now,
            CASE WHEN v_state = 'cancelled' THEN 'cancelled' ELSE 'temp_failed' END,
            jobq._failure(v_job.attempts, 'temp_fail', jq_temp_fail.message, v_job.worker, v_now));
        RETURN QUERY SELECT v_state, NULL::timestamptz;
        RETURN;
    END IF;
    UPDATE jobq.live_jobs j
    SET state = 'waiting',
        run_at = v_now + coalesce(jq_temp_fail.retry_in, jobq._backoff(j.job_type, j.attempts)),
        failures = j.failures || jobq._failure(j.attempts, 'temp_fail', jq_temp_fail.message, j.worker, v_now),
        lease_token = NULL, locked_until = NULL, running_type = NULL,
        event_xid = greatest((SELECT jobq._event_key()), j.event_xid)
    WHERE j.id = jq_temp_fail.id
    RETURNING j.run_at INTO v_run_at;
    PERFORM jobq._emit_live(jq_temp_fail.id, 'temp_failed', 'running', left(coalesce(jq_temp_fail.message, ''), 8192));
    PERFORM jobq._due_time_added();
    RETURN QUERY SELECT 'waiting'::text, v_run_at;
END;
$$;
COMMENT ON FUNCTION jobq.jq_temp_fail IS 'Fail this attempt; retry later or fail when attempts are used up.';

-- Fails the job for good, whatever attempts remain ('cancelled' instead when
-- cancellation was requested, as for jq_temp_fail).
CREATE FUNCTION jobq.jq_perm_fail(id bigint, lease_token uuid, message text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_job record;
BEGIN
    SELECT j.attempts, j.cancel_requested_at, j.worker INTO v_job
    FROM jobq.live_jobs j
    WHERE j.id = jq_perm_fail.id AND j.lease_token = jq_perm_fail.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp()
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_perm_fail.id, jq_perm_fail.lease_token, v_now);
    END IF;
    PERFORM jobq._finish_one(jq_perm_fail.id,
        CASE WHEN v_job.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'failed' END, v_now,
        CASE WHEN v_job.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'perm_failed' END,
        jobq._failure(v_job.attempts, 'perm_fail', jq_perm_fail.message, v_job.worker, v_now));
END;
$$;
COMMENT ON FUNCTION jobq.jq_perm_fail IS 'Fail a leased job for good.';

-- Ends the job as 'replaced' and inserts its replacements (jq_enqueue_many's
-- job objects, any types, possibly none), all in one call: if anything is
-- wrong, the old job keeps running and nothing new exists. Returns the new ids
-- in input order; they are also kept in the old job's replaced_by.
-- Jobs that depend on the replaced job now wait for all its replacements
-- instead: its work goes on in them. After jq_cancel asked for cancellation
-- it raises JQ004 and inserts nothing (the replacements would carry on the
-- cancelled work).
CREATE FUNCTION jobq.jq_replace(id bigint, lease_token uuid, new_jobs jsonb)
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_specs constant jobq.job_spec[] := jobq._specs_from_json(jq_replace.new_jobs, 'new_jobs');
    v_ids bigint[];
    v_job jobq.live_jobs;
BEGIN
    PERFORM jobq._validate_specs(v_specs, 'new_jobs', v_now);
    -- End the job before inserting: a replacement with the job's own
    -- (job_type, unique_key) must become a new job, and while the old one is
    -- still live the unique key would resolve to the old job itself. The row
    -- goes to the history once the replacements' ids are known.
    DELETE FROM jobq.live_jobs j
    WHERE j.id = jq_replace.id AND j.lease_token = jq_replace.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp()
      AND j.cancel_requested_at IS NULL
    RETURNING j.* INTO v_job;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_replace.id, jq_replace.lease_token, v_now);
    END IF;
    v_ids := ARRAY(SELECT s.id FROM jobq._insert_specs(v_specs, v_now, 'new_jobs') AS s);
    INSERT INTO jobq.job_history (id, job_type, queue, state, priority, attempts, max_attempts,
        run_at, created_at, expires_at, started_at, attempted_at, finished_at, worker,
        unique_key, args, result, failures, replaced_by, notes, cancel_requested_at,
        depends_on, run_anyway, has_dependants, event_xid)
    VALUES (v_job.id, v_job.job_type, v_job.queue, 'replaced', v_job.priority, v_job.attempts,
            v_job.max_attempts, v_job.run_at, v_job.created_at, v_job.expires_at, v_job.started_at,
            v_job.attempted_at, v_now, v_job.worker, v_job.unique_key, v_job.args, NULL,
            v_job.failures, v_ids, v_job.notes, v_job.cancel_requested_at, v_job.depends_on,
            v_job.run_anyway, v_job.has_dependants, greatest((SELECT jobq._event_key()), v_job.event_xid));
    PERFORM jobq._emit('replaced', 'running', ARRAY[v_job.id], ARRAY['replaced'], ARRAY[v_job.job_type],
                       ARRAY[v_job.queue], ARRAY[v_job.attempts], ARRAY[v_job.worker],
                       ARRAY[greatest((SELECT jobq._event_key()), v_job.event_xid)]);
    IF v_job.has_dependants THEN
        PERFORM jobq._release_dependants(jq_replace.id, 'replaced', v_ids, v_now);
    END IF;
    RETURN v_ids;
END;
$$;
COMMENT ON FUNCTION jobq.jq_replace IS 'Atomically end a leased job and insert its replacement jobs.';

-- Heartbeat: the lease now runs until the database clock's now + lease.
-- Returns the new locked_until. Once jq_cancel asked for cancellation it
-- raises JQ004 instead and leaves the lease as it is: the worker should stop
-- and report (any failure report then ends the job 'cancelled'); a job whose
-- worker ignores the request runs at most until its lease ends.
CREATE FUNCTION jobq.jq_extend(id bigint, lease_token uuid, lease interval DEFAULT '5 minutes')
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_lease constant interval := jobq._check_interval(
        'lease', coalesce(jq_extend.lease, '5 minutes'), '0', '1 day', false);
    v_until timestamptz;
BEGIN
    UPDATE jobq.live_jobs j
    SET locked_until = v_now + v_lease, event_xid = greatest((SELECT jobq._event_key()), j.event_xid)
    WHERE j.id = jq_extend.id AND j.lease_token = jq_extend.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp()
      AND j.cancel_requested_at IS NULL
    RETURNING j.locked_until INTO v_until;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_extend.id, jq_extend.lease_token, v_now);
    END IF;
    INSERT INTO jobq.lease_deadlines (deadline, job_ids) VALUES (v_until, ARRAY[jq_extend.id]);
    PERFORM jobq._emit_live(jq_extend.id, 'extended', 'running');
    RETURN v_until;
END;
$$;
COMMENT ON FUNCTION jobq.jq_extend IS 'Extend the lease of a running job (heartbeat).';

-- Batch heartbeat for the worker runtime: one statement extends every lease a
-- worker holds. Never raises for a lost lease; it reports an outcome per job
-- instead: 'extended' (with the new locked_until), 'lease_lost', 'not_found',
-- or 'cancel_requested' (jq_cancel asked the job to stop; the lease was not
-- extended and locked_until is its unchanged end, as jq_extend's JQ004).
CREATE FUNCTION jobq.jq_extend_many(ids bigint[], lease_tokens uuid[], lease interval DEFAULT '5 minutes')
RETURNS TABLE (id bigint, locked_until timestamptz, outcome text)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_lease constant interval := jobq._check_interval(
        'lease', coalesce(jq_extend_many.lease, '5 minutes'), '0', '1 day', false);
BEGIN
    IF cardinality(jq_extend_many.ids) IS DISTINCT FROM cardinality(jq_extend_many.lease_tokens) THEN
        PERFORM jobq._raise('JQ010', 'ids and lease_tokens must have the same length');
    END IF;

    RETURN QUERY
    WITH input AS (
        SELECT u.id, u.token, u.ord
        FROM unnest(jq_extend_many.ids, jq_extend_many.lease_tokens) WITH ORDINALITY AS u(id, token, ord)
    ), extended AS (
        -- No state = 'running' in the fence, as in _finish_running: the
        -- token implies it, and the join stays driven by the input.
        UPDATE jobq.live_jobs j
        SET locked_until = v_now + v_lease, event_xid = greatest((SELECT jobq._event_key()), j.event_xid)
        FROM input
        WHERE j.id = input.id AND j.lease_token = input.token
          AND j.locked_until > clock_timestamp()
          AND j.cancel_requested_at IS NULL
        -- The input element that extended the job: when an id is given twice,
        -- only one element extends it and the other reports lease_lost.
        RETURNING input.ord, j.id, j.locked_until, j.job_type, j.queue, j.attempts, j.worker,
                  j.event_xid
    ), deadline AS (
        INSERT INTO jobq.lease_deadlines (deadline, job_ids)
        SELECT v_now + v_lease, array_agg(e.id) FROM extended e HAVING count(*) > 0
    ), recorded AS (
        SELECT jobq._emit('extended', 'running', array_agg(e.id ORDER BY e.id),
                          array_fill('running'::text, ARRAY[count(*)::integer]),
                          array_agg(e.job_type ORDER BY e.id), array_agg(e.queue ORDER BY e.id),
                          array_agg(e.attempts ORDER BY e.id), array_agg(e.worker ORDER BY e.id),
                          array_agg(e.event_xid ORDER BY e.id)) AS n
        FROM extended e
    )
    SELECT input.id, coalesce(e.locked_until, c.locked_until),
           CASE WHEN e.ord IS NOT NULL THEN 'extended'
                WHEN c.locked_until IS NOT NULL THEN 'cancel_requested'
                WHEN EXISTS (SELECT 1 FROM jobq.jobs j WHERE j.id = input.id) THEN 'lease_lost'
                ELSE 'not_found' END
    FROM input LEFT JOIN extended e ON e.ord = input.ord
    -- A lease this worker still holds on a job asked to stop.
    LEFT JOIN LATERAL (
        SELECT j.locked_until FROM jobq.live_jobs j
        WHERE e.ord IS NULL AND j.id = input.id AND j.lease_token = input.token
          AND j.state = 'running' AND j.locked_until > clock_timestamp()
          AND j.cancel_requested_at IS NOT NULL
    ) c ON true
    CROSS JOIN recorded
    ORDER BY input.ord;
END;
$$;
COMMENT ON FUNCTION jobq.jq_extend_many IS 'Extend the leases of many running jobs; one outcome per job.';

-- Hands a running job back untouched, for a worker that leased it but never
-- started it (prefetched, then shut down): the job waits again, due at once,
-- and the attempt that the grab counted is taken back. Nothing is added to
-- the failure history, because nothing failed. Returns 'released',
-- 'lease_lost' or 'not_found' per job and never raises for a lost lease.
-- A job whose cancellation was requested ends 'cancelled' instead of waiting.
CREATE FUNCTION jobq.jq_release_many(ids bigint[], lease_tokens uuid[])
RETURNS TABLE (id bigint, outcome text)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_done bigint[] := '{}';
    r record;
BEGIN
    IF cardinality(jq_release_many.ids) IS DISTINCT FROM cardinality(jq_release_many.lease_tokens) THEN
        PERFORM jobq._raise('JQ010', 'ids and lease_tokens must have the same length');
    END IF;

    -- Locks every lease still held; when an id is given twice, only its first
    -- element releases it and the other reports lease_lost.
    FOR r IN
        SELECT DISTINCT ON (l.id) l.id, l.ord, l.cancelled
        FROM (SELECT j.id, u.ord, j.cancel_requested_at IS NOT NULL AS cancelled
              FROM unnest(jq_release_many.ids, jq_release_many.lease_tokens)
                       WITH ORDINALITY AS u(id, token, ord)
              JOIN jobq.live_jobs j ON j.id = u.id AND j.lease_token = u.token
              WHERE j.locked_until > clock_timestamp()
              FOR NO KEY UPDATE OF j) l
        ORDER BY l.id, l.ord
    LOOP
        IF r.cancelled THEN
            PERFORM jobq._finish_one(r.id, 'cancelled', v_now, 'cancelled');
        ELSE
            UPDATE jobq.live_jobs j
            SET state = 'waiting', run_at = v_now, attempts = j.attempts - 1,
                -- started_at means "first grab": a job released from its first
                -- grab has not started yet.
                started_at = CASE WHEN j.attempts > 1 THEN j.started_at END,
                lease_token = NULL, locked_until = NULL, running_type = NULL,
                event_xid = greatest((SELECT jobq._event_key()), j.event_xid)
            WHERE j.id = r.id;
            PERFORM jobq._emit_live(r.id, 'released', 'running');
        END IF;
        v_done := v_done || r.ord;
    END LOOP;

    RETURN QUERY
    SELECT u.id,
           CASE WHEN u.ord = ANY (v_done) THEN 'released'
                WHEN EXISTS (SELECT 1 FROM jobq.jobs j WHERE j.id = u.id) THEN 'lease_lost'
                ELSE 'not_found' END
    FROM unnest(jq_release_many.ids) WITH ORDINALITY AS u(id, ord)
    ORDER BY u.ord;
    -- Other workers may take the jobs at once: tell them, as an enqueue would.
    PERFORM jobq._wake('jobq_wakeup', jobq._wakeup_payload(d.queue, d.job_type))
    FROM (SELECT DISTINCT j.queue, j.job_type FROM jobq.live_jobs j
          WHERE j.id = ANY (jq_release_many.ids) AND j.state = 'waiting' AND j.run_at = v_now) d;
END;
$$;
COMMENT ON FUNCTION jobq.jq_release_many IS
    'Hand back many leased jobs that never started: due at once, attempt not counted.';

-- Single-job form of jq_release_many; raises JQ001 / JQ002 like the other
-- lease calls.
CREATE FUNCTION jobq.jq_release(id bigint, lease_token uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_outcome text;
BEGIN
    SELECT r.outcome INTO v_outcome
    FROM jobq.jq_release_many(ARRAY[jq_release.id], ARRAY[jq_release.lease_token]) AS r;
    IF v_outcome <> 'released' THEN
        PERFORM jobq._lease_rejected(jq_release.id, jq_release.lease_token, clock_timestamp());
    END IF;
END;
$$;
COMMENT ON FUNCTION jobq.jq_release IS 'Hand back a leased job that never started: due at once, attempt not counted.';
