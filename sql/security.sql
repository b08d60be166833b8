-- ============================================================================
-- jobq: roles and grants (runs last)
--
-- Nobody may call anything until granted one of four roles:
--   jobq_producer  enqueue jobs and read their details
--   jobq_worker    grab jobs and finish them (complete, fail, replace, extend)
--   jobq_observer  read events and job details (auditors, dashboards, subscribers)
--   jobq_admin     all of these, plus reading every table, changing job_types
--                  and pruning events
-- The API functions are SECURITY DEFINER with a pinned search_path, so the
-- roles need no privileges on the tables themselves. Roles are cluster-wide:
-- they are created once and survive DROP EXTENSION.
-- ============================================================================

-- Roles are shared by all databases, and two databases may run CREATE
-- EXTENSION at the same moment: a role or membership created concurrently
-- surfaces as unique_violation (or duplicate_object), which means it exists.
DO $$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['jobq_producer', 'jobq_worker', 'jobq_observer', 'jobq_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', v_role);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
    FOREACH v_role IN ARRAY ARRAY['jobq_producer', 'jobq_worker', 'jobq_observer'] LOOP
        IF NOT pg_catalog.pg_has_role('jobq_admin', v_role, 'MEMBER') THEN
            BEGIN
                EXECUTE pg_catalog.format('GRANT %I TO jobq_admin', v_role);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END;
$$;

REVOKE ALL ON SCHEMA jobq FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA jobq FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA jobq FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobq FROM PUBLIC;
GRANT USAGE ON SCHEMA jobq TO jobq_producer, jobq_worker, jobq_observer, jobq_admin;

GRANT EXECUTE ON FUNCTION
    jobq.jq_enqueue(text, jsonb, text, integer, timestamptz, integer, text, timestamptz, bigint[],
                    boolean),
    jobq.jq_enqueue_unique(text, jsonb, text, integer, timestamptz, integer, text, timestamptz,
                           bigint[], boolean),
    jobq.jq_enqueue_many(jsonb),
    jobq.jq_details(bigint),
    jobq.jq_library_version()
TO jobq_producer;

GRANT EXECUTE ON FUNCTION
    jobq.jq_grab(text[], interval, integer, text, jsonb, text[], boolean),
    jobq.jq_complete(bigint, uuid, jsonb),
    jobq.jq_complete_many(bigint[], uuid[], jsonb[]),
    jobq.jq_temp_fail(bigint, uuid, text, interval),
    jobq.jq_perm_fail(bigint, uuid, text),
    jobq.jq_replace(bigint, uuid, jsonb),
    jobq.jq_extend(bigint, uuid, interval),
    jobq.jq_details(bigint),
    jobq.jq_library_version()
TO jobq_worker;

-- Producers and workers do not read events: the stream shows every job of
-- every type, which is an observer's business, not theirs.
GRANT EXECUTE ON FUNCTION
    jobq.jq_events_since(text, integer),
    jobq.jq_events_for_job(bigint),
    jobq.jq_details(bigint),
    jobq.jq_library_version()
TO jobq_observer;

GRANT EXECUTE ON FUNCTION jobq.jq_prune_events() TO jobq_admin;

GRANT SELECT ON ALL TABLES IN SCHEMA jobq TO jobq_admin;
GRANT INSERT, UPDATE, DELETE ON jobq.job_types TO jobq_admin;

GRANT EXECUTE ON FUNCTION jobq.jq_announce_due(interval), jobq.jq_wakeup_workers() TO jobq_admin;

-- The wake-up worker is not started here but by the first grab, as after
-- every server restart: a restore runs CREATE EXTENSION before it loads the
-- rows, and maintenance must not act on a database that is half restored.

-- The worker runtime's batch heartbeat and the hand-back of prefetched jobs.
GRANT EXECUTE ON FUNCTION
    jobq.jq_extend_many(bigint[], uuid[], interval),
    jobq.jq_release(bigint, uuid),
    jobq.jq_release_many(bigint[], uuid[])
TO jobq_worker;

-- Job control and operations (sql/control.sql). Producers may cancel (an
-- application withdrawing work it asked for); retrying, pausing and
-- maintenance are the operators'. Workers write notes on the jobs they hold.
GRANT EXECUTE ON FUNCTION jobq.jq_cancel(bigint) TO jobq_producer, jobq_admin;
GRANT EXECUTE ON FUNCTION jobq.jq_note(bigint, uuid, jsonb) TO jobq_worker;
GRANT EXECUTE ON FUNCTION
    jobq.jq_retry(bigint, integer),
    jobq.jq_pause_queue(text),
    jobq.jq_resume_queue(text),
    jobq.jq_maintain()
TO jobq_admin;
GRANT SELECT ON jobq.queue_stats, jobq.running_jobs, jobq.failed_jobs, jobq.workers
TO jobq_observer, jobq_admin;
GRANT UPDATE (every, budget) ON jobq.maintenance TO jobq_admin;

-- No history partition is made here: tables made by CREATE EXTENSION belong
-- to the extension, and pg_dump would leave their rows out (and a restore,
-- which runs CREATE EXTENSION before creating the dumped partitions, would
-- find their names taken). Finished jobs land in job_history_default until
-- maintenance makes the day's partition and moves them there.
