-- Which jobs a grab returns, and in what order (SPEC section 3, jq_grab):
-- priority (lower first), then run_at, then id; only due jobs; search (@>),
-- job_types and queues filters; max_jobs; unique_key; jq_enqueue_many order.
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- ---------------------------------------------------------------------------
-- order: priority, then run_at, then id
-- ---------------------------------------------------------------------------
SELECT count(*) AS enqueued FROM (
    SELECT jobq.jq_enqueue('ord', '{"n": "a1"}', priority => 0,   run_at => '2020-01-02 00:00+00')
    UNION ALL
    SELECT jobq.jq_enqueue('ord', '{"n": "d"}',  priority => 10,  run_at => '2019-01-01 00:00+00')
    UNION ALL
    SELECT jobq.jq_enqueue('ord', '{"n": "future"}', priority => -100,
                           run_at => now() + interval '1 hour')
    UNION ALL
    SELECT jobq.jq_enqueue('ord', '{"n": "b"}',  priority => 0,   run_at => '2020-01-01 00:00+00')
    UNION ALL
    SELECT jobq.jq_enqueue('ord', '{"n": "a2"}', priority => 0,   run_at => '2020-01-02 00:00+00')
    UNION ALL
    SELECT jobq.jq_enqueue('ord', '{"n": "c"}',  priority => -5,  run_at => '2020-01-03 00:00+00')
    UNION ALL
    SELECT jobq.jq_enqueue('ord', '{"n": "max"}', priority => 32767)
    UNION ALL
    SELECT jobq.jq_enqueue('ord', '{"n": "min"}', priority => -32768)
) AS e;
-- one at a time: min, c, b, a1, a2 (same run_at: by id), d, max; never "future"
SELECT args ->> 'n' AS n, priority FROM jobq.jq_grab(ARRAY['ord'], '1 hour', 1);
SELECT args ->> 'n' AS n, priority FROM jobq.jq_grab(ARRAY['ord'], '1 hour', 1);
SELECT args ->> 'n' AS n, priority FROM jobq.jq_grab(ARRAY['ord'], '1 hour', 1);
SELECT args ->> 'n' AS n, priority FROM jobq.jq_grab(ARRAY['ord'], '1 hour', 1);
SELECT args ->> 'n' AS n, priority FROM jobq.jq_grab(ARRAY['ord'], '1 hour', 1);
SELECT args ->> 'n' AS n, priority FROM jobq.jq_grab(ARRAY['ord'], '1 hour', 1);
SELECT args ->> 'n' AS n, priority FROM jobq.jq_grab(ARRAY['ord'], '1 hour', 1);
SELECT args ->> 'n' AS n, priority FROM jobq.jq_grab(ARRAY['ord'], '1 hour', 1);
SELECT args ->> 'n' AS n, state FROM jobq.jobs WHERE job_type = 'ord' AND state <> 'running';

-- in one batch the rows come back in the same order
SELECT count(*) AS enqueued
FROM jobq.jq_enqueue_many('[
    {"job_type": "ord2", "args": {"n": "a1"}, "run_at": "2020-01-02 00:00+00"},
    {"job_type": "ord2", "args": {"n": "d"},  "run_at": "2019-01-01 00:00+00", "priority": 10},
    {"job_type": "ord2", "args": {"n": "b"},  "run_at": "2020-01-01 00:00+00"},
    {"job_type": "ord2", "args": {"n": "a2"}, "run_at": "2020-01-02 00:00+00"},
    {"job_type": "ord2", "args": {"n": "c"},  "run_at": "2020-01-03 00:00+00", "priority": -5}
]');
SELECT g.ordinality, g.args ->> 'n' AS n, g.priority, g.attempt
FROM jobq.jq_grab(ARRAY['ord2'], '1 hour', 10) WITH ORDINALITY AS g
ORDER BY g.ordinality;

-- a job becomes grabbable once its run_at has passed
UPDATE jobq.live_jobs SET run_at = now() - interval '1 second' WHERE args ->> 'n' = 'future';
SELECT args ->> 'n' AS n FROM jobq.jq_grab(ARRAY['ord'], '1 hour', 10);

-- ---------------------------------------------------------------------------
-- search: only jobs whose args contain the search document (@>)
-- (each grab runs in a transaction that is rolled back, so the jobs stay waiting)
-- ---------------------------------------------------------------------------
SELECT count(*) AS enqueued
FROM jobq.jq_enqueue_many('[
    {"job_type": "srch", "args": {"n": 1, "customer": 1, "kind": "mail"}},
    {"job_type": "srch", "args": {"n": 2, "customer": 2}},
    {"job_type": "srch", "args": {"n": 3, "customer": 1, "nested": {"a": 1, "b": {"c": true}}}},
    {"job_type": "srch", "args": {"n": 4, "tags": ["x", "y"], "customer": "1"}},
    {"job_type": "srch"}
]');
BEGIN;
SELECT args -> 'n' AS n FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', '{"customer": 1}');
ROLLBACK;
BEGIN;
SELECT args -> 'n' AS n FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', '{"customer": 1, "kind": "mail"}');
ROLLBACK;
BEGIN;
SELECT args -> 'n' AS n FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', '{"nested": {"a": 1}}');
ROLLBACK;
BEGIN;
SELECT args -> 'n' AS n FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', '{"nested": {"b": {"c": true}}}');
ROLLBACK;
BEGIN;
SELECT args -> 'n' AS n FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', '{"nested": {"a": 2}}');
ROLLBACK;
BEGIN;
SELECT args -> 'n' AS n FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', '{"tags": ["y"]}');
ROLLBACK;
BEGIN;
SELECT args -> 'n' AS n FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', '{"customer": "1"}');
ROLLBACK;
BEGIN;
SELECT args -> 'n' AS n FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', '{"customer": 3}');
ROLLBACK;
-- the empty document matches every job, and so does NULL (no search)
BEGIN;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', '{}');
ROLLBACK;
BEGIN;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', NULL);
ROLLBACK;
-- a searched grab leases only what it returned
SELECT args -> 'n' AS n FROM jobq.jq_grab(ARRAY['srch'], '1 hour', 10, 'w', '{"customer": 2}');
SELECT args -> 'n' AS n, state FROM jobq.jobs WHERE job_type = 'srch' ORDER BY id;

-- ---------------------------------------------------------------------------
-- job_types and queues filters (NULL means any)
-- ---------------------------------------------------------------------------
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
SELECT count(*) AS enqueued
FROM jobq.jq_enqueue_many('[
    {"job_type": "t1", "args": {"n": "t1/default"}},
    {"job_type": "t2", "args": {"n": "t2/default"}},
    {"job_type": "t3", "args": {"n": "t3/default"}},
    {"job_type": "t1", "args": {"n": "t1/q1"}, "queue": "q1"},
    {"job_type": "t2", "args": {"n": "t2/q1"}, "queue": "q1"},
    {"job_type": "t1", "args": {"n": "t1/q2"}, "queue": "q2"}
]');
BEGIN;
SELECT args ->> 'n' AS n, queue FROM jobq.jq_grab(ARRAY['t1', 't3'], '1 hour', 10);
ROLLBACK;
BEGIN;
SELECT args ->> 'n' AS n, queue FROM jobq.jq_grab(NULL, '1 hour', 10);
ROLLBACK;
BEGIN;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY[]::text[], '1 hour', 10);
ROLLBACK;
BEGIN;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['t9'], '1 hour', 10);
ROLLBACK;
BEGIN;
SELECT args ->> 'n' AS n, queue FROM jobq.jq_grab(NULL, '1 hour', 10, queues => ARRAY['q1']);
ROLLBACK;
BEGIN;
SELECT args ->> 'n' AS n, queue FROM jobq.jq_grab(NULL, '1 hour', 10, queues => ARRAY['q2', 'default']);
ROLLBACK;
BEGIN;
SELECT args ->> 'n' AS n, queue FROM jobq.jq_grab(ARRAY['t1'], '1 hour', 10, queues => ARRAY['q1', 'q2']);
ROLLBACK;
BEGIN;
SELECT args ->> 'n' AS n, queue
FROM jobq.jq_grab(ARRAY['t2'], '1 hour', 10, search => '{"n": "t2/q1"}', queues => ARRAY['q1']);
ROLLBACK;
BEGIN;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['t3'], '1 hour', 10, queues => ARRAY['q1']);
ROLLBACK;

-- ---------------------------------------------------------------------------
-- max_jobs limits the batch (NULL means 1)
-- ---------------------------------------------------------------------------
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
SELECT count(*) AS enqueued
FROM jobq.jq_enqueue_many((SELECT jsonb_agg(jsonb_build_object('job_type', 'batch'))
                           FROM generate_series(1, 6)));
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['batch'], '1 hour', 4);
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['batch'], '1 hour', NULL);
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['batch'], '1 hour', 4);
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['batch'], '1 hour', 4);
SELECT state, count(*) FROM jobq.jobs GROUP BY state;

-- ---------------------------------------------------------------------------
-- unique_key: one live job per (job_type, unique_key)
-- ---------------------------------------------------------------------------
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
SELECT jobq.jq_enqueue('uniq', '{"v": 1}', unique_key => 'k') AS first \gset
SELECT jobq.jq_enqueue('uniq', '{"v": 2}', unique_key => 'k') = :first AS same_while_waiting;
SELECT array_agg(id = :first ORDER BY ord) AS same_in_batch
FROM jobq.jq_enqueue_many('[{"job_type": "uniq", "unique_key": "k"},
                            {"job_type": "uniq", "unique_key": "k2"},
                            {"job_type": "uniq", "unique_key": "k"}]') WITH ORDINALITY AS m(id, ord);
-- the first enqueue's args are kept
SELECT jobq.jq_details(:first) -> 'args' AS args, jobq.jq_details(:first) ->> 'unique_key' AS unique_key;
-- another type, or no key at all, is another job
SELECT jobq.jq_enqueue('uniq_other', unique_key => 'k') <> :first AS other_type_new;
SELECT jobq.jq_enqueue('uniq') <> :first AS no_key_new;
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['uniq'], '1 hour', 1, search => '{"v": 1}') \gset
SELECT jobq.jq_details(:first) ->> 'state' AS state;
SELECT jobq.jq_enqueue('uniq', unique_key => 'k') = :first AS same_while_running;
SELECT jobq.jq_complete(:first, :'tok');
SELECT jobq.jq_enqueue('uniq', '{"v": 3}', unique_key => 'k') AS second \gset
SELECT :second <> :first AS new_after_completed;
SELECT jobq.jq_enqueue('uniq', unique_key => 'k') = :second AS same_again;
-- a failed job frees its key too
SELECT id AS grabbed_id, lease_token AS tok
FROM jobq.jq_grab(ARRAY['uniq'], '1 hour', 1, search => '{"v": 3}') \gset
SELECT :grabbed_id = :second AS grabbed_second;
SELECT jobq.jq_perm_fail(:second, :'tok', 'no');
SELECT jobq.jq_enqueue('uniq', unique_key => 'k') NOT IN (:first, :second) AS new_after_failed;
SELECT unique_key, state, count(*) FROM jobq.jobs WHERE job_type = 'uniq'
GROUP BY unique_key, state ORDER BY unique_key, state;

-- ---------------------------------------------------------------------------
-- jq_enqueue_many returns ids in input order
-- ---------------------------------------------------------------------------
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;
-- job types in an order unrelated to their names
SELECT jsonb_agg(jsonb_build_object('job_type', 'order_' || (n * 37) % 101) ORDER BY n) AS many
FROM generate_series(1, 100) AS n \gset
SELECT array_agg(id ORDER BY ord) AS ids FROM jobq.jq_enqueue_many(:'many') WITH ORDINALITY AS m(id, ord) \gset
SELECT cardinality(:'ids'::bigint[]) AS returned,
       (SELECT array_agg(j.job_type ORDER BY u.ord)
        FROM unnest(:'ids'::bigint[]) WITH ORDINALITY AS u(id, ord)
        JOIN jobq.jobs j ON j.id = u.id)
       = (SELECT array_agg(e ->> 'job_type' ORDER BY ord)
          FROM jsonb_array_elements(:'many') WITH ORDINALITY AS x(e, ord)) AS types_in_input_order;
-- the same with unique keys (one statement per job inside); only 30 distinct
-- (job_type, unique_key) pairs, so repeats get the id of their first occurrence
SELECT jsonb_agg(jsonb_build_object('job_type', 'order_' || (n % 3),
                                    'unique_key', 'u' || (n % 30)) ORDER BY n) AS many
FROM generate_series(1, 100) AS n \gset
SELECT array_agg(id ORDER BY ord) AS ids FROM jobq.jq_enqueue_many(:'many') WITH ORDINALITY AS m(id, ord) \gset
SELECT cardinality(:'ids'::bigint[]) AS returned,
       (SELECT count(DISTINCT id) FROM unnest(:'ids'::bigint[]) AS id) AS distinct_ids,
       (SELECT array_agg(j.job_type || '/' || j.unique_key ORDER BY u.ord)
        FROM unnest(:'ids'::bigint[]) WITH ORDINALITY AS u(id, ord)
        JOIN jobq.jobs j ON j.id = u.id)
       = (SELECT array_agg((e ->> 'job_type') || '/' || (e ->> 'unique_key') ORDER BY ord)
          FROM jsonb_array_elements(:'many') WITH ORDINALITY AS x(e, ord)) AS in_input_order;
-- an empty array inserts nothing
SELECT count(*) AS returned FROM jobq.jq_enqueue_many('[]');
