-- ============================================================================
-- jobq: roles and grants (runs last)
--
-- Nobody may call anything until granted one of three roles:
--   jobq_producer  enqueue jobs and read their details
--   jobq_worker    grab jobs and finish them (complete, fail, replace, extend)
--   jobq_admin     both, plus reading every table and changing job_types
-- The API functions are SECURITY DEFINER with a pinned search_path, so the
-- roles need no privileges on the tables themselves. Roles are cluster-wide:
-- they are created once and survive DROP EXTENSION.
-- ============================================================================

DO $$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['jobq_producer', 'jobq_worker', 'jobq_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', v_role);
        END IF;
    END LOOP;
    IF NOT pg_catalog.pg_has_role('jobq_admin', 'jobq_producer', 'MEMBER') THEN
        GRANT jobq_producer TO jobq_admin;
    END IF;
    IF NOT pg_catalog.pg_has_role('jobq_admin', 'jobq_worker', 'MEMBER') THEN
        GRANT jobq_worker TO jobq_admin;
    END IF;
END;
$$;

REVOKE ALL ON SCHEMA jobq FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA jobq FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA jobq FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobq FROM PUBLIC;
GRANT USAGE ON SCHEMA jobq TO jobq_producer, jobq_worker, jobq_admin;

GRANT EXECUTE ON FUNCTION
    jobq.jq_enqueue(text, jsonb, text, integer, timestamptz, integer, text, timestamptz),
    jobq.jq_enqueue_many(jsonb),
    jobq.jq_details(bigint),
    jobq.jq_library_version()
TO jobq_producer;

GRANT EXECUTE ON FUNCTION
    jobq.jq_grab(text[], interval, integer, text, jsonb, text[]),
    jobq.jq_complete(bigint, uuid, jsonb),
    jobq.jq_complete_many(bigint[], uuid[], jsonb[]),
    jobq.jq_temp_fail(bigint, uuid, text, interval),
    jobq.jq_perm_fail(bigint, uuid, text),
    jobq.jq_replace(bigint, uuid, jsonb),
    jobq.jq_extend(bigint, uuid, interval),
    jobq.jq_details(bigint),
    jobq.jq_library_version()
TO jobq_worker;

GRANT SELECT ON ALL TABLES IN SCHEMA jobq TO jobq_admin;
GRANT INSERT, UPDATE, DELETE ON jobq.job_types TO jobq_admin;
