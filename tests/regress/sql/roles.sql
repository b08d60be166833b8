-- Who may call what: nothing without a jobq role; jobq_producer enqueues and
-- reads details; jobq_worker grabs and finishes; jobq_admin does both and also
-- reads the tables and changes job_types. Internal functions are callable by
-- nobody but the owner, and every function has a pinned search_path.
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- Roles are cluster-wide: drop leftovers of an interrupted run first.
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_jobq_none;
DROP ROLE IF EXISTS regress_jobq_producer;
DROP ROLE IF EXISTS regress_jobq_worker;
DROP ROLE IF EXISTS regress_jobq_admin;
RESET client_min_messages;
CREATE ROLE regress_jobq_none NOLOGIN;
CREATE ROLE regress_jobq_producer NOLOGIN IN ROLE jobq_producer;
CREATE ROLE regress_jobq_worker NOLOGIN IN ROLE jobq_worker;
CREATE ROLE regress_jobq_admin NOLOGIN IN ROLE jobq_admin;

-- ---------------------------------------------------------------------------
-- the privilege matrix, as the catalogs see it
-- ---------------------------------------------------------------------------
-- the API functions
SELECT p.oid::regprocedure AS function,
       has_function_privilege('regress_jobq_none', p.oid, 'EXECUTE') AS "none",
       has_function_privilege('regress_jobq_producer', p.oid, 'EXECUTE') AS producer,
       has_function_privilege('regress_jobq_worker', p.oid, 'EXECUTE') AS worker,
       has_function_privilege('regress_jobq_admin', p.oid, 'EXECUTE') AS admin,
       p.prosecdef AS security_definer
FROM pg_proc p
WHERE p.pronamespace = 'jobq'::regnamespace AND p.proname LIKE 'jq\_%'
ORDER BY p.proname, p.oid::regprocedure::text;
-- the internal functions (names starting with "_"): none executable by any role,
-- none SECURITY DEFINER except trigger functions, which nobody can call directly
-- (_mark_limited_running writes jobq.live_jobs when jobq_admin sets max_running)
SELECT count(*) > 0 AS has_internal_functions,
       count(*) FILTER (WHERE has_function_privilege('regress_jobq_none', p.oid, 'EXECUTE')
                           OR has_function_privilege('regress_jobq_producer', p.oid, 'EXECUTE')
                           OR has_function_privilege('regress_jobq_worker', p.oid, 'EXECUTE')
                           OR has_function_privilege('regress_jobq_admin', p.oid, 'EXECUTE'))
           AS executable_by_a_role,
       count(*) FILTER (WHERE p.prosecdef AND p.prorettype <> 'trigger'::regtype) AS security_definer
FROM pg_proc p
WHERE p.pronamespace = 'jobq'::regnamespace AND p.proname LIKE '\_%';
-- and there is nothing else
SELECT proname AS unexpected_function FROM pg_proc
WHERE pronamespace = 'jobq'::regnamespace AND proname NOT LIKE 'jq\_%' AND proname NOT LIKE '\_%';

SELECT c.relname, r.rolname,
       has_table_privilege(r.rolname, c.oid, 'SELECT') AS sel,
       has_table_privilege(r.rolname, c.oid, 'INSERT') AS ins,
       has_table_privilege(r.rolname, c.oid, 'UPDATE') AS upd,
       has_table_privilege(r.rolname, c.oid, 'DELETE') AS del,
       has_table_privilege(r.rolname, c.oid, 'TRUNCATE') AS trunc
FROM pg_class c
CROSS JOIN (VALUES ('regress_jobq_none'), ('regress_jobq_producer'), ('regress_jobq_worker'),
                   ('regress_jobq_admin')) AS r(rolname)
WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind IN ('r', 'p', 'S', 'v')
  AND NOT c.relispartition
ORDER BY c.relname, r.rolname;
-- the history's partitions (one per day, made by maintenance) carry the
-- privileges of job_history itself
SELECT count(*) >= 4 AS has_partitions,
       bool_and((SELECT array_agg(a::text ORDER BY a::text) FROM unnest(c.relacl) a)
                = (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(p.relacl) a)) AS same_privileges
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE i.inhparent = 'jobq.job_history'::regclass;
SELECT jobq._create_history_partitions(now() + interval '10 days', now() + interval '10 days') AS created;
SELECT bool_and((SELECT array_agg(a::text ORDER BY a::text) FROM unnest(c.relacl) a)
                = (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(p.relacl) a)) AS same_privileges
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE i.inhparent = 'jobq.job_history'::regclass;

SELECT r.rolname, has_schema_privilege(r.rolname, 'jobq', 'USAGE') AS usage,
       has_schema_privilege(r.rolname, 'jobq', 'CREATE') AS "create"
FROM (VALUES ('regress_jobq_none'), ('regress_jobq_producer'), ('regress_jobq_worker'),
             ('regress_jobq_admin'), ('public')) AS r(rolname)
ORDER BY r.rolname;

-- no function is executable by PUBLIC (a NULL proacl would mean it is)
SELECT p.oid::regprocedure AS public_executable
FROM pg_proc p
WHERE p.pronamespace = 'jobq'::regnamespace
  AND (has_function_privilege('public', p.oid, 'EXECUTE')
       OR p.proacl IS NULL
       OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) AS a
                  WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'));
-- nor any table or sequence readable or writable by PUBLIC
SELECT c.relname AS public_accessible
FROM pg_class c
WHERE c.relnamespace = 'jobq'::regnamespace AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')
  AND (c.relacl IS NULL
       OR EXISTS (SELECT 1 FROM aclexplode(c.relacl) AS a WHERE a.grantee = 0));

-- every function pins its search_path (proconfig holds "search_path=jobq, pg_catalog, pg_temp");
-- _emit also fixes its plan cache mode
SELECT DISTINCT proconfig FROM pg_proc WHERE pronamespace = 'jobq'::regnamespace ORDER BY 1;
SELECT proname AS unpinned
FROM pg_proc
WHERE pronamespace = 'jobq'::regnamespace
  AND NOT coalesce(proconfig @> ARRAY['search_path=jobq, pg_catalog, pg_temp'], false);

-- A running job to aim the worker calls at.
SELECT jobq.jq_enqueue('roles') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['roles'], '1 hour', 1) \gset

-- ---------------------------------------------------------------------------
-- no jobq role: every call is refused (42501), and nothing is readable
-- ---------------------------------------------------------------------------
-- (terse: the error position would show the job id and token)
\set VERBOSITY terse
SET ROLE regress_jobq_none;
SELECT jobq.jq_enqueue('roles');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "roles"}]');
\echo :SQLSTATE
SELECT * FROM jobq.jq_grab(ARRAY['roles']);
\echo :SQLSTATE
SELECT jobq.jq_complete(:id, :'tok');
\echo :SQLSTATE
SELECT * FROM jobq.jq_complete_many(ARRAY[:id]::bigint[], ARRAY[:'tok']::uuid[]);
\echo :SQLSTATE
SELECT * FROM jobq.jq_temp_fail(:id, :'tok', 'm');
\echo :SQLSTATE
SELECT jobq.jq_perm_fail(:id, :'tok', 'm');
\echo :SQLSTATE
SELECT jobq.jq_replace(:id, :'tok', '[]');
\echo :SQLSTATE
SELECT jobq.jq_extend(:id, :'tok');
\echo :SQLSTATE
SELECT jobq.jq_details(:id);
\echo :SQLSTATE
SELECT jobq.jq_library_version() IS NOT NULL;
\echo :SQLSTATE
SELECT count(*) FROM jobq.jobs;
\echo :SQLSTATE
SELECT count(*) FROM jobq.job_types;
\echo :SQLSTATE
RESET ROLE;
\set VERBOSITY default
SELECT jobq.jq_details(:id) ->> 'state' AS still;

-- ---------------------------------------------------------------------------
-- jobq_producer: enqueue and details only
-- ---------------------------------------------------------------------------
SET ROLE regress_jobq_producer;
SELECT jobq.jq_enqueue('roles', '{"by": "producer"}') AS pid \gset
SELECT :pid IS NOT NULL AS enqueued;
SELECT count(*) AS enqueued FROM jobq.jq_enqueue_many('[{"job_type": "roles_p"}, {"job_type": "roles_p"}]');
SELECT jobq.jq_details(:pid) ->> 'state' AS state, jobq.jq_details(:pid) -> 'args' AS args;
SELECT jobq.jq_details(:id) ->> 'state' AS other_state;
SELECT jobq.jq_library_version() IS NOT NULL AS has_version;
SELECT * FROM jobq.jq_grab(ARRAY['roles']);
\echo :SQLSTATE
SELECT jobq.jq_complete(:id, :'tok');
\echo :SQLSTATE
SELECT * FROM jobq.jq_complete_many(ARRAY[:id]::bigint[], ARRAY[:'tok']::uuid[]);
\echo :SQLSTATE
SELECT * FROM jobq.jq_temp_fail(:id, :'tok', 'm');
\echo :SQLSTATE
SELECT jobq.jq_perm_fail(:id, :'tok', 'm');
\echo :SQLSTATE
SELECT jobq.jq_replace(:id, :'tok', '[]');
\echo :SQLSTATE
SELECT jobq.jq_extend(:id, :'tok');
\echo :SQLSTATE
SELECT count(*) FROM jobq.jobs;
\echo :SQLSTATE
UPDATE jobq.job_types SET max_attempts = 5 WHERE job_type = '*';
\echo :SQLSTATE
SELECT jobq._insert_specs(ARRAY[jsonb_populate_record(NULL::jobq.job_spec, '{"job_type": "roles"}')], now());
\echo :SQLSTATE
RESET ROLE;
SELECT jobq.jq_details(:id) ->> 'state' AS still;

-- ---------------------------------------------------------------------------
-- jobq_worker: grab and finish, but not enqueue, nor read tables
-- ---------------------------------------------------------------------------
SET ROLE regress_jobq_worker;
SELECT id = :pid AS got_producers_job, lease_token AS wtok
FROM jobq.jq_grab(ARRAY['roles'], '1 hour', 1, 'worker-role') \gset
SELECT :'got_producers_job' AS got_producers_job;
SELECT jobq.jq_extend(:pid, :'wtok', '2 hours') > now() AS extended;
SELECT jobq.jq_details(:pid) ->> 'state' AS state, jobq.jq_details(:pid) ->> 'worker' AS worker;
SELECT jobq.jq_complete(:pid, :'wtok', '{"ok": 1}');
SELECT jobq.jq_details(:pid) ->> 'state' AS state;
-- the batch, temp_fail, perm_fail and replace
SELECT array_agg(id ORDER BY id) AS wids, array_agg(lease_token ORDER BY id) AS wtoks
FROM jobq.jq_grab(ARRAY['roles_p'], '1 hour', 10) \gset
SELECT outcome FROM jobq.jq_complete_many(:'wids'::bigint[], :'wtoks'::uuid[]);
SELECT state FROM jobq.jq_temp_fail(:id, :'tok', 'worker says later', '0');
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['roles'], '1 hour', 1) \gset
SELECT cardinality(jobq.jq_replace(:id, :'tok', '[{"job_type": "roles_r"}]')) AS replacements;
SELECT lease_token AS tok, id AS rid FROM jobq.jq_grab(ARRAY['roles_r'], '1 hour', 1) \gset
SELECT jobq.jq_perm_fail(:rid, :'tok', 'worker gives up');
SELECT jobq.jq_details(:rid) ->> 'state' AS state;
-- not allowed
SELECT jobq.jq_enqueue('roles');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "roles"}]');
\echo :SQLSTATE
SELECT count(*) FROM jobq.jobs;
\echo :SQLSTATE
SELECT count(*) FROM jobq.job_types;
\echo :SQLSTATE
SELECT jobq._reap_expired_leases(now(), 10);
\echo :SQLSTATE
RESET ROLE;

-- ---------------------------------------------------------------------------
-- jobq_admin: both, plus reading the tables and changing job_types
-- ---------------------------------------------------------------------------
SET ROLE regress_jobq_admin;
SELECT jobq.jq_enqueue('roles_a') AS aid \gset
SELECT lease_token AS atok FROM jobq.jq_grab(ARRAY['roles_a'], '1 hour', 1) \gset
SELECT jobq.jq_complete(:aid, :'atok');
SELECT state FROM jobq.jobs WHERE id = :aid;
SELECT job_type, state FROM jobq.jobs ORDER BY id;
INSERT INTO jobq.job_types (job_type, max_attempts) VALUES ('roles_a', 2);
UPDATE jobq.job_types SET max_attempts = 4 WHERE job_type = 'roles_a';
SELECT jobq.jq_enqueue('roles_a') AS aid \gset
SELECT jobq.jq_details(:aid) -> 'max_attempts' AS max_attempts;
DELETE FROM jobq.job_types WHERE job_type = 'roles_a';
-- but the jobs themselves change only through the API
UPDATE jobq.live_jobs SET priority = 1 WHERE id = :aid;
\echo :SQLSTATE
DELETE FROM jobq.live_jobs WHERE id = :aid;
\echo :SQLSTATE
-- and the internal functions are not callable
SELECT jobq._raise('JQ010', 'from outside');
\echo :SQLSTATE
SELECT jobq._insert_specs(ARRAY[jsonb_populate_record(NULL::jobq.job_spec, '{"job_type": "roles"}')], now());
\echo :SQLSTATE
SELECT jobq._reap_expired_leases(now(), 10);
\echo :SQLSTATE
SELECT jobq._lease_rejected(:aid, NULL, now());
\echo :SQLSTATE
RESET ROLE;

-- ---------------------------------------------------------------------------
-- clean up
-- ---------------------------------------------------------------------------
DROP ROLE regress_jobq_none;
DROP ROLE regress_jobq_producer;
DROP ROLE regress_jobq_worker;
DROP ROLE regress_jobq_admin;
SELECT count(*) AS leftover_roles FROM pg_roles WHERE rolname LIKE 'regress_jobq%';
