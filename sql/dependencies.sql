-- ============================================================================
-- jobq: dependencies between jobs
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
-- while its parent finishes is never missed: the finishing statement (which
-- moves the parent to jobq.job_history) waits for that lock and then sees the
-- mark, or the adder finds the parent already in the history.
-- ============================================================================

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
    FROM (SELECT DISTINCT j.queue, j.job_type FROM jobq.live_jobs j
          WHERE j.id = ANY (p_ids) AND j.state = 'waiting' AND j.run_at <= p_now) d;
    IF EXISTS (SELECT 1 FROM jobq.live_jobs j
               WHERE j.id = ANY (p_ids) AND j.state = 'waiting' AND j.run_at > p_now) THEN
        PERFORM jobq._due_time_added();
    END IF;
END;
$$;

-- Locks the given live jobs in id order and marks them as having dependants;
-- returns those that exist, live or finished (finished ones are in the
-- history and need no mark: their dependants are resolved at once). The mark
-- is an update rather than a lock alone, so that a parent finishing
-- concurrently under REPEATABLE READ fails with a serialization error instead
-- of missing its new dependant; under READ COMMITTED the finishing statement
-- waits for this transaction and then sees the mark (and the dependency
-- rows). The history is read after the locks, so a parent that finished
-- while this waited is found there.
CREATE FUNCTION jobq._lock_parents(p_ids bigint[])
RETURNS TABLE (id bigint, state text)
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_live bigint[];
BEGIN
    WITH locked AS (
        SELECT j.id FROM jobq.live_jobs j WHERE j.id = ANY (p_ids) ORDER BY j.id FOR NO KEY UPDATE
    ), marked AS (
        UPDATE jobq.live_jobs j SET has_dependants = true
        FROM locked WHERE j.id = locked.id
        RETURNING j.id
    )
    SELECT coalesce(array_agg(marked.id), '{}') INTO v_live FROM marked;
    RETURN QUERY
    SELECT j.id, j.state FROM jobq.live_jobs j WHERE j.id = ANY (v_live)
    UNION ALL
    SELECT DISTINCT ON (h.id) h.id, h.state FROM jobq.job_history h
    WHERE h.id = ANY (p_ids) AND h.id <> ALL (v_live);
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
    v_emitted integer;
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

    UPDATE jobq.live_jobs c
    SET pending_parents = (SELECT count(*) FROM jobq.job_dependencies d WHERE d.child_id = c.id)
    WHERE c.id = ANY (p_blocked) AND c.state = 'blocked';
    WITH released AS (
        UPDATE jobq.live_jobs c
        SET state = 'waiting', event_xid = greatest((SELECT jobq._event_key()), c.event_xid)
        WHERE c.id = ANY (p_blocked) AND c.state = 'blocked' AND c.pending_parents = 0
        RETURNING c.id, c.job_type, c.queue, c.attempts, c.event_xid)
    SELECT array_agg(rel.id ORDER BY rel.id),
           jobq._emit('unblocked', 'blocked', array_agg(rel.id ORDER BY rel.id),
                      array_fill('waiting'::text, ARRAY[count(*)::integer]),
                      array_agg(rel.job_type ORDER BY rel.id), array_agg(rel.queue ORDER BY rel.id),
                      array_agg(rel.attempts ORDER BY rel.id), NULL,
                      array_agg(rel.event_xid ORDER BY rel.id))
    INTO v_released, v_emitted
    FROM released rel;
    IF v_released IS NOT NULL THEN
        PERFORM jobq._announce_waiting(v_released, p_now);
    END IF;

    FOR r IN SELECT DISTINCT ON (h.id) h.id, h.state, h.replaced_by FROM jobq.job_history h
             WHERE h.id = ANY (v_locked)
             ORDER BY h.id LOOP
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
    UPDATE jobq.live_jobs c SET depends_on = x.parents
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
    v_emitted integer;
    v_child bigint;
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
    v_children := ARRAY(SELECT c.id FROM jobq.live_jobs c
                        WHERE c.id = ANY (v_children) AND c.state = 'blocked'
                        ORDER BY c.id
                        FOR NO KEY UPDATE);
    IF p_state <> 'completed' THEN
        -- Children that do not run anyway are cancelled (and, through the
        -- history trigger, their own dependants).
        FOR v_child IN SELECT c.id FROM jobq.live_jobs c
                       WHERE c.id = ANY (v_children) AND NOT c.run_anyway ORDER BY c.id LOOP
            PERFORM jobq._finish_one(v_child, 'cancelled', p_now, 'cancelled');
        END LOOP;
    END IF;
    WITH changed AS (
        UPDATE jobq.live_jobs c
        SET pending_parents = c.pending_parents - 1,
            state = CASE WHEN c.pending_parents <= 1 THEN 'waiting' ELSE 'blocked' END,
            event_xid = CASE WHEN c.pending_parents <= 1
                             THEN greatest((SELECT jobq._event_key()), c.event_xid) ELSE c.event_xid END
        WHERE c.id = ANY (v_children) AND c.state = 'blocked'
        RETURNING c.id, c.state, c.job_type, c.queue, c.attempts, c.event_xid)
    SELECT array_agg(ch.id ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
           jobq._emit('unblocked', 'blocked',
                      array_agg(ch.id ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
                      array_agg(ch.state ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
                      array_agg(ch.job_type ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
                      array_agg(ch.queue ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
                      array_agg(ch.attempts ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
                      NULL,
                      array_agg(ch.event_xid ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'))
    INTO v_released, v_emitted
    FROM changed ch;
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
    v_emitted integer;
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
    v_children := ARRAY(SELECT c.id FROM jobq.live_jobs c
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
        UPDATE jobq.live_jobs j
        SET pending_parents = j.pending_parents - 1 + counts.added,
            state = CASE WHEN j.pending_parents - 1 + counts.added <= 0 THEN 'waiting'
                         ELSE 'blocked' END,
            event_xid = greatest((SELECT jobq._event_key()), j.event_xid)
        FROM counts
        WHERE j.id = counts.id AND j.state = 'blocked'
        RETURNING j.id, j.state, j.job_type, j.queue, j.attempts, j.event_xid)
    SELECT array_agg(ch.id ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
           jobq._emit('unblocked', 'blocked',
                      array_agg(ch.id ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
                      array_agg(ch.state ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
                      array_agg(ch.job_type ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
                      array_agg(ch.queue ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
                      array_agg(ch.attempts ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'),
                      NULL,
                      array_agg(ch.event_xid ORDER BY ch.id) FILTER (WHERE ch.state = 'waiting'))
    INTO v_released, v_emitted
    FROM changed ch;
    IF v_released IS NOT NULL THEN
        PERFORM jobq._announce_waiting(v_released, p_now);
    END IF;

    -- Replacements that already finished (only when the dependant was added
    -- after the replacement happened).
    FOR r IN SELECT DISTINCT ON (h.id) h.id, h.state, h.replaced_by FROM jobq.job_history h
             WHERE h.id = ANY (v_new)
             ORDER BY h.id LOOP
        PERFORM jobq._release_dependants(r.id, r.state, r.replaced_by, p_now, v_children);
    END LOOP;
END;
$$;

CREATE FUNCTION jobq._dependants_after_finish()
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
-- nothing here. A job finishes by entering the history. 'replaced' is left
-- to jq_replace, which knows the replacements.
CREATE TRIGGER job_history_release_dependants
    AFTER INSERT ON jobq.job_history
    FOR EACH ROW
    WHEN (NEW.has_dependants AND NEW.state IN ('completed', 'failed', 'cancelled', 'expired'))
    EXECUTE FUNCTION jobq._dependants_after_finish();
