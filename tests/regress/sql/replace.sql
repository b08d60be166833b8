-- jq_replace: in one transaction the job ends as 'replaced' and its N new
-- jobs (any types) exist; if anything is wrong, nothing changes (SPEC 2, 3).
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- ---------------------------------------------------------------------------
-- zero new jobs
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('rep') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['rep'], '1 hour', 1, 'worker-r') \gset
SELECT jobq.jq_replace(:id, :'tok', '[]') AS new_ids;
SELECT d ->> 'state' AS state, d -> 'replaced_by' AS replaced_by, d -> 'lease' = 'null' AS no_lease,
       (d ->> 'finished_at') IS NOT NULL AS finished, d -> 'failures' AS failures
FROM jobq.jq_details(:id) AS d;
SELECT count(*) AS jobs FROM jobq.jobs;
-- the token is dead afterwards
\set VERBOSITY sqlstate
SELECT jobq.jq_complete(:id, :'tok');
SELECT jobq.jq_replace(:id, :'tok', '[]');
\set VERBOSITY default

-- ---------------------------------------------------------------------------
-- one new job, with every field given
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('rep') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['rep'], '1 hour', 1) \gset
SELECT jobq.jq_replace(:id, :'tok', jsonb_build_array(jsonb_build_object(
    'job_type', 'rep_child', 'args', '{"step": 2}'::jsonb, 'queue', 'rq', 'priority', 7,
    'run_at', now() + interval '1 minute', 'max_attempts', 4, 'unique_key', 'child-1',
    'expires_at', now() + interval '1 day'))) AS new_ids \gset
SELECT cardinality(:'new_ids'::bigint[]) AS new_jobs,
       jobq.jq_details(:id) ->> 'state' AS old_state,
       jobq.jq_details(:id) -> 'replaced_by' = to_jsonb(:'new_ids'::bigint[]) AS replaced_by_ok;
SELECT d ->> 'job_type' AS job_type, d ->> 'state' AS state, d -> 'args' AS args, d ->> 'queue' AS queue,
       d -> 'priority' AS priority, d -> 'max_attempts' AS max_attempts, d ->> 'unique_key' AS unique_key,
       (d ->> 'run_at')::timestamptz > now() AS scheduled,
       (d ->> 'expires_at')::timestamptz > now() + interval '23 hours' AS expires_later
FROM jobq.jq_details((:'new_ids'::bigint[])[1]) AS d;

-- ---------------------------------------------------------------------------
-- 1000 new jobs of mixed types
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('rep') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['rep'], '1 hour', 1) \gset
SELECT count(*) AS jobs_before FROM jobq.jobs \gset
SELECT jsonb_agg(jsonb_build_object('job_type', 'rep_' || (n % 4), 'args', jsonb_build_object('n', n),
                                    'priority', n % 3) ORDER BY n) AS new_jobs
FROM generate_series(1, 1000) AS n \gset
SELECT jobq.jq_replace(:id, :'tok', :'new_jobs') AS new_ids \gset
SELECT cardinality(:'new_ids'::bigint[]) AS returned,
       (SELECT count(DISTINCT x) FROM unnest(:'new_ids'::bigint[]) AS x) AS distinct_ids,
       (SELECT count(*) FROM jobq.jobs) - :jobs_before AS jobs_added;
SELECT d ->> 'state' AS state, jsonb_array_length(d -> 'replaced_by') AS replaced_by_length,
       d -> 'replaced_by' = to_jsonb(:'new_ids'::bigint[]) AS replaced_by_is_returned
FROM jobq.jq_details(:id) AS d;
-- every new job exists, waiting, with the type and args of its position
SELECT j.job_type, j.state, count(*) AS jobs,
       bool_and((j.args ->> 'n')::int = u.ord) AS args_in_order,
       bool_and(j.job_type = 'rep_' || (u.ord % 4)) AS type_in_order,
       bool_and(j.priority = u.ord % 3) AS priority_ok
FROM unnest(:'new_ids'::bigint[]) WITH ORDINALITY AS u(id, ord)
JOIN jobq.jobs j ON j.id = u.id
GROUP BY j.job_type, j.state ORDER BY j.job_type;

-- ---------------------------------------------------------------------------
-- all or nothing: one invalid element among 1000
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('rep') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['rep'], '1 hour', 1) \gset
SELECT count(*) AS jobs_before FROM jobq.jobs \gset
SELECT md5(string_agg(j::text, '|' ORDER BY j.id)) AS snapshot FROM jobq.jobs j \gset
SELECT jsonb_agg(jsonb_build_object('job_type', CASE WHEN n = 501 THEN '' ELSE 'rep_' || (n % 4) END)
                 ORDER BY n) AS new_jobs
FROM generate_series(1, 1000) AS n \gset
SELECT jobq.jq_replace(:id, :'tok', :'new_jobs');
\echo :SQLSTATE
-- also when the bad value only shows when typed
SELECT jsonb_agg(CASE WHEN n = 1000 THEN jsonb_build_object('job_type', 'rep_0', 'run_at', 'soon')
                      ELSE jsonb_build_object('job_type', 'rep_0') END ORDER BY n) AS new_jobs
FROM generate_series(1, 1000) AS n \gset
SELECT jobq.jq_replace(:id, :'tok', :'new_jobs');
\echo :SQLSTATE
SELECT (SELECT count(*) FROM jobq.jobs) - :jobs_before AS jobs_added,
       md5(string_agg(j::text, '|' ORDER BY j.id)) = :'snapshot' AS unchanged
FROM jobq.jobs j;
SELECT d ->> 'state' AS state, d -> 'replaced_by' AS replaced_by FROM jobq.jq_details(:id) AS d;
-- the same token still works
SELECT jobq.jq_complete(:id, :'tok', '{"done": "instead"}');
SELECT jobq.jq_details(:id) ->> 'state' AS state;

-- ---------------------------------------------------------------------------
-- a stale token: JQ001 and nothing created
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('rep') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['rep'], '1 hour', 1) \gset
SELECT count(*) AS jobs_before FROM jobq.jobs \gset
\set VERBOSITY sqlstate
SELECT jobq.jq_replace(:id, gen_random_uuid(), '[{"job_type": "rep_child"}, {"job_type": "rep_child"}]');
\set VERBOSITY default
SELECT (SELECT count(*) FROM jobq.jobs) - :jobs_before AS jobs_added,
       jobq.jq_details(:id) ->> 'state' AS state;
-- a lease that ran out: JQ001 and nothing created either
SELECT jobq.jq_extend(:id, :'tok', '10 ms') IS NOT NULL AS shortened;
SELECT pg_sleep(0.05);
\set VERBOSITY sqlstate
SELECT jobq.jq_replace(:id, :'tok', '[{"job_type": "rep_child"}, {"job_type": "rep_child"}]');
\set VERBOSITY default
SELECT (SELECT count(*) FROM jobq.jobs) - :jobs_before AS jobs_added,
       jobq.jq_details(:id) ->> 'state' AS state;

-- ---------------------------------------------------------------------------
-- a job may replace itself with a job of the same type and unique_key: the
-- replacement is a new job, not the job being replaced
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('rep_self', '{"page": 1}', unique_key => 'sync-42') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['rep_self'], '1 hour', 1) \gset
SELECT jobq.jq_replace(:id, :'tok',
    '[{"job_type": "rep_self", "args": {"page": 2}, "unique_key": "sync-42"}]') AS new_ids \gset
SELECT (:'new_ids'::bigint[])[1] <> :id AS is_new_job,
       jobq.jq_details(:id) ->> 'state' AS old_state;
SELECT d ->> 'state' AS state, d -> 'args' AS args
FROM jobq.jq_details((:'new_ids'::bigint[])[1]) AS d;
SELECT state, args FROM jobq.jobs WHERE job_type = 'rep_self' ORDER BY id;
