-- ============================================================================
-- jobq: durable events
--
-- Every change of a job's state made through jobq's functions is written to
-- jobq.events in the transaction that makes the change, so an event exists if
-- and only if the change committed. Subscribers LISTEN on the channel
-- jobq_events (the payload only says that new events exist) and read with
-- jq_events_since. Direct writes to jobq's tables record nothing.
--
-- Storage: one row per statement, event kind and (job_type, queue, worker),
-- holding the ids and attempts of all the jobs it concerns; readers expand it
-- into one event per job. A grab or completion of 100 jobs writes one row
-- instead of 100, which is most of what events used to cost.
--
-- Order: the stream is ordered by (ord_xid, event id). ord_xid is at least the
-- writing transaction's id (plus the event clock's shift, 0 unless the
-- database was restored: see jobq.event_clock), so readers that only read
-- below their snapshot's xmin (shifted alike) never see an event appear
-- behind their cursor (gap-free). It is also at
-- least the job's previous event's ord_xid, kept in the job row (event_xid),
-- so a job's events are read in the order they happened even when a
-- transaction that took its id early (a grab that first reaped leases, a
-- worker's transaction that first completed others) changes a job enqueued by
-- a younger transaction. Event ids come from a sequence, in order of writing;
-- for one job, that is the order of its changes (they are serialised by its
-- row lock).
--
-- Events carry no args: they are read by roles that need not see payloads
-- (jobq_observer), they outlive the job, and copying up to 1 MiB of args into
-- every one of a job's events would multiply its size.
-- ============================================================================

-- Each row takes a block of event ids: id is the first, and the row's events
-- are id .. id + cardinality(job_ids) - 1. Blocks are 2^17 ids apart and a row
-- holds at most 100,000 jobs.
CREATE SEQUENCE jobq.event_ids AS bigint INCREMENT BY 131072 START WITH 131072;

-- No foreign key to jobs: events must survive the pruning of their job.
CREATE TABLE jobq.event_batches (
    ord_xid    xid8        NOT NULL,
    id         bigint      NOT NULL DEFAULT pg_catalog.nextval('jobq.event_ids'),
    event      text        NOT NULL,
    from_state text,                   -- NULL for enqueued
    to_state   text        NOT NULL,
    job_type   text        NOT NULL,
    queue      text        NOT NULL,
    worker     text,
    at         timestamptz NOT NULL,
    -- The smallest and largest job id, for finding a job's events.
    job_lo     bigint      NOT NULL,
    job_hi     bigint      NOT NULL,
    job_ids    bigint[]    NOT NULL,
    attempts   integer[]   NOT NULL,
    -- One per job, or NULL when none of the row's events has a message.
    messages   text[],
    -- The cursor's order; as the key it also gives logical replication a
    -- replica identity for the deletes of pruning.
    CONSTRAINT event_batches_pkey PRIMARY KEY (ord_xid, id),
    CONSTRAINT event_batches_ids_check CHECK (cardinality(job_ids) BETWEEN 1 AND 100000
                                       AND cardinality(attempts) = cardinality(job_ids))
);
ALTER SEQUENCE jobq.event_ids OWNED BY jobq.event_batches.id;
COMMENT ON TABLE jobq.event_batches IS
    'State changes of jobs (of types with record_events), one row per statement and kind; '
    'read them with jq_events_since and jq_events_for_job.';

-- An auditor's question is "what happened to job N": rows whose id range
-- holds N, then a look into their arrays.
CREATE INDEX event_batches_job_idx ON jobq.event_batches USING gist (pg_catalog.int8range(job_lo, job_hi, '[]'));
-- Pruning looks for old rows. Events are appended in time order, so a BRIN
-- summary finds them while costing next to nothing per insert.
CREATE INDEX event_batches_at_idx ON jobq.event_batches USING brin (at) WITH (autosummarize = on);

-- The stream's clock. Order keys are the writing transaction's id plus
-- `shift`, which is 0 until the database is restored from a dump into a
-- cluster whose transaction ids are behind the ones the dump recorded (a new
-- server, say): the restored events and jobs keep their keys, so a
-- subscriber's cursor stays valid, and every later key must sort after
-- them. The dump carries this row; restoring it sets `restored` (the merge
-- trigger in sql/backup.sql), and the first writer afterwards picks the new
-- shift (_restart_event_clock). One row, always.
CREATE TABLE jobq.event_clock (
    id       integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    shift    bigint  NOT NULL DEFAULT 0 CHECK (shift >= 0),
    restored boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE jobq.event_clock IS
    'The event stream''s clock: order keys are transaction ids plus shift (non-zero after a restore).';
INSERT INTO jobq.event_clock DEFAULT VALUES;

-- After a restore: the shift that puts every key written from now on after
-- every key the restored data holds (events, and the jobs' event_xid, which
-- bound their next event's key). Keys are a transaction id plus the shift,
-- and no transaction that can still write has an id below the oldest one
-- running now, so that one is the base. The row lock makes concurrent first
-- writers wait for the one that computes it, then use its result.
CREATE FUNCTION jobq._restart_event_clock()
RETURNS bigint
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_restored boolean;
    v_shift bigint;
    v_top numeric;
BEGIN
    SELECT c.restored, c.shift INTO v_restored, v_shift FROM jobq.event_clock c FOR UPDATE;
    IF NOT v_restored THEN
        RETURN v_shift;
    END IF;
    SELECT greatest((SELECT max(e.ord_xid) FROM jobq.event_batches e),
                    (SELECT max(j.event_xid) FROM jobq.live_jobs j),
                    (SELECT max(h.event_xid) FROM jobq.job_history h))::text::numeric
    INTO v_top;
    v_shift := greatest(0, coalesce(v_top, 0) + 1
                           - pg_snapshot_xmin(pg_current_snapshot())::text::numeric);
    UPDATE jobq.event_clock SET shift = v_shift, restored = false;
    RAISE LOG 'jobq: first change after a restore; event order keys are shifted by %', v_shift;
    RETURN v_shift;
END;
$$;

-- The order key of an event written now: this transaction's id (which it
-- assigns, if the transaction has none yet) plus the clock's shift. Every
-- key a transaction writes is at least this, raised to the job's event_xid.
-- Callers take it once per statement, as an uncorrelated subquery or a
-- variable, never per row.
CREATE FUNCTION jobq._event_key()
RETURNS xid8
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_shift bigint;
    v_restored boolean;
BEGIN
    SELECT c.shift, c.restored INTO v_shift, v_restored FROM jobq.event_clock c;
    IF v_restored THEN
        v_shift := jobq._restart_event_clock();
    END IF;
    IF coalesce(v_shift, 0) = 0 THEN
        RETURN pg_current_xact_id();
    END IF;
    RETURN (pg_current_xact_id()::text::numeric + v_shift)::text::xid8;
END;
$$;

-- Events with keys below this are final for the calling snapshot: every
-- transaction that could still write a smaller key has ended. That is the
-- snapshot's xmin, shifted like the keys; while a restore awaits its first
-- writer, every stored event is a restored, committed one.
CREATE FUNCTION jobq._event_horizon()
RETURNS xid8
LANGUAGE sql STABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN c.restored THEN '18446744073709551615'::xid8
                WHEN c.shift = 0 THEN pg_snapshot_xmin(pg_current_snapshot())
                ELSE (pg_snapshot_xmin(pg_current_snapshot())::text::numeric + c.shift)::text::xid8
           END
    FROM jobq.event_clock c
$$;

-- One row per event, with the columns of 0.1.0's events table (xid is the
-- stream's order key, ord_xid), for operators and scripts that read events
-- with plain SQL. Subscribers use jq_events_since.
CREATE VIEW jobq.events AS
SELECT e.id + u.k - 1 AS id, e.ord_xid AS xid, u.job_id, e.job_type, e.queue, e.event,
       e.from_state, e.to_state, u.attempt, e.worker, u.message, e.at
FROM jobq.event_batches e
CROSS JOIN LATERAL unnest(e.job_ids, e.attempts, e.messages)
                       WITH ORDINALITY AS u(job_id, attempt, message, k);
COMMENT ON VIEW jobq.events IS 'Every retained event, one row each (stored in jobq.event_batches).';

-- Records one event per job. The arrays run in parallel, one element per job:
-- new state, type, queue, attempt, worker, ord_xid (the job's event_xid after
-- the change) and message (p_messages may be NULL). p_event and p_from apply
-- to every job unless p_events / p_froms give them per job. Types whose
-- record_events is off are left out. Returns how many rows it wrote.
CREATE FUNCTION jobq._emit(p_event text, p_from text, p_ids bigint[], p_to text[], p_types text[],
                           p_queues text[], p_attempts integer[], p_workers text[], p_keys xid8[],
                           p_messages text[] DEFAULT NULL, p_events text[] DEFAULT NULL,
                           p_froms text[] DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
-- Its insert reads only its arrays and jobq.job_types, so one plan serves
-- every call; left to choose, PL/pgSQL planned it again at every call (the
-- arrays' sizes make each custom plan look cheaper), about a tenth of a
-- small grab's time.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_count integer;
BEGIN
    IF coalesce(cardinality(p_ids), 0) = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO jobq.event_batches (ord_xid, event, from_state, to_state, job_type, queue, worker, at,
                             job_lo, job_hi, job_ids, attempts, messages)
    SELECT u.key, coalesce(u.event, p_event), coalesce(u.from_state, p_from), u.to_state,
           u.job_type, u.queue, u.worker, v_now,
           min(u.id), max(u.id), array_agg(u.id ORDER BY u.ord), array_agg(u.attempt ORDER BY u.ord),
           CASE WHEN bool_or(u.message IS NOT NULL)
                THEN array_agg(u.message ORDER BY u.ord) END
    FROM unnest(p_ids, p_to, p_types, p_queues, p_attempts, p_workers, p_keys, p_messages,
                p_events, p_froms)
             WITH ORDINALITY AS u(id, to_state, job_type, queue, attempt, worker, key, message,
                                  event, from_state, ord)
    LEFT JOIN jobq.job_types t ON t.job_type = u.job_type
    LEFT JOIN jobq.job_types d ON d.job_type = '*'
    WHERE u.id IS NOT NULL AND coalesce(t.record_events, d.record_events, true)
    GROUP BY u.key, coalesce(u.event, p_event), coalesce(u.from_state, p_from), u.to_state,
             u.job_type, u.queue, u.worker, (u.ord - 1) / 100000
    -- Rows, and so event ids, in job order: a batch's events read in order.
    ORDER BY min(u.ord);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 THEN
        -- Once per call; PostgreSQL folds identical notifications of one
        -- transaction into one. What jobq._wake does, without its call.
        IF NOT jobq._defer_notify('jobq_events', '') THEN
            PERFORM pg_catalog.pg_notify('jobq_events', '');
        END IF;
    END IF;
    RETURN v_count;
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

-- Parses and checks jq_events_since's arguments. The cursor is
-- "<ord_xid>-<event id>" of the last event read; callers treat it as opaque.
-- Leading zeros are refused because xid8's input would read them as octal.
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
-- in (ord_xid, id) order. Each row carries the cursor to pass back for the rest.
--
-- Never skips an event: a row is returned only once its ord_xid is below the
-- snapshot's xmin (jobq._event_horizon), i.e. once every transaction that could still commit an
-- event ordered before it has ended. Ids alone would not do: a transaction
-- that took a lower id may commit after a higher id was read. The price is
-- delay, never loss: a transaction that has written anything, in any
-- database of the cluster, holds back later events until it ends.
--
-- A row's events have ids id .. id + n - 1 and n <= 100,000 < 2^17, so every
-- row holding events after the cursor starts after (xid, id - 131072).
--
-- Nor does it return an event that a crash could still undo: it flushes the
-- WAL first (jobq._flush_wal), because a grab may commit asynchronously.
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
    SELECT x.ord_xid::text || '-' || x.event_id::text, x.event_id, x.job_id, x.job_type, x.queue,
           x.event, x.from_state, x.to_state, x.attempt, x.worker, x.message, x.at
    FROM (SELECT k.*, jobq._event_horizon() AS horizon FROM jobq._events_cursor($1, $2) AS k) AS c
    -- Every commit this snapshot sees is on disk before a row is returned:
    -- grabs may commit without waiting for the flush (durable => false).
    CROSS JOIN (SELECT jobq._flush_wal()) AS flushed
    CROSS JOIN LATERAL (
        SELECT e.ord_xid, e.id + u.k - 1 AS event_id, u.job_id, e.job_type, e.queue, e.event,
               e.from_state, e.to_state, u.attempt, e.worker, u.message, e.at
        FROM jobq.event_batches e
        CROSS JOIN LATERAL unnest(e.job_ids, e.attempts, e.messages)
                               WITH ORDINALITY AS u(job_id, attempt, message, k)
        WHERE (e.ord_xid, e.id) > (c.after_xid, c.after_id - 131072)
          AND e.ord_xid < c.horizon
          AND (e.ord_xid, e.id + u.k - 1) > (c.after_xid, c.after_id)
        ORDER BY e.ord_xid, e.id, u.k
        LIMIT c.max_events
    ) x
    ORDER BY x.ord_xid, x.event_id
$$;
COMMENT ON FUNCTION jobq.jq_events_since IS
    'Events after a cursor, never skipping one; each row carries the cursor for the next call.';

-- A job's events in the order they happened (the stream's order), for as
-- long as they are retained (also after the job itself was pruned). Unlike
-- jq_events_since it shows what is committed at once: nobody keeps a cursor
-- over it.
CREATE FUNCTION jobq.jq_events_for_job(job_id bigint)
RETURNS TABLE (id bigint, job_id bigint, job_type text, queue text, event text,
               from_state text, to_state text, attempt integer, worker text, message text,
               at timestamptz)
LANGUAGE sql STABLE STRICT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT e.id + u.k - 1, u.job_id, e.job_type, e.queue, e.event, e.from_state, e.to_state,
           u.attempt, e.worker, u.message, e.at
    FROM jobq.event_batches e
    CROSS JOIN LATERAL unnest(e.job_ids, e.attempts, e.messages)
                           WITH ORDINALITY AS u(job_id, attempt, message, k)
    WHERE pg_catalog.int8range(e.job_lo, e.job_hi, '[]') @> $1
      AND u.job_id = $1
    ORDER BY e.ord_xid, e.id, u.k
$$;
COMMENT ON FUNCTION jobq.jq_events_for_job IS 'All retained events of one job, in order.';

-- Deletes up to p_limit event rows older than their type's event_retention
-- (own row, else '*', else 30 days), whether or not the job still exists.
-- Returns how many events (not rows) it deleted; callers repeat while rows
-- remain (see the second result).
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

    -- By ctid: the table's key is (ord_xid, id), which says nothing about age.
    WITH gone AS (
        DELETE FROM jobq.event_batches e
        WHERE e.ctid = ANY (ARRAY(
            SELECT o.ctid
            FROM jobq.event_batches o
            LEFT JOIN jobq.job_types t ON t.job_type = o.job_type
            LEFT JOIN jobq.job_types d ON d.job_type = '*'
            WHERE o.at < p_now - v_shortest
              AND o.at < p_now - coalesce(t.event_retention, d.event_retention, interval '30 days')
            LIMIT p_limit))
        RETURNING cardinality(e.job_ids) AS n)
    SELECT coalesce(sum(gone.n), 0) INTO v_count FROM gone;
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
        EXIT WHEN v_batch = 0;
    END LOOP;
    RETURN v_total;
END;
$$;
COMMENT ON FUNCTION jobq.jq_prune_events IS 'Delete the events older than their type''s event_retention.';
