-- ============================================================================
-- jobq: concurrency limits (jobq.job_types.max_running)
--
-- jq_grab counts the running jobs of a limited type through
-- jobq.live_jobs.running_type, which only grabs of limited types set (so the
-- grabs of every other type stay HOT). A type that gets a limit while some of
-- its jobs run has those jobs marked here, so that they count at once.
-- ============================================================================

CREATE FUNCTION jobq._mark_limited_running()
RETURNS trigger
LANGUAGE plpgsql VOLATILE
-- jobq_admin changes job_types but may not write jobq.live_jobs itself.
SECURITY DEFINER
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE jobq.live_jobs j
    SET running_type = j.job_type
    WHERE j.job_type = NEW.job_type AND j.state = 'running' AND j.running_type IS NULL;
    RETURN NULL;
END;
$$;

CREATE TRIGGER job_types_mark_limited_running
    AFTER INSERT OR UPDATE OF max_running ON jobq.job_types
    FOR EACH ROW WHEN (NEW.max_running IS NOT NULL)
    EXECUTE FUNCTION jobq._mark_limited_running();
