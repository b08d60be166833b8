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
CREATE FUNCTION jobq.jq_grab(
    job_types text[]   DEFAULT NULL,
    lease     interval DEFAULT '5 minutes',
    max_jobs  integer  DEFAULT 1,
    worker    text     DEFAULT NULL,
    search    jsonb    DEFAULT NULL,
    queues    text[]   DEFAULT NULL)
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

    PERFORM jobq._reap_expired_leases(v_now, 100);
    PERFORM jobq._expire_jobs(v_now, 100);
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
            SELECT j.id FROM jobq.jobs j
            WHERE j.state = 'waiting' AND j.run_at <= v_now
              AND (j.expires_at IS NULL OR j.expires_at > v_now)
              AND (jq_grab.job_types IS NULL OR j.job_type = ANY (jq_grab.job_types))
              AND (v_queues IS NULL OR j.queue = ANY (v_queues))
              AND (v_paused IS NULL OR j.queue <> ALL (v_paused))
              AND (jq_grab.search IS NULL OR j.args @> jq_grab.search)
            ORDER BY j.priority, j.run_at, j.id
            LIMIT v_max_jobs
            FOR UPDATE SKIP LOCKED
        ), leased AS (
            UPDATE jobq.jobs j
            SET state = 'running', attempts = j.attempts + 1,
                lease_token = gen_random_uuid(), locked_until = v_now + v_lease,
                worker = jq_grab.worker, started_at = coalesce(j.started_at, v_now),
                attempted_at = v_now
            FROM picked
            WHERE j.id = picked.id
            RETURNING j.*
        )
        SELECT l.id, l.job_type, l.queue, l.args, l.priority::integer, l.attempts, l.max_attempts,
               l.lease_token, l.locked_until, l.run_at, l.created_at
        FROM leased l
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
        -- The lease index holds exactly the running jobs.
        SELECT count(*) INTO v_running FROM jobq.jobs j
        WHERE j.state = 'running' AND j.job_type = v_limited[i];
        IF v_running < v_limits[i] THEN
            v_open_types := v_open_types || v_limited[i];
            v_open_slots := v_open_slots || least(v_limits[i] - v_running, v_max_jobs);
        END IF;
    END LOOP;

    RETURN QUERY
    WITH unlimited AS (
        -- v_unlimited is a constant of the statement: when false, the scan
        -- does not run at all.
        SELECT j.id, j.priority, j.run_at FROM jobq.jobs j
        WHERE v_unlimited
          AND j.state = 'waiting' AND j.run_at <= v_now
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
            SELECT j.id, j.priority, j.run_at FROM jobq.jobs j
            WHERE j.state = 'waiting' AND j.run_at <= v_now
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
        UPDATE jobq.jobs j
        SET state = 'running', attempts = j.attempts + 1,
            lease_token = gen_random_uuid(), locked_until = v_now + v_lease,
            worker = jq_grab.worker, started_at = coalesce(j.started_at, v_now),
            attempted_at = v_now
        FROM picked
        WHERE j.id = picked.id
        RETURNING j.*
    )
    SELECT l.id, l.job_type, l.queue, l.args, l.priority::integer, l.attempts, l.max_attempts,
           l.lease_token, l.locked_until, l.run_at, l.created_at
    FROM leased l
    ORDER BY l.priority, l.run_at, l.id;
END;
$$;
COMMENT ON FUNCTION jobq.jq_grab IS 'Lease up to max_jobs due jobs; returns them with their lease tokens.';

-- Finishes a job successfully, keeping the optional result.
CREATE FUNCTION jobq.jq_complete(id bigint, lease_token uuid, result jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
BEGIN
    IF pg_column_size(jq_complete.result) > 1048576 THEN
        PERFORM jobq._raise('JQ011', 'result is ' || pg_column_size(jq_complete.result)
                                     || ' bytes; the limit is 1048576');
    END IF;
    UPDATE jobq.jobs j
    SET state = 'completed', result = jq_complete.result, finished_at = v_now,
        lease_token = NULL, locked_until = NULL
    WHERE j.id = jq_complete.id AND j.lease_token = jq_complete.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp();
    IF NOT FOUND THEN
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
    WITH input AS (
        SELECT u.id, u.token, u.result, u.ord
        FROM unnest(jq_complete_many.ids, jq_complete_many.lease_tokens,
                    coalesce(jq_complete_many.results, '{}')) WITH ORDINALITY AS u(id, token, result, ord)
        WHERE u.ord <= cardinality(jq_complete_many.ids)
    ), done AS (
        UPDATE jobq.jobs j
        SET state = 'completed', result = input.result, finished_at = v_now,
            lease_token = NULL, locked_until = NULL
        FROM input
        WHERE j.id = input.id AND j.lease_token = input.token
          AND j.state = 'running' AND j.locked_until > clock_timestamp()
        -- The input element that completed the job: when an id is given twice,
        -- only one element completes it and the other reports lease_lost.
        RETURNING input.ord
    )
    SELECT input.id,
           CASE WHEN done.ord IS NOT NULL THEN 'completed'
                WHEN EXISTS (SELECT 1 FROM jobq.jobs j WHERE j.id = input.id) THEN 'lease_lost'
                ELSE 'not_found' END
    FROM input LEFT JOIN done ON done.ord = input.ord
    ORDER BY input.ord;
END;
$$;
COMMENT ON FUNCTION jobq.jq_complete_many IS 'Complete many leased jobs; one outcome per job.';

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
BEGIN
    IF jq_temp_fail.retry_in IS NOT NULL THEN
        PERFORM jobq._check_interval('retry_in', jq_temp_fail.retry_in, '0', '365 days');
    END IF;
    RETURN QUERY
    UPDATE jobq.jobs j
    SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                     WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'waiting' END,
        run_at = CASE WHEN j.cancel_requested_at IS NOT NULL OR j.attempts >= j.max_attempts
                      THEN j.run_at
                      ELSE v_now + coalesce(jq_temp_fail.retry_in, jobq._backoff(j.job_type, j.attempts))
                 END,
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL OR j.attempts >= j.max_attempts
                           THEN v_now END,
        failures = j.failures || jobq._failure(j.attempts, 'temp_fail', jq_temp_fail.message, j.worker, v_now),
        lease_token = NULL, locked_until = NULL
    WHERE j.id = jq_temp_fail.id AND j.lease_token = jq_temp_fail.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp()
    RETURNING j.state, CASE WHEN j.state = 'waiting' THEN j.run_at END;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_temp_fail.id, jq_temp_fail.lease_token, v_now);
    END IF;
    PERFORM jobq._due_time_added();
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
BEGIN
    UPDATE jobq.jobs j
    SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'failed' END,
        finished_at = v_now,
        failures = j.failures || jobq._failure(j.attempts, 'perm_fail', jq_perm_fail.message, j.worker, v_now),
        lease_token = NULL, locked_until = NULL
    WHERE j.id = jq_perm_fail.id AND j.lease_token = jq_perm_fail.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp();
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_perm_fail.id, jq_perm_fail.lease_token, v_now);
    END IF;
END;
$$;
COMMENT ON FUNCTION jobq.jq_perm_fail IS 'Fail a leased job for good.';

-- Ends the job as 'replaced' and inserts its replacements (jq_enqueue_many's
-- job objects, any types, possibly none), all in one statement: if anything is
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
    v_has_dependants boolean;
BEGIN
    PERFORM jobq._validate_specs(v_specs, 'new_jobs', v_now);
    -- End the job before inserting: a replacement with the job's own
    -- (job_type, unique_key) must become a new job, and while the old one is
    -- still running the unique key would resolve to the old job itself.
    UPDATE jobq.jobs j
    SET state = 'replaced', finished_at = v_now, lease_token = NULL, locked_until = NULL
    WHERE j.id = jq_replace.id AND j.lease_token = jq_replace.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp()
      AND j.cancel_requested_at IS NULL
    RETURNING j.has_dependants INTO v_has_dependants;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_replace.id, jq_replace.lease_token, v_now);
    END IF;
    v_ids := ARRAY(SELECT s.id FROM jobq._insert_specs(v_specs, v_now, 'new_jobs') AS s);
    UPDATE jobq.jobs j SET replaced_by = v_ids WHERE j.id = jq_replace.id;
    IF v_has_dependants THEN
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
    UPDATE jobq.jobs j
    SET locked_until = v_now + v_lease
    WHERE j.id = jq_extend.id AND j.lease_token = jq_extend.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp()
      AND j.cancel_requested_at IS NULL
    RETURNING j.locked_until INTO v_until;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_extend.id, jq_extend.lease_token, v_now);
    END IF;
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
        UPDATE jobq.jobs j
        SET locked_until = v_now + v_lease
        FROM input
        WHERE j.id = input.id AND j.lease_token = input.token
          AND j.state = 'running' AND j.locked_until > clock_timestamp()
          AND j.cancel_requested_at IS NULL
        -- The input element that extended the job: when an id is given twice,
        -- only one element extends it and the other reports lease_lost.
        RETURNING input.ord, j.locked_until
    )
    SELECT input.id, coalesce(e.locked_until, c.locked_until),
           CASE WHEN e.ord IS NOT NULL THEN 'extended'
                WHEN c.locked_until IS NOT NULL THEN 'cancel_requested'
                WHEN EXISTS (SELECT 1 FROM jobq.jobs j WHERE j.id = input.id) THEN 'lease_lost'
                ELSE 'not_found' END
    FROM input LEFT JOIN extended e ON e.ord = input.ord
    -- A lease this worker still holds on a job asked to stop.
    LEFT JOIN LATERAL (
        SELECT j.locked_until FROM jobq.jobs j
        WHERE e.ord IS NULL AND j.id = input.id AND j.lease_token = input.token
          AND j.state = 'running' AND j.locked_until > clock_timestamp()
          AND j.cancel_requested_at IS NOT NULL
    ) c ON true
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
BEGIN
    IF cardinality(jq_release_many.ids) IS DISTINCT FROM cardinality(jq_release_many.lease_tokens) THEN
        PERFORM jobq._raise('JQ010', 'ids and lease_tokens must have the same length');
    END IF;

    RETURN QUERY
    WITH input AS (
        SELECT u.id, u.token, u.ord
        FROM unnest(jq_release_many.ids, jq_release_many.lease_tokens) WITH ORDINALITY AS u(id, token, ord)
    ), released AS (
        UPDATE jobq.jobs j
        SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'waiting' END,
            finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN v_now END,
            run_at = v_now, attempts = j.attempts - 1,
            -- started_at means "first grab": a job released from its first
            -- grab has not started yet.
            started_at = CASE WHEN j.attempts > 1 THEN j.started_at END,
            lease_token = NULL, locked_until = NULL
        FROM input
        WHERE j.id = input.id AND j.lease_token = input.token
          AND j.state = 'running' AND j.locked_until > clock_timestamp()
        -- The input element that released the job: when an id is given twice,
        -- only one element releases it and the other reports lease_lost.
        RETURNING input.ord
    )
    SELECT input.id,
           CASE WHEN r.ord IS NOT NULL THEN 'released'
                WHEN EXISTS (SELECT 1 FROM jobq.jobs j WHERE j.id = input.id) THEN 'lease_lost'
                ELSE 'not_found' END
    FROM input LEFT JOIN released r ON r.ord = input.ord
    ORDER BY input.ord;
    -- Other workers may take the jobs at once: tell them, as an enqueue would.
    PERFORM jobq._wake('jobq_wakeup', jobq._wakeup_payload(d.queue, d.job_type))
    FROM (SELECT DISTINCT j.queue, j.job_type FROM jobq.jobs j
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
    v_now constant timestamptz := clock_timestamp();
BEGIN
    UPDATE jobq.jobs j
    SET state = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'waiting' END,
        finished_at = CASE WHEN j.cancel_requested_at IS NOT NULL THEN v_now END,
        run_at = v_now, attempts = j.attempts - 1,
        started_at = CASE WHEN j.attempts > 1 THEN j.started_at END,
        lease_token = NULL, locked_until = NULL
    WHERE j.id = jq_release.id AND j.lease_token = jq_release.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp();
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_release.id, jq_release.lease_token, v_now);
    END IF;
    PERFORM jobq._wake('jobq_wakeup', jobq._wakeup_payload(j.queue, j.job_type))
    FROM jobq.jobs j WHERE j.id = jq_release.id AND j.state = 'waiting';
END;
$$;
COMMENT ON FUNCTION jobq.jq_release IS 'Hand back a leased job that never started: due at once, attempt not counted.';
