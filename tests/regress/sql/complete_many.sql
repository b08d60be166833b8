-- jq_complete_many: the batch form of jq_complete. It never raises for a lost
-- lease; it reports one outcome per input element, in input order:
-- 'completed', 'lease_lost' or 'not_found'.
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- six running jobs, labelled j1..j6 by their args
SELECT count(*) AS enqueued
FROM jobq.jq_enqueue_many((SELECT jsonb_agg(jsonb_build_object('job_type', 'cm',
                                                               'args', jsonb_build_object('n', 'j' || n))
                                            ORDER BY n)
                           FROM generate_series(1, 6) AS n));
SELECT array_agg(id ORDER BY args ->> 'n') AS ids, array_agg(lease_token ORDER BY args ->> 'n') AS toks
FROM jobq.jq_grab(ARRAY['cm'], '1 hour', 10) \gset
-- j5 is already completed, so its token is stale
SELECT jobq.jq_complete((:'ids'::bigint[])[5], (:'toks'::uuid[])[5]);
-- j6's lease runs out
SELECT jobq.jq_extend((:'ids'::bigint[])[6], (:'toks'::uuid[])[6], '10 ms') IS NOT NULL AS shortened;
SELECT pg_sleep(0.05);

-- input order: j3 (good), j1 (good), unknown id, j2 (wrong token), j4 (good),
-- j5 (finished), j6 (lease ran out), another unknown id with a NULL token
SELECT u.ord, coalesce(j.args ->> 'n', 'unknown') AS job, u.outcome, u.id IS NOT DISTINCT FROM i.id AS id_echoed
FROM jobq.jq_complete_many(
         ARRAY[(:'ids'::bigint[])[3], (:'ids'::bigint[])[1], -1, (:'ids'::bigint[])[2],
               (:'ids'::bigint[])[4], (:'ids'::bigint[])[5], (:'ids'::bigint[])[6], -2],
         ARRAY[(:'toks'::uuid[])[3], (:'toks'::uuid[])[1], gen_random_uuid(), gen_random_uuid(),
               (:'toks'::uuid[])[4], (:'toks'::uuid[])[5], (:'toks'::uuid[])[6], NULL],
         ARRAY['{"r": 3}', NULL, '{"r": "unknown"}', '{"r": 2}', '{"r": 4}']::jsonb[])
     WITH ORDINALITY AS u(id, outcome, ord)
JOIN unnest(ARRAY[(:'ids'::bigint[])[3], (:'ids'::bigint[])[1], -1, (:'ids'::bigint[])[2],
                  (:'ids'::bigint[])[4], (:'ids'::bigint[])[5], (:'ids'::bigint[])[6], -2])
     WITH ORDINALITY AS i(id, ord) ON i.ord = u.ord
LEFT JOIN jobq.jobs j ON j.id = u.id
ORDER BY u.ord;

-- only the good ones were completed, each with its own result
SELECT args ->> 'n' AS job, state, result, lease_token IS NOT NULL AS has_lease
FROM jobq.jobs WHERE job_type = 'cm' ORDER BY args ->> 'n';
-- j2 is still running under its token
SELECT jobq.jq_complete((:'ids'::bigint[])[2], (:'toks'::uuid[])[2], '{"r": "later"}');
SELECT jobq.jq_details((:'ids'::bigint[])[2]) ->> 'state' AS j2;

-- the same id twice: one element completes the job, the other reports lease_lost
SELECT jobq.jq_enqueue('cm_dup') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['cm_dup'], '1 hour', 1) \gset
SELECT outcome FROM jobq.jq_complete_many(ARRAY[:id, :id]::bigint[],
                                          ARRAY[gen_random_uuid(), :'tok'::uuid]);
SELECT jobq.jq_enqueue('cm_dup') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['cm_dup'], '1 hour', 1) \gset
SELECT array_agg(outcome ORDER BY outcome) AS outcomes
FROM jobq.jq_complete_many(ARRAY[:id, :id]::bigint[], ARRAY[:'tok', :'tok']::uuid[]);

-- no results at all, and empty input
SELECT jobq.jq_enqueue('cm_plain') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['cm_plain'], '1 hour', 1) \gset
SELECT outcome FROM jobq.jq_complete_many(ARRAY[:id]::bigint[], ARRAY[:'tok']::uuid[]);
SELECT state, result FROM jobq.jobs WHERE id = :id;
SELECT count(*) AS outcomes FROM jobq.jq_complete_many('{}', '{}');
SELECT count(*) AS outcomes FROM jobq.jq_complete_many('{}', '{}', '{}');

-- mismatched lengths: JQ010, and nothing is completed
SELECT jobq.jq_enqueue('cm_bad') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['cm_bad'], '1 hour', 1) \gset
SELECT * FROM jobq.jq_complete_many(ARRAY[:id, -1]::bigint[], ARRAY[:'tok']::uuid[]);
\echo :SQLSTATE
SELECT * FROM jobq.jq_complete_many(ARRAY[:id]::bigint[], ARRAY[:'tok', :'tok']::uuid[]);
\echo :SQLSTATE
SELECT * FROM jobq.jq_complete_many(ARRAY[:id]::bigint[], ARRAY[:'tok']::uuid[], ARRAY['{}', '{}']::jsonb[]);
\echo :SQLSTATE
SELECT * FROM jobq.jq_complete_many(NULL, ARRAY[:'tok']::uuid[]);
\echo :SQLSTATE
SELECT * FROM jobq.jq_complete_many(ARRAY[:id]::bigint[], NULL);
\echo :SQLSTATE
-- a result over 1 MiB: JQ011
SELECT * FROM jobq.jq_complete_many(ARRAY[:id]::bigint[], ARRAY[:'tok']::uuid[],
                                    ARRAY[jsonb_build_object('x', repeat('a', 1100000))]);
\echo :SQLSTATE
SELECT jobq.jq_details(:id) ->> 'state' AS state;
SELECT outcome FROM jobq.jq_complete_many(ARRAY[:id]::bigint[], ARRAY[:'tok']::uuid[]);
