-- ============================================================================
-- jobq: backup and restore
--
-- pg_dump leaves out the rows of an extension's tables unless the extension
-- marks them as configuration: every table below holds user data, so all are
-- marked, with their sequences, and a dump restored with psql or pg_restore
-- brings back every job, finished or not, its history, dependencies and
-- events, the settings, and the ids where they were. The history's dated
-- partitions are not part of the extension (maintenance makes them), so
-- pg_dump dumps them as ordinary tables, rows and all.
--
-- A restore first runs CREATE EXTENSION jobq, which inserts the rows that
-- every installation has (the '*' defaults, the maintenance row, the event
-- clock); the dump then inserts its own copies of them. The triggers below
-- let the copy from the dump replace the installation's row instead of
-- failing on its key, which would lose the whole table's data.
-- ============================================================================

SELECT pg_catalog.pg_extension_config_dump('jobq.job_types', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.live_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.live_jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.lease_deadlines', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.job_history_default', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.job_dependencies', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.queues', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.seen_workers', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.maintenance', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.event_batches', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.event_ids', '');
SELECT pg_catalog.pg_extension_config_dump('jobq.event_clock', '');

-- A row inserted under the key of a row that every installation has replaces
-- that row. Also for an operator's INSERT of '*': it sets the defaults.
CREATE FUNCTION jobq._replace_installed_row()
RETURNS trigger
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT
SET search_path = jobq, pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_TABLE_NAME = 'job_types' THEN
        DELETE FROM jobq.job_types t WHERE t.job_type = NEW.job_type;
    ELSIF TG_TABLE_NAME = 'maintenance' THEN
        DELETE FROM jobq.maintenance m WHERE m.id = NEW.id;
    ELSIF TG_TABLE_NAME = 'event_clock' THEN
        DELETE FROM jobq.event_clock c WHERE c.id = NEW.id;
        -- Only a restore inserts this row (nobody is granted INSERT on it):
        -- the restored keys may be ahead of this cluster's transaction ids,
        -- and the first writer sets the clock's shift (_restart_event_clock).
        NEW.restored := true;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER job_types_replace_defaults
    BEFORE INSERT ON jobq.job_types
    FOR EACH ROW WHEN (NEW.job_type = '*')
    EXECUTE FUNCTION jobq._replace_installed_row();
CREATE TRIGGER maintenance_replace_installed
    BEFORE INSERT ON jobq.maintenance
    FOR EACH ROW
    EXECUTE FUNCTION jobq._replace_installed_row();
CREATE TRIGGER event_clock_replace_installed
    BEFORE INSERT ON jobq.event_clock
    FOR EACH ROW
    EXECUTE FUNCTION jobq._replace_installed_row();
