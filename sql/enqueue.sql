-- ============================================================================
-- jobq: producer API
-- ============================================================================

-- Inserts one job and returns its id. Every argument after args is optional and
-- SQL NULL means its default, because many drivers send NULL for "not given".
-- With a unique_key, a live (blocked, waiting or running) job of the same type
-- and key makes this return that job's id instead of inserting;
-- jq_enqueue_unique says which of the two happened. With depends_on the job is
-- blocked until every parent has completed, and cancelled when one fails for
-- good, unless run_anyway.
CREATE FUNCTION jobq.jq_enqueue(
    job_type     text,
    args         jsonb       DEFAULT NULL,
    queue        text        DEFAULT NULL,
    priority     integer     DEFAULT NULL,
    run_at       timestamptz DEFAULT NULL,
    max_attempts integer     DEFAULT NULL,
    unique_key   text        DEFAULT NULL,
    expires_at   timestamptz DEFAULT NULL,
    depends_on   bigint[]    DEFAULT NULL,
    run_anyway   boolean     DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_specs jobq.job_spec[] :=
        ARRAY[ROW($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)::jobq.job_spec];
BEGIN
    PERFORM jobq._validate_specs(v_specs, NULL, v_now);
    RETURN (SELECT s.id FROM jobq._insert_specs(v_specs, v_now) AS s);
END;
$$;
COMMENT ON FUNCTION jobq.jq_enqueue IS 'Insert one job; returns its id.';

-- jq_enqueue that also says whether it inserted: created is false when a live
-- job already held the unique_key and its id came back instead. Without a
-- unique_key, created is always true.
CREATE FUNCTION jobq.jq_enqueue_unique(
    job_type     text,
    args         jsonb       DEFAULT NULL,
    queue        text        DEFAULT NULL,
    priority     integer     DEFAULT NULL,
    run_at       timestamptz DEFAULT NULL,
    max_attempts integer     DEFAULT NULL,
    unique_key   text        DEFAULT NULL,
    expires_at   timestamptz DEFAULT NULL,
    depends_on   bigint[]    DEFAULT NULL,
    run_anyway   boolean     DEFAULT NULL)
RETURNS TABLE (id bigint, created boolean)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_specs jobq.job_spec[] :=
        ARRAY[ROW($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)::jobq.job_spec];
BEGIN
    PERFORM jobq._validate_specs(v_specs, NULL, v_now);
    RETURN QUERY SELECT s.id, s.created FROM jobq._insert_specs(v_specs, v_now) AS s;
END;
$$;
COMMENT ON FUNCTION jobq.jq_enqueue_unique IS
    'Insert one job, or find the live job holding its unique_key; says which.';

-- Inserts a JSON array of job objects (keys: jq_enqueue's parameter names) in
-- one statement and returns their ids in input order. All or nothing: one bad
-- element rejects the whole call.
CREATE FUNCTION jobq.jq_enqueue_many(jobs jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_specs jobq.job_spec[] := jobq._specs_from_json($1, 'jobs');
BEGIN
    PERFORM jobq._validate_specs(v_specs, 'jobs', v_now);
    RETURN QUERY SELECT s.id FROM jobq._insert_specs(v_specs, v_now, 'jobs') AS s;
END;
$$;
COMMENT ON FUNCTION jobq.jq_enqueue_many IS 'Insert a JSON array of jobs; returns their ids in order.';
