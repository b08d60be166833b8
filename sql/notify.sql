-- ============================================================================
-- jobq: wake-ups
--
-- Channel jobq_wakeup, payload {"queue": …, "job_type": …} (never args): work
-- of that type is available in that queue. A payload of {"queue": "*",
-- "job_type": "*"} means "anything may be available" (sent when signals
-- overflowed); {"queue": <queue>, "job_type": "*"} means anything in that
-- queue (jq_resume_queue). Wake-ups only save latency: nothing depends on them for
-- correctness, and clients still poll now and then.
-- ============================================================================

CREATE FUNCTION jobq._wakeup_payload(p_queue text, p_job_type text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('queue', p_queue, 'job_type', p_job_type)::text
$$;

-- Announces freshly inserted jobs: one wake-up per (queue, job_type) among
-- those due at once; a rescan request when some are scheduled for later.
-- Called by _insert_specs, the one path every enqueue takes (a statement
-- trigger did the same at a measurable cost per enqueue).
CREATE FUNCTION jobq._announce_inserted(p_specs jobq.job_spec[], p_now timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_payload text;
BEGIN
    IF cardinality(p_specs) = 1 THEN
        -- The common single enqueue, without a scan of the array, and what
        -- jobq._wake does without its call.
        IF coalesce(p_specs[1].run_at, p_now) <= p_now THEN
            v_payload := jsonb_build_object('queue', coalesce(p_specs[1].queue, 'default'),
                                            'job_type', p_specs[1].job_type)::text;
            IF NOT jobq._defer_notify('jobq_wakeup', v_payload) THEN
                PERFORM pg_catalog.pg_notify('jobq_wakeup', v_payload);
            END IF;
        ELSE
            PERFORM jobq._due_time_added();
        END IF;
        RETURN;
    END IF;
    PERFORM jobq._wake('jobq_wakeup', jobq._wakeup_payload(d.queue, d.job_type))
    FROM (SELECT DISTINCT coalesce(u.queue, 'default') AS queue, u.job_type
          FROM unnest(p_specs) AS u WHERE coalesce(u.run_at, p_now) <= p_now) d;
    IF EXISTS (SELECT 1 FROM unnest(p_specs) AS u WHERE u.run_at > p_now) THEN
        PERFORM jobq._due_time_added();
    END IF;
END;
$$;

-- Announces jobs that fell due by time in (p_since, now]: scheduled run_at
-- and retry delays that passed, and leases that ran out. The window reaches
-- back a little before p_since because a producer may commit a job after the
-- scan that covered its run_at; an extra wake-up is harmless, a lost one only
-- costs a poll interval. Returns how long to sleep until the next due time.
CREATE FUNCTION jobq._announce_due(p_since timestamptz, p_now timestamptz)
RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_from constant timestamptz := p_since - interval '500 milliseconds';
    v_count integer;
BEGIN
    PERFORM jobq._wake('jobq_wakeup', jobq._wakeup_payload(d.queue, d.job_type))
    FROM (SELECT j.queue, j.job_type FROM jobq.live_jobs j
          WHERE j.state = 'waiting' AND j.run_at > j.created_at
            AND j.run_at > v_from AND j.run_at <= p_now
          UNION
          SELECT j.queue, j.job_type
          FROM jobq.lease_deadlines d, jobq.live_jobs j
          WHERE d.deadline > v_from AND d.deadline <= p_now
            AND j.id = ANY (d.job_ids) AND j.state = 'running' AND j.locked_until <= p_now) d;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- The scanning part of a wake-up worker tick (see extension/src/wakeup, which
-- sends the producers' signals itself, in the same transaction): announce what
-- fell due, run maintenance when it is due (jobq._maintain_if_due: at most
-- every jobq.maintenance.every, bounded by its budget) and say when to look
-- again (milliseconds, at most a second). The worker's session commits with
-- synchronous_commit = off: notifications carry nothing worth a disk flush.
CREATE FUNCTION jobq._wakeup_tick(p_since timestamptz)
RETURNS TABLE (scanned_until timestamptz, sleep_ms integer)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_next timestamptz;
BEGIN
    PERFORM jobq._announce_due(coalesce(p_since, v_now), v_now);
    PERFORM jobq._maintain_if_due(v_now);

    v_next := least(
        (SELECT min(j.run_at) FROM jobq.live_jobs j
         WHERE j.state = 'waiting' AND j.run_at > j.created_at AND j.run_at > v_now),
        (SELECT d.deadline FROM jobq.lease_deadlines d WHERE d.deadline > v_now
         ORDER BY d.deadline LIMIT 1));
    -- greatest() skips NULLs, so "nothing is due" must be handled before it.
    RETURN QUERY SELECT v_now, CASE
        WHEN v_next IS NULL THEN 1000
        ELSE least(1000, greatest(1, ceil(extract(epoch FROM v_next - clock_timestamp()) * 1000)))::integer
    END;
END;
$$;

-- Tells the wake-up worker that a new due time exists (a scheduled job or a
-- retry), so that it looks before its next planned scan. Without the worker
-- there is nobody to tell.
CREATE FUNCTION jobq._due_time_added()
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobq._defer_notify('jobq_rescan', '');
END;
$$;

-- The fallback without the wake-up worker: announce jobs that fell due in the
-- last `lookback`. Schedule it (e.g. pg_cron every few seconds) when jobq is not
-- preloaded and clients should hear about scheduled jobs without polling.
CREATE FUNCTION jobq.jq_announce_due(lookback interval DEFAULT '5 seconds')
RETURNS integer
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_now constant timestamptz := clock_timestamp();
BEGIN
    RETURN jobq._announce_due(
        v_now - jobq._check_interval('lookback', coalesce(lookback, '5 seconds'), '0', '1 day'), v_now);
END;
$$;
COMMENT ON FUNCTION jobq.jq_announce_due IS
    'Announce jobs that fell due recently (the fallback when the wake-up worker is not running).';
