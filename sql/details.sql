-- ============================================================================
-- jobq: inspection
-- ============================================================================

-- Everything known about a job, finished or not, as long as it has not been
-- pruned: args, state, attempts, the full failure history, the result,
-- timestamps, the current lease holder, notes and dependencies. The lease
-- token is never shown: it is the fence that only the grabbing worker may hold.
CREATE FUNCTION jobq.jq_details(id bigint)
RETURNS jsonb
LANGUAGE plpgsql STABLE STRICT
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_details jsonb;
BEGIN
    SELECT jsonb_build_object(
               'id', j.id, 'job_type', j.job_type, 'queue', j.queue, 'state', j.state,
               'priority', j.priority, 'args', j.args, 'attempts', j.attempts,
               'max_attempts', j.max_attempts, 'unique_key', j.unique_key,
               'run_at', j.run_at, 'created_at', j.created_at, 'expires_at', j.expires_at,
               'started_at', j.started_at, 'attempted_at', j.attempted_at,
               'finished_at', j.finished_at, 'worker', j.worker,
               'lease', CASE WHEN j.state = 'running' THEN jsonb_build_object(
                            'worker', j.worker, 'locked_until', j.locked_until,
                            'expired', j.locked_until <= clock_timestamp()) END,
               'result', j.result, 'failures', j.failures, 'replaced_by', to_jsonb(j.replaced_by),
               'notes', coalesce(j.notes, '{}'), 'cancel_requested_at', j.cancel_requested_at,
               'depends_on', to_jsonb(j.depends_on), 'run_anyway', j.run_anyway,
               -- The parents a blocked job still waits for.
               'waiting_for', CASE WHEN j.state = 'blocked' THEN
                                  (SELECT coalesce(jsonb_agg(d.parent_id ORDER BY d.parent_id), '[]')
                                   FROM jobq.job_dependencies d WHERE d.child_id = j.id) END)
    INTO v_details
    FROM jobq.jobs j
    WHERE j.id = jq_details.id;
    IF v_details IS NULL THEN
        PERFORM jobq._raise('JQ002', format('job %s does not exist', jq_details.id));
    END IF;
    RETURN v_details;
END;
$$;
COMMENT ON FUNCTION jobq.jq_details IS 'Everything known about a job, as jsonb (never its lease token).';
