-- ============================================================================
-- jobq: producer API
-- ============================================================================

-- Inserts one job and returns its id. Every argument after args is optional and
-- SQL NULL means its default, because many drivers send NULL for "not given".
-- With a unique_key, a waiting or running job of the same type and key makes
-- this return that job's id instead of inserting.
CREATE FUNCTION jobq.jq_enqueue(
    job_type     text,
    args         jsonb       DEFAULT NULL,
    queue        text        DEFAULT NULL,
    priority     integer     DEFAULT NULL,
    run_at       timestamptz DEFAULT NULL,
    max_attempts integer     DEFAULT NULL,
    unique_key   text        DEFAULT NULL,
    expires_at   timestamptz DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
DECLARE
    v_now constant timestamptz := clock_timestamp();
    v_specs jobq.job_spec[] := ARRAY[ROW($1, $2, $3, $4, $5, $6, $7, $8)::jobq.job_spec];
BEGIN
    PERFORM jobq._validate_specs(v_specs, NULL, v_now);
    RETURN (SELECT id FROM jobq._insert_specs(v_specs, v_now) AS id);
END;
$$;
COMMENT ON FUNCTION jobq.jq_enqueue IS 'Insert one job; returns its id.';

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
    RETURN QUERY SELECT id FROM jobq._insert_specs(v_specs, v_now) AS id;
END;
$$;
COMMENT ON FUNCTION jobq.jq_enqueue_many IS 'Insert a JSON array of jobs; returns their ids in order.';
