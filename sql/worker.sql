-- ============================================================================
-- jobq: worker API
--
-- Every call about a grabbed job presents the lease_token its grab returned.
-- The update that acts on the job matches on (id, lease_token, running, lease
-- not yet run out by the database clock); when it matches nothing,
-- _lease_rejected says why (JQ001 lease lost, JQ002 no such job) and nothing
-- has changed. A worker whose lease ran out can therefore never finish a job,
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

    RETURN QUERY
    WITH picked AS (
        SELECT j.id FROM jobq.jobs j
        WHERE j.state = 'waiting' AND j.run_at <= v_now
          AND (j.expires_at IS NULL OR j.expires_at > v_now)
          AND (jq_grab.job_types IS NULL OR j.job_type = ANY (jq_grab.job_types))
          AND (jq_grab.queues IS NULL OR j.queue = ANY (jq_grab.queues))
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
    SET state = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'waiting' END,
        run_at = CASE WHEN j.attempts >= j.max_attempts THEN j.run_at
                      ELSE v_now + coalesce(jq_temp_fail.retry_in, jobq._backoff(j.job_type, j.attempts))
                 END,
        finished_at = CASE WHEN j.attempts >= j.max_attempts THEN v_now END,
        failures = j.failures || jobq._failure(j.attempts, 'temp_fail', jq_temp_fail.message, j.worker, v_now),
        lease_token = NULL, locked_until = NULL
    WHERE j.id = jq_temp_fail.id AND j.lease_token = jq_temp_fail.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp()
    RETURNING j.state, CASE WHEN j.state = 'waiting' THEN j.run_at END;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_temp_fail.id, jq_temp_fail.lease_token, v_now);
    END IF;
END;
$$;
COMMENT ON FUNCTION jobq.jq_temp_fail IS 'Fail this attempt; retry later or fail when attempts are used up.';

-- Fails the job for good, whatever attempts remain.
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
    SET state = 'failed', finished_at = v_now,
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
BEGIN
    PERFORM jobq._validate_specs(v_specs, 'new_jobs', v_now);
    -- End the job before inserting: a replacement with the job's own
    -- (job_type, unique_key) must become a new job, and while the old one is
    -- still running the unique key would resolve to the old job itself.
    UPDATE jobq.jobs j
    SET state = 'replaced', finished_at = v_now, lease_token = NULL, locked_until = NULL
    WHERE j.id = jq_replace.id AND j.lease_token = jq_replace.lease_token
      AND j.state = 'running' AND j.locked_until > clock_timestamp();
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_replace.id, jq_replace.lease_token, v_now);
    END IF;
    v_ids := ARRAY(SELECT new_id FROM jobq._insert_specs(v_specs, v_now) AS new_id);
    UPDATE jobq.jobs j SET replaced_by = v_ids WHERE j.id = jq_replace.id;
    RETURN v_ids;
END;
$$;
COMMENT ON FUNCTION jobq.jq_replace IS 'Atomically end a leased job and insert its replacement jobs.';

-- Heartbeat: the lease now runs until the database clock's now + lease.
-- Returns the new locked_until.
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
    RETURNING j.locked_until INTO v_until;
    IF NOT FOUND THEN
        PERFORM jobq._lease_rejected(jq_extend.id, jq_extend.lease_token, v_now);
    END IF;
    RETURN v_until;
END;
$$;
COMMENT ON FUNCTION jobq.jq_extend IS 'Extend the lease of a running job (heartbeat).';
