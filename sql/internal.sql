-- ============================================================================
-- jobq: internal helpers
--
-- Not granted to anyone: only the SECURITY DEFINER API functions call them.
-- Every rejection raises one of the documented SQLSTATEs (README, "Errors"):
--   JQ001 lease lost   JQ002 job not found   JQ003 invalid state
--   JQ004 cancel requested   JQ010 invalid argument   JQ011 payload too large
-- ============================================================================

-- Raises an error with a jobq SQLSTATE, prefixing the message with "jobq: ".
-- A NULL detail or hint is left out of the error (RAISE rejects NULL options,
-- and an empty string would still reach clients as an empty DETAIL/HINT).
CREATE FUNCTION jobq._raise(p_code text, p_message text, p_detail text DEFAULT NULL,
                            p_hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    IF p_detail IS NULL AND p_hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = 'jobq: ' || p_message;
    ELSIF p_hint IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = 'jobq: ' || p_message,
            DETAIL = p_detail;
    ELSIF p_detail IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = 'jobq: ' || p_message,
            HINT = p_hint;
    ELSE
        RAISE EXCEPTION USING ERRCODE = p_code, MESSAGE = 'jobq: ' || p_message,
            DETAIL = p_detail, HINT = p_hint;
    END IF;
END;
$$;

-- Sends a notification: wake-ups (jobq_wakeup) and "new events" signals
-- (jobq_events) all go through here. With the wake-up worker running (jobq in
-- shared_preload_libraries), _defer_notify keeps the signal until this
-- transaction commits and the worker sends it, so producers never take
-- NOTIFY's cluster-wide commit lock. Otherwise it is a plain pg_notify,
-- which PostgreSQL de-duplicates within the transaction.
CREATE FUNCTION jobq._wake(p_channel text, p_payload text)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT jobq._defer_notify(p_channel, p_payload) THEN
        PERFORM pg_catalog.pg_notify(p_channel, p_payload);
    END IF;
END;
$$;

-- NULL when the name is acceptable as a job type or queue, otherwise the reason.
CREATE FUNCTION jobq._name_problem(p_name text)
RETURNS text
LANGUAGE sql IMMUTABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p_name IS NULL THEN 'is required'
        WHEN p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$' THEN
            'must be 1 to 128 characters from A-Z a-z 0-9 _ . : / -, starting with a letter or digit; got '
            || quote_literal(left(p_name, 140))
    END
$$;

-- NULL when the job spec is valid, otherwise "<SQLSTATE> <field> <reason>".
-- Takes the fields one by one (not a job_spec) so that callers can feed it
-- straight from unnest() without building rows.
CREATE FUNCTION jobq._spec_problem(
    p_job_type text, p_args jsonb, p_queue text, p_priority integer, p_run_at timestamptz,
    p_max_attempts integer, p_unique_key text, p_expires_at timestamptz, p_now timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN jobq._name_problem(p_job_type) IS NOT NULL THEN
            'JQ010 job_type ' || jobq._name_problem(p_job_type)
        WHEN p_queue IS NOT NULL AND jobq._name_problem(p_queue) IS NOT NULL THEN
            'JQ010 queue ' || jobq._name_problem(p_queue)
        WHEN p_args IS NOT NULL AND jsonb_typeof(p_args) <> 'object' THEN
            'JQ010 args must be a JSON object, not ' || jsonb_typeof(p_args)
        WHEN p_args IS NOT NULL AND pg_column_size(p_args) > 1048576 THEN
            'JQ011 args is ' || pg_column_size(p_args) || ' bytes; the limit is 1048576'
        WHEN p_priority NOT BETWEEN -32768 AND 32767 THEN
            'JQ010 priority must be between -32768 and 32767; got ' || p_priority
        WHEN NOT isfinite(p_run_at) THEN
            'JQ010 run_at must be a finite timestamp'
        WHEN p_max_attempts NOT BETWEEN 1 AND 1000 THEN
            'JQ010 max_attempts must be between 1 and 1000; got ' || p_max_attempts
        WHEN p_unique_key IS NOT NULL AND length(p_unique_key) NOT BETWEEN 1 AND 256 THEN
            'JQ010 unique_key must be 1 to 256 characters'
        WHEN NOT isfinite(p_expires_at) THEN
            'JQ010 expires_at must be a finite timestamp'
        WHEN p_expires_at <= greatest(p_now, p_run_at) THEN
            'JQ010 expires_at must be later than now and than run_at; got ' || p_expires_at
    END
$$;

-- Raises for the first invalid spec. p_where names the JSON argument the specs
-- came from (so the error says e.g. "jobs[3].queue"), or NULL for jq_enqueue.
CREATE FUNCTION jobq._validate_specs(p_specs jobq.job_spec[], p_where text, p_now timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_ord bigint;
    v_problem text;
BEGIN
    -- The checks of _spec_problem, inline: calling a SQL function with a
    -- pinned search_path costs more than the checks (PostgreSQL plans its body
    -- at every call), and nearly every spec is valid. The first invalid one,
    -- if any, then gets its message from _spec_problem. The name pattern is
    -- _name_problem's.
    SELECT min(u.ord) INTO v_ord
    FROM unnest(p_specs) WITH ORDINALITY
             AS u(job_type, args, queue, priority, run_at, max_attempts, unique_key, expires_at,
                  depends_on, run_anyway, depends_on_index, ord)
    WHERE NOT coalesce(
        u.job_type ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$'
        AND (u.queue IS NULL OR u.queue ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$')
        AND (u.args IS NULL OR (jsonb_typeof(u.args) = 'object'
                                AND pg_column_size(u.args) <= 1048576))
        AND (u.priority IS NULL OR u.priority BETWEEN -32768 AND 32767)
        AND (u.run_at IS NULL OR isfinite(u.run_at))
        AND (u.max_attempts IS NULL OR u.max_attempts BETWEEN 1 AND 1000)
        AND (u.unique_key IS NULL OR length(u.unique_key) BETWEEN 1 AND 256)
        AND (u.expires_at IS NULL OR (isfinite(u.expires_at)
                                      AND u.expires_at > greatest(p_now, u.run_at))),
        false);
    IF v_ord IS NOT NULL THEN
        SELECT jobq._spec_problem(u.job_type, u.args, u.queue, u.priority, u.run_at,
                                  u.max_attempts, u.unique_key, u.expires_at, p_now)
        INTO v_problem
        FROM unnest(p_specs) WITH ORDINALITY
                 AS u(job_type, args, queue, priority, run_at, max_attempts, unique_key,
                      expires_at, depends_on, run_anyway, depends_on_index, ord)
        WHERE u.ord = v_ord;
    END IF;
    -- Dependencies, only looked at when some spec has any. A sibling may only
    -- be named when it comes earlier in the array: that rules out cycles,
    -- which would block their jobs for ever.
    IF v_problem IS NULL AND EXISTS (SELECT 1 FROM unnest(p_specs) AS u
                                     WHERE u.depends_on IS NOT NULL OR u.depends_on_index IS NOT NULL) THEN
        SELECT u.ord, p.problem INTO v_ord, v_problem
        FROM unnest(p_specs) WITH ORDINALITY
                 AS u(job_type, args, queue, priority, run_at, max_attempts, unique_key, expires_at,
                      depends_on, run_anyway, depends_on_index, ord)
        CROSS JOIN LATERAL (SELECT CASE
            WHEN cardinality(u.depends_on) > 100000 THEN
                'JQ010 depends_on names more than 100000 jobs'
            WHEN EXISTS (SELECT 1 FROM unnest(u.depends_on) AS d WHERE d IS NULL OR d < 1) THEN
                'JQ010 depends_on must hold job ids (positive, not NULL)'
            WHEN cardinality(u.depends_on_index) > 100000 THEN
                'JQ010 depends_on_index names more than 100000 jobs'
            WHEN EXISTS (SELECT 1 FROM unnest(u.depends_on_index) AS i
                         WHERE i IS NULL OR i < 0 OR i >= u.ord - 1) THEN
                CASE WHEN u.ord = 1 THEN
                    'JQ010 depends_on_index must name earlier jobs of the same call; the first job has none'
                ELSE format('JQ010 depends_on_index must name earlier jobs of the same call (0 to %s)',
                            u.ord - 2) END
        END AS problem) p
        WHERE p.problem IS NOT NULL
        ORDER BY u.ord
        LIMIT 1;
    END IF;
    IF v_problem IS NOT NULL THEN
        PERFORM jobq._raise(left(v_problem, 5),
            CASE WHEN p_where IS NULL THEN '' ELSE format('%s[%s].', p_where, v_ord - 1) END
            || substr(v_problem, 7));
    END IF;
END;
$$;

-- Turns a JSON array of job objects into specs, rejecting anything that is not
-- one: a non-array, a non-object element, an unknown key, or a value of the
-- wrong type. Values are checked afterwards by _validate_specs.
CREATE FUNCTION jobq._specs_from_json(p_jobs jsonb, p_where text)
RETURNS jobq.job_spec[]
LANGUAGE plpgsql IMMUTABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_known constant text[] := ARRAY['job_type', 'args', 'queue', 'priority', 'run_at',
                                     'max_attempts', 'unique_key', 'expires_at', 'depends_on',
                                     'run_anyway', 'depends_on_index'];
    v_ord bigint;
    v_problem text;
    v_specs jobq.job_spec[];
BEGIN
    IF p_jobs IS NULL OR jsonb_typeof(p_jobs) <> 'array' THEN
        PERFORM jobq._raise('JQ010', format('%s must be a JSON array of job objects, not %s',
                                            p_where, coalesce(jsonb_typeof(p_jobs), 'NULL')));
    END IF;
    IF jsonb_array_length(p_jobs) > 100000 THEN
        PERFORM jobq._raise('JQ011', format('%s holds %s jobs; the limit per call is 100000',
                                            p_where, jsonb_array_length(p_jobs)));
    END IF;

    SELECT e.ord, CASE
               WHEN jsonb_typeof(e.job) <> 'object' THEN
                   'must be a JSON object, not ' || jsonb_typeof(e.job)
               ELSE (SELECT 'has unknown key ' || quote_ident(k) || '; known keys are '
                            || array_to_string(v_known, ', ')
                     FROM jsonb_object_keys(e.job) AS k
                     WHERE k <> ALL (v_known)
                     LIMIT 1)
           END
    INTO v_ord, v_problem
    FROM jsonb_array_elements(p_jobs) WITH ORDINALITY AS e(job, ord)
    WHERE jsonb_typeof(e.job) <> 'object'
       OR EXISTS (SELECT 1 FROM jsonb_object_keys(e.job) AS k WHERE k <> ALL (v_known))
    ORDER BY e.ord
    LIMIT 1;
    IF v_problem IS NOT NULL THEN
        PERFORM jobq._raise('JQ010', format('%s[%s] %s', p_where, v_ord - 1, v_problem));
    END IF;

    BEGIN
        SELECT coalesce(array_agg(s ORDER BY e.ord), '{}') INTO v_specs
        FROM jsonb_array_elements(p_jobs) WITH ORDINALITY AS e(job, ord)
        CROSS JOIN LATERAL jsonb_populate_record(NULL::jobq.job_spec, e.job) AS s;
    EXCEPTION WHEN data_exception THEN
        PERFORM jobq._raise('JQ010', format('%s: a value has the wrong type: %s', p_where, SQLERRM));
    END;
    RETURN v_specs;
END;
$$;

-- Inserts valid specs and returns their ids in input order, each with whether
-- this call created it. A spec with a unique_key whose (job_type, unique_key)
-- already has a live job (blocked, waiting or running) yields that job's id,
-- created = false, instead of a new row. Jobs with parents start 'blocked';
-- _wire_dependencies then records and resolves their parents. p_where names
-- the JSON argument for errors about parents (NULL for jq_enqueue).
CREATE FUNCTION jobq._insert_specs(p_specs jobq.job_spec[], p_now timestamptz,
                                   p_where text DEFAULT NULL)
RETURNS TABLE (id bigint, created boolean)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_spec jobq.job_spec;
    v_id bigint;
    v_ids bigint[] := '{}';
    v_created boolean[] := '{}';
    v_emitted integer;
    -- The order key of this call's 'enqueued' events, and so the first
    -- event_xid of its jobs.
    v_key constant xid8 := jobq._event_key();
    v_has_parents constant boolean := EXISTS (
        SELECT 1 FROM unnest(p_specs) AS u
        WHERE cardinality(u.depends_on) > 0 OR cardinality(u.depends_on_index) > 0);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM unnest(p_specs) AS u WHERE u.unique_key IS NOT NULL) THEN
        -- Identity values follow the order rows reach the insert, so sorting
        -- the new ids gives input order.
        WITH ins AS (
            INSERT INTO jobq.live_jobs AS j (job_type, queue, args, priority, run_at, expires_at,
                                        max_attempts, unique_key, created_at, state, depends_on,
                                        run_anyway, event_xid)
            SELECT u.job_type, coalesce(u.queue, 'default'), coalesce(u.args, '{}'),
                   coalesce(u.priority, 0), coalesce(u.run_at, p_now), u.expires_at,
                   coalesce(u.max_attempts, t.max_attempts, d.max_attempts, 25), NULL, p_now,
                   CASE WHEN cardinality(u.depends_on) > 0 OR cardinality(u.depends_on_index) > 0
                        THEN 'blocked' ELSE 'waiting' END,
                   u.depends_on, coalesce(u.run_anyway, false), v_key
            FROM unnest(p_specs) WITH ORDINALITY
                     AS u(job_type, args, queue, priority, run_at, max_attempts, unique_key,
                          expires_at, depends_on, run_anyway, depends_on_index, ord)
            LEFT JOIN jobq.job_types t ON t.job_type = u.job_type
            LEFT JOIN jobq.job_types d ON d.job_type = '*'
            ORDER BY u.ord
            RETURNING j.id, j.job_type, j.queue, j.state, j.event_xid)
        SELECT coalesce(array_agg(ins.id ORDER BY ins.id), '{}'),
               jobq._emit('enqueued', NULL, array_agg(ins.id ORDER BY ins.id),
                          array_agg(ins.state ORDER BY ins.id), array_agg(ins.job_type ORDER BY ins.id),
                          array_agg(ins.queue ORDER BY ins.id),
                          array_fill(0, ARRAY[count(*)::integer]), NULL,
                          array_agg(ins.event_xid ORDER BY ins.id))
        INTO v_ids, v_emitted
        FROM ins;
        v_created := array_fill(true, ARRAY[cardinality(v_ids)]);
    ELSE
        -- Rare path: one statement per spec, because each unique key may need
        -- to wait for a concurrent enqueue of the same key to commit or roll back.
        FOREACH v_spec IN ARRAY p_specs LOOP
            LOOP
                INSERT INTO jobq.live_jobs AS j (job_type, queue, args, priority, run_at, expires_at,
                                            max_attempts, unique_key, created_at, state, depends_on,
                                            run_anyway, event_xid)
                SELECT v_spec.job_type, coalesce(v_spec.queue, 'default'),
                       coalesce(v_spec.args, '{}'), coalesce(v_spec.priority, 0),
                       coalesce(v_spec.run_at, p_now), v_spec.expires_at,
                       coalesce(v_spec.max_attempts, s.max_attempts), v_spec.unique_key, p_now,
                       CASE WHEN cardinality(v_spec.depends_on) > 0
                                 OR cardinality(v_spec.depends_on_index) > 0
                            THEN 'blocked' ELSE 'waiting' END,
                       v_spec.depends_on, coalesce(v_spec.run_anyway, false), v_key
                FROM jobq._type_settings(v_spec.job_type) AS s
                ON CONFLICT (job_type, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
                RETURNING j.id INTO v_id;
                IF v_id IS NOT NULL THEN
                    v_created := v_created || true;
                    EXIT;
                END IF;
                SELECT j.id INTO v_id FROM jobq.live_jobs AS j
                WHERE j.job_type = v_spec.job_type AND j.unique_key = v_spec.unique_key;
                -- Not found: the holder of the key finished in between; insert again.
                IF v_id IS NOT NULL THEN
                    v_created := v_created || false;
                    EXIT;
                END IF;
            END LOOP;
            v_ids := v_ids || v_id;
        END LOOP;
        PERFORM jobq._emit('enqueued', NULL, array_agg(j.id ORDER BY j.id),
                           array_agg(j.state ORDER BY j.id), array_agg(j.job_type ORDER BY j.id),
                           array_agg(j.queue ORDER BY j.id), array_agg(j.attempts ORDER BY j.id), NULL,
                           array_agg(j.event_xid ORDER BY j.id))
        FROM jobq.live_jobs j
        WHERE j.id = ANY (ARRAY(SELECT u.id FROM unnest(v_ids, v_created) AS u(id, created)
                                WHERE u.created));
    END IF;
    IF v_has_parents THEN
        PERFORM jobq._wire_dependencies(p_specs, v_ids, v_created, p_now, p_where);
    END IF;
    PERFORM jobq._announce_inserted(p_specs, p_now);
    RETURN QUERY SELECT u.id, u.created FROM unnest(v_ids, v_created) WITH ORDINALITY AS u(id, created, ord)
                 ORDER BY u.ord;
END;
$$;

-- The settings that apply to a job type: its own row, else the '*' row, else
-- the built-in defaults (should an operator have deleted '*').
CREATE FUNCTION jobq._type_settings(p_job_type text)
RETURNS jobq.job_types
LANGUAGE sql STABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT s.job_type, s.max_attempts, s.backoff_base, s.backoff_max, s.backoff_jitter, s.retention,
           s.record_events, s.event_retention, s.max_running
    FROM (
        SELECT t.*, CASE WHEN t.job_type = '*' THEN 2 ELSE 1 END AS rank
        FROM jobq.job_types t WHERE t.job_type IN (p_job_type, '*')
        UNION ALL
        SELECT '*', 25, '2 seconds'::interval, '1 hour'::interval, 0.25, '7 days'::interval,
               true, '30 days'::interval, NULL::integer, 3
    ) s
    ORDER BY s.rank
    LIMIT 1
$$;

-- Exponential backoff with jitter for the given (1-based) attempt: base * 2^(n-1),
-- capped at backoff_max, then shortened by up to backoff_jitter of itself so
-- that jobs failing together do not retry together.
CREATE FUNCTION jobq._backoff(p_job_type text, p_attempt integer)
RETURNS interval
LANGUAGE sql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT least(s.backoff_max,
                 s.backoff_base * power(2::double precision, least(greatest(p_attempt, 1) - 1, 40)))
           * (1 - s.backoff_jitter * random())
    FROM jobq._type_settings(p_job_type) AS s
$$;

-- Checks an interval argument. NULL is rejected: callers apply their defaults first.
CREATE FUNCTION jobq._check_interval(p_what text, p_value interval, p_min interval, p_max interval,
                                     p_min_inclusive boolean DEFAULT true)
RETURNS interval
LANGUAGE plpgsql IMMUTABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    IF p_value IS NULL OR p_value > p_max
       OR (p_min_inclusive AND p_value < p_min) OR (NOT p_min_inclusive AND p_value <= p_min) THEN
        PERFORM jobq._raise('JQ010', format('%s must be %s %s and at most %s; got %s', p_what,
            CASE WHEN p_min_inclusive THEN 'at least' ELSE 'more than' END, p_min, p_max,
            coalesce(p_value::text, 'NULL')));
    END IF;
    RETURN p_value;
END;
$$;

-- One entry of a job's failure history. Messages are truncated rather than
-- rejected: a worker must always be able to report a failure.
CREATE FUNCTION jobq._failure(p_attempt integer, p_kind text, p_message text, p_worker text,
                              p_at timestamptz)
RETURNS jsonb
LANGUAGE sql IMMUTABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('attempt', p_attempt, 'kind', p_kind,
                              'message', left(coalesce(p_message, ''), 8192),
                              'worker', p_worker, 'at', p_at)
$$;

-- Called when a lease-fenced update matched nothing: says why, with the
-- documented SQLSTATE. Never returns. A lease that is still good means the
-- call refused to go on because cancellation was requested (jq_extend,
-- jq_replace): JQ004, and the worker should stop.
CREATE FUNCTION jobq._lease_rejected(p_id bigint, p_token uuid, p_now timestamptz)
RETURNS void
LANGUAGE plpgsql STABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_job record;
BEGIN
    SELECT j.state, j.lease_token, j.locked_until, j.cancel_requested_at INTO v_job
    FROM jobq.jobs j WHERE j.id = p_id;
    IF NOT FOUND THEN
        PERFORM jobq._raise('JQ002', format('job %s does not exist', p_id));
    END IF;
    IF v_job.state = 'running' AND v_job.lease_token = p_token
       AND v_job.locked_until > clock_timestamp() AND v_job.cancel_requested_at IS NOT NULL THEN
        PERFORM jobq._raise('JQ004', format('cancellation of job %s was requested', p_id),
            format('Requested at %s; the lease ends at %s and is not extended.',
                   v_job.cancel_requested_at, v_job.locked_until),
            'Stop working on the job and report it with jq_temp_fail or jq_perm_fail, '
            || 'which end it as cancelled (jq_complete still completes it).');
    END IF;
    PERFORM jobq._raise('JQ001', format('lease lost for job %s', p_id),
        CASE
            WHEN p_token IS NULL THEN 'No lease token was given.'
            WHEN v_job.state <> 'running' THEN format('The job is %s.', v_job.state)
            WHEN v_job.lease_token IS DISTINCT FROM p_token THEN
                'The job is held under another lease token: this lease ran out and the job was grabbed again, or the token is wrong.'
            ELSE format('The lease ran out at %s.', v_job.locked_until)
        END,
        'Stop working on the job; its new holder, if any, owns it.');
END;
$$;

-- Ends leases that ran out: the job waits again, due at once, or fails when its
-- attempts are used up. Called by every grab, so a worker that died on every
-- attempt still ends as failed and never stays running. A job whose
-- cancellation was requested ends cancelled instead: it must not run again.
-- p_before (maintenance's grace) limits it to leases that ran out before then.
--
-- It works from jobq.lease_deadlines: it takes rows whose deadline passed
-- (oldest first, as many as name p_limit jobs), ends the leases among their
-- jobs that really ran out (most of the jobs have finished or were extended,
-- and an extension has a row of its own), and drops the rows. A job it cannot
-- lock (its worker is finishing it right now) goes into a new row, due for
-- the next call, so no lease that ran out is ever forgotten. Returns how many
-- leases it ended.
CREATE FUNCTION jobq._reap_expired_leases(p_now timestamptz, p_limit integer,
                                          p_before timestamptz DEFAULT 'infinity')
RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_cut constant timestamptz := least(p_now, p_before);
    v_rows bigint;
    v_ids bigint[];
    v_ended integer;
    v_dummy integer;
    v_count integer;
BEGIN
    -- Most calls find nothing: one probe of the index's first entry. (Written
    -- as ORDER BY … LIMIT 1 because "deadline <= v_cut" alone lets the
    -- planner, which has no statistics on a fresh table, choose a sequential
    -- scan of every deadline not yet due.)
    IF NOT coalesce((SELECT d.deadline <= v_cut FROM jobq.lease_deadlines d
                     ORDER BY d.deadline LIMIT 1), false) THEN
        RETURN 0;
    END IF;
    -- As many rows, oldest first, as hold p_limit jobs (at least one row).
    SELECT count(*) INTO v_rows
    FROM (SELECT sum(cardinality(d.job_ids)) OVER (ORDER BY d.deadline)
                 - cardinality(d.job_ids) AS before
          FROM jobq.lease_deadlines d
          WHERE d.deadline <= v_cut
          ORDER BY d.deadline
          LIMIT p_limit) r
    WHERE r.before < p_limit;
    WITH due AS (
        SELECT d.ctid FROM jobq.lease_deadlines d
        WHERE d.deadline <= v_cut
        ORDER BY d.deadline
        LIMIT v_rows
        FOR UPDATE SKIP LOCKED
    ), taken AS (
        DELETE FROM jobq.lease_deadlines d USING due WHERE d.ctid = due.ctid RETURNING d.job_ids
    )
    -- Only the leases that ran out: a plain read, no locks yet.
    SELECT array_agg(j.id) INTO v_ids
    FROM jobq.live_jobs j
    WHERE j.id IN (SELECT u.id FROM taken, unnest(taken.job_ids) AS u(id))
      AND j.state = 'running' AND j.locked_until <= v_cut;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;

    -- Jobs that end here (attempts used up, or cancellation requested) move
    -- to the history; the others wait again.
    WITH expired AS (
        SELECT j.id FROM jobq.live_jobs j
        WHERE j.id = ANY (v_ids) AND j.state = 'running' AND j.locked_until <= v_cut
          AND (j.cancel_requested_at IS NOT NULL OR j.attempts >= j.max_attempts)
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM jobq.live_jobs j USING expired WHERE j.id = expired.id RETURNING j.*
    ), moved AS (
        INSERT INTO jobq.job_history (id, job_type, queue, state, priority, attempts, max_attempts,
            run_at, created_at, expires_at, started_at, attempted_at, finished_at, worker,
            unique_key, args, result, failures, replaced_by, notes, cancel_requested_at,
            depends_on, run_anyway, has_dependants, event_xid)
        SELECT g.id, g.job_type, g.queue,
               CASE WHEN g.cancel_requested_at IS NOT NULL THEN 'cancelled' ELSE 'failed' END,
               g.priority, g.attempts, g.max_attempts, g.run_at, g.created_at, g.expires_at,
               g.started_at, g.attempted_at, p_now, g.worker, g.unique_key, g.args, NULL,
               g.failures || jobq._failure(g.attempts, 'lease_expired',
                                           'lease expired at ' || g.locked_until, g.worker, p_now),
               NULL, g.notes, g.cancel_requested_at, g.depends_on, g.run_anyway,
               g.has_dependants, greatest((SELECT jobq._event_key()), g.event_xid)
        FROM gone g
        RETURNING id, job_type, queue, state, attempts, worker, event_xid, failures -> -1 ->> 'message' AS message
    )
    SELECT count(*)::integer,
           jobq._emit(NULL, 'running', array_agg(m.id ORDER BY m.id), array_agg(m.state ORDER BY m.id),
                      array_agg(m.job_type ORDER BY m.id), array_agg(m.queue ORDER BY m.id),
                      array_agg(m.attempts ORDER BY m.id), array_agg(m.worker ORDER BY m.id),
                      array_agg(m.event_xid ORDER BY m.id), array_agg(m.message ORDER BY m.id),
                      -- A cancelled job's event is 'cancelled'; a job out of
                      -- attempts gets 'lease_expired' with to_state failed.
                      array_agg(CASE WHEN m.state = 'cancelled' THEN 'cancelled'
                                     ELSE 'lease_expired' END ORDER BY m.id))
    INTO v_ended, v_dummy
    FROM moved m;

    WITH expired AS (
        SELECT j.id FROM jobq.live_jobs j
        WHERE j.id = ANY (v_ids) AND j.state = 'running' AND j.locked_until <= v_cut
          AND j.cancel_requested_at IS NULL AND j.attempts < j.max_attempts
        FOR UPDATE SKIP LOCKED
    ), requeued AS (
        UPDATE jobq.live_jobs j
        SET state = 'waiting', run_at = p_now,
            failures = j.failures || jobq._failure(j.attempts, 'lease_expired',
                                                   'lease expired at ' || j.locked_until,
                                                   j.worker, p_now),
            lease_token = NULL, locked_until = NULL, running_type = NULL,
            event_xid = greatest((SELECT jobq._event_key()), j.event_xid)
        FROM expired
        WHERE j.id = expired.id
        RETURNING j.id, j.job_type, j.queue, j.attempts, j.worker, j.event_xid,
                  j.failures -> -1 ->> 'message' AS message
    )
    SELECT count(*)::integer + v_ended,
           jobq._emit('lease_expired', 'running', array_agg(r.id ORDER BY r.id),
                      array_fill('waiting'::text, ARRAY[count(*)::integer]),
                      array_agg(r.job_type ORDER BY r.id), array_agg(r.queue ORDER BY r.id),
                      array_agg(r.attempts ORDER BY r.id), array_agg(r.worker ORDER BY r.id),
                      array_agg(r.event_xid ORDER BY r.id), array_agg(r.message ORDER BY r.id))
    INTO v_count, v_dummy
    FROM requeued r;

    -- Those another transaction held: still running and run out as far as
    -- this statement can see (the holder may yet roll back). They are due
    -- again at once for any later call, but not for this one: a maintenance
    -- run, which repeats while rows are due, must not go round in circles.
    INSERT INTO jobq.lease_deadlines (deadline, job_ids)
    SELECT p_now + interval '1 microsecond', array_agg(j.id)
    FROM jobq.live_jobs j
    WHERE j.id = ANY (v_ids) AND j.state = 'running' AND j.locked_until <= v_cut
    HAVING count(*) > 0;
    RETURN v_count;
END;
$$;

-- Ends jobs that have not started (waiting, or blocked on parents) whose
-- expires_at has passed as 'expired'. The grab never leases such a job even
-- before this runs; this makes the state say so (and releases dependants).
-- p_before limits it to deadlines that passed before then.
CREATE FUNCTION jobq._expire_jobs(p_now timestamptz, p_limit integer,
                                  p_before timestamptz DEFAULT 'infinity')
RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
    v_dummy integer;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM jobq.live_jobs j
                   WHERE j.state IN ('waiting', 'blocked') AND j.expires_at IS NOT NULL
                     AND j.expires_at <= least(p_now, p_before)) THEN
        RETURN 0;
    END IF;
    WITH overdue AS (
        SELECT j.id FROM jobq.live_jobs j
        WHERE j.state IN ('waiting', 'blocked') AND j.expires_at IS NOT NULL
          AND j.expires_at <= least(p_now, p_before)
        ORDER BY j.expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM jobq.live_jobs j USING overdue WHERE j.id = overdue.id RETURNING j.*
    ), moved AS (
        INSERT INTO jobq.job_history (id, job_type, queue, state, priority, attempts, max_attempts,
            run_at, created_at, expires_at, started_at, attempted_at, finished_at, worker,
            unique_key, args, result, failures, replaced_by, notes, cancel_requested_at,
            depends_on, run_anyway, has_dependants, event_xid)
        SELECT g.id, g.job_type, g.queue, 'expired', g.priority, g.attempts, g.max_attempts,
               g.run_at, g.created_at, g.expires_at, g.started_at, g.attempted_at, p_now, g.worker,
               g.unique_key, g.args, NULL, g.failures, NULL, g.notes, g.cancel_requested_at,
               g.depends_on, g.run_anyway, g.has_dependants,
               greatest((SELECT jobq._event_key()), g.event_xid)
        FROM gone g
        RETURNING id
    )
    SELECT count(*)::integer,
           jobq._emit('expired', NULL, array_agg(g.id ORDER BY g.id),
                      array_fill('expired'::text, ARRAY[count(*)::integer]),
                      array_agg(g.job_type ORDER BY g.id), array_agg(g.queue ORDER BY g.id),
                      array_agg(g.attempts ORDER BY g.id), NULL,
                      array_agg(greatest((SELECT jobq._event_key()), g.event_xid) ORDER BY g.id),
                      NULL, NULL, array_agg(g.state ORDER BY g.id))
    INTO v_count, v_dummy
    FROM gone g;
    RETURN v_count;
END;
$$;
