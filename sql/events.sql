-- ============================================================================
-- jobq: durable events
--
-- Every change of a job's state is written as a row of jobq.events in the
-- transaction that makes the change, so an event exists if and only if the
-- change committed. Subscribers LISTEN on the channel jobq_events (the payload
-- only says that new events exist) and read with jq_events_since.
--
-- Events carry no args: they are read by roles that need not see payloads
-- (jobq_observer), they outlive the job (a payload that must go when the job
-- is pruned would otherwise live on for event_retention), and copying up to
-- 1 MiB of args into every one of a job's events would multiply its size.
-- ============================================================================

-- No foreign key to jobs: events must survive the pruning of their job.
CREATE TABLE jobq.events (
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction. Readers order by (xid, id) and only read below
    -- the oldest running xid, so an event can never appear behind a cursor.
    xid        xid8        NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    job_id     bigint      NOT NULL,
    job_type   text        NOT NULL,
    queue      text        NOT NULL,
    event      text        NOT NULL,
    from_state text,                   -- NULL for enqueued
    to_state   text        NOT NULL,
    attempt    integer     NOT NULL,
    worker     text,
    message    text,
    at         timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    -- The cursor's order; as the key it also gives logical replication a
    -- replica identity for the deletes of pruning.
    CONSTRAINT events_pkey PRIMARY KEY (xid, id)
);
COMMENT ON TABLE jobq.events IS
    'Every state change of every job (of types with record_events), kept for event_retention.';

-- An auditor's question is "what happened to job N".
CREATE INDEX events_job_idx ON jobq.events (job_id);
-- Pruning looks for old rows. Events are appended in time order, so a BRIN
-- summary finds them while costing next to nothing per insert.
CREATE INDEX events_at_idx ON jobq.events USING brin (at) WITH (autosummarize = on);

-- Statement-level, over the transition table: one INSERT ... SELECT however
-- many jobs the statement inserted, so a batch of thousands stays one statement.
CREATE FUNCTION jobq._events_after_insert()
RETURNS trigger
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_now constant timestamptz := clock_timestamp();
BEGIN
    INSERT INTO jobq.events (job_id, job_type, queue, event, from_state, to_state, attempt, at)
    SELECT n.id, n.job_type, n.queue, 'enqueued', NULL, n.state, n.attempts, v_now
    FROM new_jobs n
    LEFT JOIN jobq.job_types t ON t.job_type = n.job_type
    LEFT JOIN jobq.job_types d ON d.job_type = '*'
    WHERE coalesce(t.record_events, d.record_events, true)
    -- Event ids then follow job ids, which makes a batch's events read in order.
    ORDER BY n.id;
    IF FOUND THEN
        -- Once per statement; PostgreSQL folds identical notifications of one
        -- transaction into one.
        PERFORM jobq._wake('jobq_events', '');
    END IF;
    RETURN NULL;
END;
$$;

-- What a jq_note changed: the keys it set, with their new values, and the
-- keys it removed, as null. Only computed for 'noted' events.
CREATE FUNCTION jobq._notes_change(p_old jsonb, p_new jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(k.key, coalesce(p_new, '{}') -> k.key), '{}')
    FROM (SELECT n.key FROM jsonb_each(coalesce(p_new, '{}')) AS n
          WHERE (coalesce(p_old, '{}') -> n.key) IS DISTINCT FROM n.value
          UNION
          SELECT o.key FROM jsonb_each(coalesce(p_old, '{}')) AS o
          WHERE NOT coalesce(p_new, '{}') ? o.key) k
$$;

-- Derives the event from the old and the new row:
--   state unchanged: 'extended' when a running job's locked_until moved,
--     'cancel_requested' when jq_cancel asked a running job to stop, 'noted'
--     when jq_note changed its notes (the message holds what changed), else
--     nothing (replaced_by being filled in, an operator moving run_at, ...);
--   to cancelled: cancelled, whatever else happened (a worker's failure
--     report or a lease running out after a cancellation request: the
--     message is then that failure's);
--   a failure appended to the history: its kind as the event (temp_failed,
--     perm_failed, lease_expired), whether the job waits again or, with its
--     attempts used up, ends failed: to_state tells which;
--   to running: grabbed;  to completed, replaced, expired: that;
--   running to waiting without a failure: released (the lease handed back);
--   blocked to waiting: unblocked (its last parent completed);
--   to waiting or blocked from a finished state: retried;
--   anything else: state_changed.
CREATE FUNCTION jobq._events_after_update()
RETURNS trigger
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_now constant timestamptz := clock_timestamp();
BEGIN
    -- Statement triggers fire for updates that matched nothing too, and every
    -- grab runs two such housekeeping updates.
    IF NOT EXISTS (SELECT FROM new_jobs) THEN
        RETURN NULL;
    END IF;
    INSERT INTO jobq.events (job_id, job_type, queue, event, from_state, to_state, attempt,
                             worker, message, at)
    SELECT c.id, c.job_type, c.queue, c.event, c.from_state, c.to_state, c.attempts,
           c.worker,
           CASE WHEN c.event = 'noted' THEN left(jobq._notes_change(c.old_notes, c.new_notes)::text, 8192)
                ELSE c.message END,
           v_now
    FROM (
        SELECT n.id, n.job_type, n.queue, o.state AS from_state, n.state AS to_state, n.attempts,
               -- The worker column keeps the last holder after the job moves on;
               -- it is only this event's worker when the lease is involved.
               CASE WHEN 'running' IN (o.state, n.state) THEN n.worker END AS worker,
               f.failure,
               CASE
                   WHEN n.state = o.state THEN
                       CASE WHEN n.state = 'running'
                                 AND n.locked_until IS DISTINCT FROM o.locked_until
                            THEN 'extended'
                            WHEN n.cancel_requested_at IS NOT NULL AND o.cancel_requested_at IS NULL
                            THEN 'cancel_requested'
                            WHEN n.notes IS DISTINCT FROM o.notes THEN 'noted' END
                   WHEN n.state = 'cancelled' THEN 'cancelled'
                   WHEN f.failure IS NOT NULL THEN
                       CASE f.failure ->> 'kind'
                           WHEN 'temp_fail' THEN 'temp_failed'
                           WHEN 'perm_fail' THEN 'perm_failed'
                           WHEN 'lease_expired' THEN 'lease_expired'
                           ELSE 'state_changed'
                       END
                   WHEN n.state = 'running' THEN 'grabbed'
                   WHEN n.state IN ('completed', 'replaced', 'expired') THEN n.state
                   WHEN n.state = 'waiting' AND o.state = 'running' THEN 'released'
                   WHEN n.state = 'waiting' AND o.state = 'blocked' THEN 'unblocked'
                   WHEN n.state IN ('waiting', 'blocked')
                        AND o.state IN ('completed', 'failed', 'replaced', 'cancelled', 'expired')
                   THEN 'retried'
                   ELSE 'state_changed'
               END AS event,
               f.failure ->> 'message' AS message,
               o.notes AS old_notes, n.notes AS new_notes
        FROM new_jobs n
        JOIN old_jobs o ON o.id = n.id
        -- The failure this update appended, if any. Only looked at when the
        -- state changed: the history can be long, and reading it costs a detoast.
        CROSS JOIN LATERAL (
            SELECT CASE WHEN n.state <> o.state
                             AND jsonb_array_length(n.failures) > jsonb_array_length(o.failures)
                        THEN n.failures -> -1 END AS failure
        ) f
    ) c
    LEFT JOIN jobq.job_types t ON t.job_type = c.job_type
    LEFT JOIN jobq.job_types d ON d.job_type = '*'
    WHERE c.event IS NOT NULL AND coalesce(t.record_events, d.record_events, true)
    ORDER BY c.id;
    IF FOUND THEN
        PERFORM jobq._wake('jobq_events', '');
    END IF;
    RETURN NULL;
END;
$$;

-- Transition tables allow one event per trigger, hence two triggers. Deleting
-- a job (pruning) is not a state change and records nothing.
CREATE TRIGGER jobs_events_insert
    AFTER INSERT ON jobq.jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobq._events_after_insert();
CREATE TRIGGER jobs_events_update
    AFTER UPDATE ON jobq.jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobq._events_after_update();

-- Parses and checks jq_events_since's arguments. The cursor is "<xid>-<id>"
-- of the last event read; callers treat it as opaque. Leading zeros are
-- refused because xid8's input would read them as octal.
CREATE FUNCTION jobq._events_cursor(p_cursor text, p_max_events integer,
                                    OUT after_xid xid8, OUT after_id bigint,
                                    OUT max_events integer)
LANGUAGE plpgsql IMMUTABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_parts text[];
BEGIN
    max_events := coalesce(p_max_events, 1000);
    IF max_events NOT BETWEEN 1 AND 10000 THEN
        PERFORM jobq._raise('JQ010', 'max_events must be between 1 and 10000; got ' || max_events);
    END IF;
    IF p_cursor IS NULL THEN
        after_xid := '0';
        after_id := 0;
        RETURN;
    END IF;
    v_parts := regexp_match(p_cursor, '^(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,18})$');
    IF v_parts IS NULL OR v_parts[1]::numeric > 18446744073709551615
       OR v_parts[2]::numeric > 9223372036854775807 THEN
        PERFORM jobq._raise('JQ010', 'cursor is not one that jq_events_since returned: '
                                     || quote_literal(left(p_cursor, 60)),
                            NULL, 'Pass NULL to read from the oldest retained event.');
    END IF;
    after_xid := v_parts[1]::xid8;
    after_id := v_parts[2]::bigint;
END;
$$;

-- Up to max_events events after the cursor (NULL: from the oldest retained),
-- in (xid, id) order. Each row carries the cursor to pass back for the rest.
--
-- Never skips an event: an event is returned only once its transaction is
-- below the snapshot's xmin, i.e. once every transaction that could still
-- commit an event ordered before it has ended. Ids alone would not do: a
-- transaction that took a lower id may commit after a higher id was read.
-- The price is delay, never loss: a transaction that has written anything,
-- in any database of the cluster, holds back later events until it ends.
-- Within one transaction events follow id order; across transactions the
-- order is by xid (when a transaction first wrote), which for one job can
-- differ from the order in which its changes happened (id order is that).
--
-- SQL rather than PL/pgSQL: the parameter and the result column are both
-- named cursor, which PL/pgSQL refuses.
CREATE FUNCTION jobq.jq_events_since(cursor text DEFAULT NULL, max_events integer DEFAULT 1000)
RETURNS TABLE (cursor text, id bigint, job_id bigint, job_type text, queue text, event text,
               from_state text, to_state text, attempt integer, worker text, message text,
               at timestamptz)
LANGUAGE sql STABLE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT e.xid::text || '-' || e.id::text, e.id, e.job_id, e.job_type, e.queue, e.event,
           e.from_state, e.to_state, e.attempt, e.worker, e.message, e.at
    FROM jobq._events_cursor($1, $2) AS c
    CROSS JOIN LATERAL (
        SELECT * FROM jobq.events e
        WHERE (e.xid, e.id) > (c.after_xid, c.after_id)
          AND e.xid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY e.xid, e.id
        LIMIT c.max_events
    ) e
    ORDER BY e.xid, e.id
$$;
COMMENT ON FUNCTION jobq.jq_events_since IS
    'Events after a cursor, never skipping one; each row carries the cursor for the next call.';

-- A job's events in the order they happened, for as long as they are
-- retained (also after the job itself was pruned). Unlike jq_events_since it
-- shows what is committed at once: nobody keeps a cursor over it.
CREATE FUNCTION jobq.jq_events_for_job(job_id bigint)
RETURNS TABLE (id bigint, job_id bigint, job_type text, queue text, event text,
               from_state text, to_state text, attempt integer, worker text, message text,
               at timestamptz)
LANGUAGE sql STABLE STRICT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT e.id, e.job_id, e.job_type, e.queue, e.event, e.from_state, e.to_state, e.attempt,
           e.worker, e.message, e.at
    FROM jobq.events e
    WHERE e.job_id = $1
    -- Changes of one job are serialised by its row lock, so id order is the
    -- order they happened in (xid order need not be).
    ORDER BY e.id
$$;
COMMENT ON FUNCTION jobq.jq_events_for_job IS 'All retained events of one job, in order.';

-- Deletes up to p_limit events older than their type's event_retention (own
-- row, else '*', else 30 days), whether or not the job still exists. Returns
-- how many it deleted; callers repeat while that equals p_limit.
CREATE FUNCTION jobq._prune_events(p_now timestamptz, p_limit integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_shortest interval;
    v_count bigint;
BEGIN
    -- No event is kept for less than this, and a plain bound on at lets the
    -- BRIN index skip the young part of the table; the join then applies each
    -- type's own retention.
    SELECT least(min(t.event_retention),
                 CASE WHEN bool_or(t.job_type = '*') THEN NULL ELSE interval '30 days' END)
    INTO v_shortest
    FROM jobq.job_types t;

    -- By ctid: the table's key is (xid, id), which says nothing about age.
    DELETE FROM jobq.events e
    WHERE e.ctid = ANY (ARRAY(
        SELECT o.ctid
        FROM jobq.events o
        LEFT JOIN jobq.job_types t ON t.job_type = o.job_type
        LEFT JOIN jobq.job_types d ON d.job_type = '*'
        WHERE o.at < p_now - v_shortest
          AND o.at < p_now - coalesce(t.event_retention, d.event_retention, interval '30 days')
        LIMIT p_limit));
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END;
$$;

-- For operators: prunes every event past its retention now, in batches, and
-- returns how many went. Maintenance calls _prune_events on its own schedule.
CREATE FUNCTION jobq.jq_prune_events()
RETURNS bigint
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_batch bigint;
    v_total bigint := 0;
BEGIN
    LOOP
        v_batch := jobq._prune_events(v_now, 10000);
        v_total := v_total + v_batch;
        EXIT WHEN v_batch < 10000;
    END LOOP;
    RETURN v_total;
END;
$$;
COMMENT ON FUNCTION jobq.jq_prune_events IS 'Delete the events older than their type''s event_retention.';
