-- ============================================================================
-- jobq: maintenance
--
-- Ends leases that ran out and jobs whose deadline passed, keeps the history's
-- partitions (sql/history.sql), prunes events past their retention, and
-- forgets workers not seen for a day. The wake-up worker runs it on its own;
-- without it, schedule jq_maintain() (README, "Maintenance").
-- ============================================================================

-- One maintenance run: ends leases that ran out and jobs whose deadline
-- passed (both at least p_grace ago), keeps the history's partitions (drops
-- old days), prunes events past their retention, and forgets workers not
-- seen for a day. Works in batches
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
    v_history jsonb;
    v_dropped integer := 0;
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
            IF v_step = 3 THEN
                v_history := jobq._manage_history(p_now, v_batch);
                v_n := (v_history ->> 'pruned_jobs')::bigint;
                v_dropped := v_dropped + (v_history ->> 'dropped')::integer;
            ELSE
                v_n := CASE v_step
                    WHEN 1 THEN jobq._reap_expired_leases(p_now, v_batch, p_now - coalesce(p_grace, '0'))
                    WHEN 2 THEN jobq._expire_jobs(p_now, v_batch, p_now - coalesce(p_grace, '0'))
                    ELSE jobq._prune_events(p_now, v_batch)
                END;
            END IF;
            v_counts[v_step] := v_counts[v_step] + v_n;
            -- Lease reaping counts ended leases, not the deadline rows it
            -- works through; event pruning counts events, which may exceed
            -- the batch of rows.
            EXIT WHEN CASE v_step
                WHEN 1 THEN NOT EXISTS (SELECT 1 FROM jobq.lease_deadlines d
                                        WHERE d.deadline <= p_now - coalesce(p_grace, '0'))
                WHEN 4 THEN v_n = 0
                ELSE v_n < v_batch END;
        END LOOP;
    END LOOP;
    IF NOT v_behind THEN
        DELETE FROM jobq.seen_workers w WHERE w.last_seen < p_now - interval '1 day';
        GET DIAGNOSTICS v_workers = ROW_COUNT;
    END IF;
    v_summary := jsonb_build_object(
        'reaped_leases', v_counts[1], 'expired_jobs', v_counts[2], 'pruned_jobs', v_counts[3],
        'dropped_partitions', v_dropped, 'pruned_events', v_counts[4], 'forgotten_workers', v_workers, 'complete', NOT v_behind,
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
    'Reap expired leases, expire overdue jobs, drop history past retention, prune events; returns a summary.';

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

