-- ============================================================================
-- jobq: the history of finished jobs
--
-- jobq.job_history (schema.sql) is partitioned by finished_at, one partition
-- per UTC day, named job_history_pYYYYMMDD. Maintenance keeps partitions for
-- today and the next two days, and drops a day's partition once the whole day
-- is older than the longest retention of any job type. A job past its own
-- type's retention is hidden from every function and view at once
-- (_retained), so retention per type holds to the second while storage is
-- reclaimed a day at a time, without deleting rows one by one. Rows of days
-- without a partition land in job_history_default and stay there; maintenance
-- prunes them row by row.
-- ============================================================================

-- Whether a finished job is still retained: finished no longer ago than its
-- type's retention (own row, else '*', else 7 days).
CREATE FUNCTION jobq._retained(p_job_type text, p_finished_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT p_finished_at >= now() - coalesce(
        (SELECT t.retention FROM jobq.job_types t WHERE t.job_type = p_job_type),
        (SELECT d.retention FROM jobq.job_types d WHERE d.job_type = '*'),
        interval '7 days')
$$;

-- The longest retention of any job type: no row younger than this is dropped.
CREATE FUNCTION jobq._longest_retention()
RETURNS interval
LANGUAGE sql STABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT greatest(max(t.retention),
                    CASE WHEN bool_or(t.job_type = '*') THEN NULL ELSE interval '7 days' END)
    FROM jobq.job_types t
$$;

-- The partitions of jobq.job_history with their UTC day, oldest first.
CREATE FUNCTION jobq._history_partitions()
RETURNS TABLE (name text, day date)
LANGUAGE sql STABLE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
    SELECT c.relname::text, to_date(substr(c.relname, 14), 'YYYYMMDD')
    FROM pg_catalog.pg_inherits i
    JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'jobq.job_history'::regclass
      AND c.relname ~ '^job_history_p[0-9]{8}$'
    ORDER BY 2
$$;

-- Creates the partitions for the UTC days of p_from .. p_to that do not exist
-- yet, each with its own index on id. The new table is made on its own and
-- attached, which takes a lighter lock on job_history than CREATE TABLE ...
-- PARTITION OF: finishing jobs go on meanwhile. A day that already has rows
-- in the default partition (the day of installation, or a server that ran
-- without maintenance for days) gets none: its rows stay there and are
-- pruned row by row. Moving them would make them vanish, for an instant,
-- from readers whose plan predates the new partition. Returns how many it
-- created.
CREATE FUNCTION jobq._create_history_partitions(p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_day date;
    v_name text;
    v_lo timestamptz;
    v_hi timestamptz;
    v_count integer := 0;
BEGIN
    FOR v_day IN SELECT generate_series((p_from AT TIME ZONE 'UTC')::date,
                                        (p_to AT TIME ZONE 'UTC')::date, interval '1 day')::date LOOP
        v_name := 'job_history_p' || to_char(v_day, 'YYYYMMDD');
        CONTINUE WHEN EXISTS (SELECT 1 FROM jobq._history_partitions() p WHERE p.name = v_name);
        v_lo := v_day::timestamp AT TIME ZONE 'UTC';
        v_hi := (v_day + 1)::timestamp AT TIME ZONE 'UTC';
        CONTINUE WHEN EXISTS (SELECT 1 FROM jobq.job_history_default d
                              WHERE d.finished_at >= v_lo AND d.finished_at < v_hi);
        BEGIN
            EXECUTE format('CREATE TABLE jobq.%I (LIKE jobq.job_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           v_name);
            -- The privileges of job_history itself (security.sql), so that no
            -- partition is readable by more roles than the table.
            EXECUTE format('REVOKE ALL ON jobq.%I FROM PUBLIC', v_name);
            EXECUTE format('GRANT SELECT ON jobq.%I TO jobq_admin', v_name);
            -- Its own index (job_history has none: see schema.sql).
            EXECUTE format('CREATE INDEX %I ON jobq.%I (id)', v_name || '_id_idx', v_name);
            EXECUTE format('ALTER TABLE jobq.job_history ATTACH PARTITION jobq.%I FOR VALUES FROM (%L) TO (%L)',
                           v_name, v_lo, v_hi);
            v_count := v_count + 1;
        EXCEPTION WHEN check_violation THEN
            -- A job of that day finished into the default partition since
            -- the check above: the day stays there, like the others.
            NULL;
        END;
    END LOOP;
    RETURN v_count;
END;
$$;

-- Drops one partition of the history. Partitions made while the extension
-- was created or updated belong to it, which would forbid the drop: they
-- leave the extension first.
CREATE FUNCTION jobq._drop_history_partition(p_name text)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
               WHERE d.classid = 'pg_catalog.pg_class'::regclass
                 AND d.objid = format('jobq.%I', p_name)::regclass
                 AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e') THEN
        EXECUTE format('ALTER EXTENSION jobq DROP TABLE jobq.%I', p_name);
    END IF;
    EXECUTE format('DROP TABLE jobq.%I', p_name);
END;
$$;

-- Keeps the history's partitions: creates those of the next three days
-- (from the first that begins an hour from now), drops whole days older than
-- the longest retention, and deletes up to p_limit old rows of the default
-- partition. A partition that cannot be
-- dropped at once (a query holds the history) is left for the next run
-- rather than waited for: dropping locks the whole history table. Returns
-- {created, dropped, pruned_jobs (rows deleted from the default partition)}.
CREATE FUNCTION jobq._manage_history(p_now timestamptz, p_limit integer)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_horizon constant timestamptz := p_now - jobq._longest_retention();
    v_created integer;
    v_dropped integer := 0;
    v_pruned integer;
    v_part record;
    v_lock_timeout constant text := current_setting('lock_timeout');
BEGIN
    -- Only days that begin an hour from now or later: a job finishing while
    -- its day's partition is attached fails (PostgreSQL routed it to the
    -- default partition, whose constraint the attach has just narrowed), so
    -- a day that has begun keeps its rows in the default partition.
    -- And not before the database holds a job: a restore runs CREATE
    -- EXTENSION before it creates the dumped partitions, and one made in
    -- between would take a dumped name.
    IF EXISTS (SELECT 1 FROM jobq.live_jobs) OR EXISTS (SELECT 1 FROM jobq.job_history) THEN
        v_created := jobq._create_history_partitions(
            (((p_now + interval '1 hour') AT TIME ZONE 'UTC')::date + 1)::timestamp AT TIME ZONE 'UTC',
            p_now + interval '3 days');
    ELSE
        v_created := 0;
    END IF;
    FOR v_part IN SELECT p.name FROM jobq._history_partitions() p
                  WHERE (p.day + 1)::timestamp AT TIME ZONE 'UTC' <= v_horizon LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '50ms', true);
            PERFORM jobq._drop_history_partition(v_part.name);
            v_dropped := v_dropped + 1;
        EXCEPTION WHEN lock_not_available THEN
            RAISE LOG 'jobq: history partition % is busy; dropping it later', v_part.name;
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', v_lock_timeout, true);
    DELETE FROM jobq.job_history_default d
    WHERE d.ctid = ANY (ARRAY(SELECT o.ctid FROM jobq.job_history_default o
                              WHERE o.finished_at < v_horizon LIMIT p_limit));
    GET DIAGNOSTICS v_pruned = ROW_COUNT;
    RETURN jsonb_build_object('created', v_created, 'dropped', v_dropped, 'pruned_jobs', v_pruned);
END;
$$;
