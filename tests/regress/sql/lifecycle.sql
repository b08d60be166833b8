-- A job's life: enqueue, grab, complete / temp_fail / perm_fail / extend,
-- per-type settings, expiry and lease expiry (SPEC sections 1 and 2).
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- Runs a statement and reports how it was rejected, with digits in the
-- message masked (they name job ids).
CREATE FUNCTION pg_temp.rejection(q text, OUT code text, OUT message text, OUT detail text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    code := '00000';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL;
    message := regexp_replace(message, '[0-9]+', 'N', 'g');
END;
$$;

-- ---------------------------------------------------------------------------
-- enqueue -> grab -> complete
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('life', '{"to": "a@example.com"}') AS id \gset
SELECT d ->> 'state' AS state, d ->> 'job_type' AS job_type, d ->> 'queue' AS queue,
       d -> 'priority' AS priority, d -> 'attempts' AS attempts,
       d -> 'max_attempts' AS max_attempts, d -> 'args' AS args,
       (d ->> 'run_at')::timestamptz <= now() AS due,
       d -> 'started_at' = 'null' AS never_started, d -> 'lease' = 'null' AS no_lease
FROM jobq.jq_details(:id) AS d;

SELECT id AS gid, attempt, max_attempts AS g_max, lease_token AS tok, locked_until AS until
FROM jobq.jq_grab(ARRAY['life'], '1 hour', 10, 'worker-a') \gset
SELECT :gid = :id AS same_job, :attempt AS attempt, :g_max AS max_attempts,
       :'until'::timestamptz > now() + interval '59 minutes' AS lease_about_1h,
       :'until'::timestamptz <= clock_timestamp() + interval '1 hour' AS lease_at_most_1h;
-- while running, details show the lease holder but never the token
SELECT d ->> 'state' AS state, d -> 'attempts' AS attempts, d ->> 'worker' AS worker,
       d -> 'lease' ->> 'worker' AS lease_worker, d -> 'lease' -> 'expired' AS lease_expired,
       (d -> 'lease' ->> 'locked_until')::timestamptz = :'until' AS same_locked_until,
       d::text LIKE '%' || :'tok' || '%' AS token_shown,
       (d ->> 'started_at') IS NOT NULL AS started
FROM jobq.jq_details(:id) AS d;
-- a second grab finds nothing: the only job is leased
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['life'], '1 hour', 10);

SELECT jobq.jq_complete(:id, :'tok', '{"sent": true}');
SELECT d ->> 'state' AS state, d -> 'result' AS result, d -> 'lease' = 'null' AS no_lease,
       (d ->> 'finished_at')::timestamptz <= now() AS finished, d -> 'failures' AS failures
FROM jobq.jq_details(:id) AS d;
-- the token is dead once the job is finished
SELECT code, message, split_part(detail, ':', 1) AS detail
FROM pg_temp.rejection(format('SELECT jobq.jq_complete(%s, %L)', :id, :'tok'));
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['life'], '1 hour', 10);

-- ---------------------------------------------------------------------------
-- temp_fail with an explicit retry_in
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('life_retry') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['life_retry'], '1 hour', 1, 'worker-r') \gset
SELECT state, run_at > now() + interval '59 minutes' AS in_about_1h,
       run_at <= clock_timestamp() + interval '1 hour' AS at_most_1h
FROM jobq.jq_temp_fail(:id, :'tok', 'smtp down', '1 hour');
SELECT d ->> 'state' AS state, d -> 'lease' = 'null' AS no_lease,
       jsonb_array_length(d -> 'failures') AS failures
FROM jobq.jq_details(:id) AS d;
-- not due yet, so not grabbable
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['life_retry'], '1 hour', 10);
-- make it due (as superuser, bypassing the API)
UPDATE jobq.live_jobs SET run_at = now() - interval '1 second' WHERE id = :id;
SELECT attempt, lease_token AS tok2
FROM jobq.jq_grab(ARRAY['life_retry'], '1 hour', 10) \gset
SELECT :attempt AS attempt, :'tok2' <> :'tok' AS new_token;
\set tok :tok2
SELECT jobq.jq_complete(:id, :'tok');
SELECT jobq.jq_details(:id) ->> 'state' AS state;

-- ---------------------------------------------------------------------------
-- temp_fail without retry_in: the job type's backoff applies
-- ---------------------------------------------------------------------------
-- default ('*'): base 2 s, jitter 0.25, max 1 hour; first attempt waits 1.5-2 s
SELECT jobq.jq_enqueue('life_backoff') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['life_backoff'], '1 hour', 1) \gset
SELECT state, run_at > now() AS later, run_at < now() + interval '1 hour' AS before_max,
       run_at >= now() + interval '1.5 seconds' AS at_least_jittered_base,
       run_at <= clock_timestamp() + interval '2 seconds' AS at_most_base
FROM jobq.jq_temp_fail(:id, :'tok', 'try later');
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['life_backoff'], '1 hour', 10);

-- a type's own backoff, without jitter: base * 2^(attempt-1), capped at backoff_max
INSERT INTO jobq.job_types (job_type, backoff_base, backoff_max, backoff_jitter)
VALUES ('life_backoff2', '10 minutes', '15 minutes', 0);
SELECT jobq.jq_enqueue('life_backoff2') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['life_backoff2'], '1 hour', 1) \gset
SELECT state, run_at >= now() + interval '10 minutes' AND
              run_at <= clock_timestamp() + interval '10 minutes' AS after_10_minutes
FROM jobq.jq_temp_fail(:id, :'tok', 'first');
UPDATE jobq.live_jobs SET run_at = now() - interval '1 second' WHERE id = :id;
SELECT lease_token AS tok, attempt FROM jobq.jq_grab(ARRAY['life_backoff2'], '1 hour', 1) \gset
SELECT :attempt AS attempt;
-- 20 minutes would be next, capped at 15
SELECT state, run_at >= now() + interval '15 minutes' AND
              run_at <= clock_timestamp() + interval '15 minutes' AS after_15_minutes
FROM jobq.jq_temp_fail(:id, :'tok', 'second');

-- ---------------------------------------------------------------------------
-- attempts run out: max_attempts 2, temp_fail twice -> failed, with history
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('life_twice', max_attempts => 2) AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['life_twice'], '1 hour', 1, 'worker-1') \gset
SELECT state, run_at IS NOT NULL AS has_run_at
FROM jobq.jq_temp_fail(:id, :'tok', 'first failure', '0');
SELECT lease_token AS tok, attempt FROM jobq.jq_grab(ARRAY['life_twice'], '1 hour', 1, 'worker-2') \gset
SELECT :attempt AS attempt;
SELECT state, run_at IS NULL AS no_run_at
FROM jobq.jq_temp_fail(:id, :'tok', 'second failure', '0');
SELECT d ->> 'state' AS state, d -> 'attempts' AS attempts, d -> 'lease' = 'null' AS no_lease,
       (d ->> 'finished_at') IS NOT NULL AS finished
FROM jobq.jq_details(:id) AS d;
SELECT f.ord, f.e -> 'attempt' AS attempt, f.e ->> 'kind' AS kind, f.e ->> 'message' AS message,
       f.e ->> 'worker' AS worker, (f.e ->> 'at')::timestamptz <= now() AS at_ok,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(f.e) AS k) AS keys
FROM jsonb_array_elements(jobq.jq_details(:id) -> 'failures') WITH ORDINALITY AS f(e, ord)
ORDER BY f.ord;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['life_twice'], '1 hour', 10);

-- ---------------------------------------------------------------------------
-- perm_fail ends the job whatever attempts remain
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('life_perm') AS id \gset
SELECT lease_token AS tok FROM jobq.jq_grab(ARRAY['life_perm'], '1 hour', 1, 'worker-p') \gset
SELECT jobq.jq_perm_fail(:id, :'tok', 'no such user');
SELECT d ->> 'state' AS state, d -> 'attempts' AS attempts, d -> 'max_attempts' AS max_attempts,
       d -> 'failures' -> 0 ->> 'kind' AS kind, d -> 'failures' -> 0 ->> 'message' AS message,
       d -> 'failures' -> 0 ->> 'worker' AS worker, (d ->> 'finished_at') IS NOT NULL AS finished
FROM jobq.jq_details(:id) AS d;
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['life_perm'], '1 hour', 10);

-- ---------------------------------------------------------------------------
-- jq_extend moves locked_until
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('life_extend') AS id \gset
SELECT lease_token AS tok, locked_until AS until
FROM jobq.jq_grab(ARRAY['life_extend'], '1 minute', 1) \gset
SELECT jobq.jq_extend(:id, :'tok', '2 hours') AS new_until \gset
SELECT :'new_until'::timestamptz > :'until'::timestamptz + interval '1 hour' AS moved,
       :'new_until'::timestamptz > now() + interval '119 minutes' AS about_2h,
       (jobq.jq_details(:id) -> 'lease' ->> 'locked_until')::timestamptz = :'new_until' AS stored;
-- extend with the default lease (5 minutes) can shorten it too
SELECT jobq.jq_extend(:id, :'tok') < :'new_until'::timestamptz AS shortened;
SELECT jobq.jq_complete(:id, :'tok', '[1, 2, 3]');
SELECT d ->> 'state' AS state, d -> 'result' AS result
FROM jobq.jq_details(:id) AS d;

-- ---------------------------------------------------------------------------
-- per-type settings: max_attempts comes from the type's row, else from '*'
-- ---------------------------------------------------------------------------
INSERT INTO jobq.job_types (job_type, max_attempts) VALUES ('typed', 3);
-- (each enqueue is its own statement: jq_details is STABLE and would not see a
-- row inserted by the same statement)
SELECT jobq.jq_enqueue('typed') AS typed \gset
SELECT jobq.jq_enqueue('untyped') AS untyped \gset
SELECT jobq.jq_enqueue('typed', max_attempts => 7) AS typed_explicit \gset
SELECT jobq.jq_enqueue('typed', unique_key => 'k1') AS typed_unique \gset
SELECT jobq.jq_details(:typed) -> 'max_attempts' AS typed,
       jobq.jq_details(:untyped) -> 'max_attempts' AS untyped,
       jobq.jq_details(:typed_explicit) -> 'max_attempts' AS typed_explicit,
       jobq.jq_details(:typed_unique) -> 'max_attempts' AS typed_unique;
-- the same through jq_enqueue_many, without and with unique keys
SELECT array_agg(id ORDER BY ord) AS many_plain
FROM jobq.jq_enqueue_many('[{"job_type": "typed"}, {"job_type": "untyped"}]')
     WITH ORDINALITY AS m(id, ord) \gset
SELECT array_agg(id ORDER BY ord) AS many_unique
FROM jobq.jq_enqueue_many('[{"job_type": "typed", "unique_key": "k2"},
                            {"job_type": "untyped", "unique_key": "k2"}]')
     WITH ORDINALITY AS m(id, ord) \gset
SELECT u.ord, jobq.jq_details(u.id) ->> 'job_type' AS job_type,
       jobq.jq_details(u.id) -> 'max_attempts' AS max_attempts
FROM unnest(:'many_plain'::bigint[] || :'many_unique'::bigint[]) WITH ORDINALITY AS u(id, ord)
ORDER BY u.ord;
-- changing the '*' row changes the default for new jobs of types without a row
UPDATE jobq.job_types SET max_attempts = 10 WHERE job_type = '*';
SELECT jobq.jq_enqueue('untyped') AS untyped \gset
SELECT jobq.jq_enqueue('typed') AS typed \gset
SELECT jobq.jq_details(:untyped) -> 'max_attempts' AS untyped,
       jobq.jq_details(:typed) -> 'max_attempts' AS typed;
UPDATE jobq.job_types SET max_attempts = 25 WHERE job_type = '*';
-- settings are checked
INSERT INTO jobq.job_types (job_type, max_attempts) VALUES ('bad type', 3);
\echo :SQLSTATE
INSERT INTO jobq.job_types (job_type, max_attempts) VALUES ('typed0', 0);
\echo :SQLSTATE
DELETE FROM jobq.live_jobs WHERE job_type IN ('typed', 'untyped'); DELETE FROM jobq.job_history WHERE job_type IN ('typed', 'untyped');

-- ---------------------------------------------------------------------------
-- expires_at: a job whose expires_at has passed is not run but ends 'expired'
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('life_expiring', expires_at => now() + interval '1 hour') AS id \gset
SELECT jobq.jq_enqueue('life_expiring', expires_at => now() + interval '1 hour') AS id_ok \gset
-- as superuser, bypassing the check that expires_at is in the future
UPDATE jobq.live_jobs SET expires_at = now() - interval '1 second' WHERE id = :id;
SELECT id = :id_ok AS is_the_unexpired_one
FROM jobq.jq_grab(ARRAY['life_expiring'], '1 hour', 10);
SELECT d ->> 'state' AS state, d -> 'attempts' AS attempts, (d ->> 'finished_at') IS NOT NULL AS finished,
       d -> 'lease' = 'null' AS no_lease
FROM jobq.jq_details(:id) AS d;
SELECT jobq.jq_details(:id_ok) ->> 'state' AS other_state;
SELECT lease_token AS tok FROM jobq.jobs WHERE id = :id_ok \gset
SELECT jobq.jq_complete(:id_ok, :'tok');
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['life_expiring'], '1 hour', 10);
-- an expired job first in line does not use up max_jobs
SELECT jobq.jq_enqueue('life_expiring2', priority => -1, expires_at => now() + interval '1 hour') AS id \gset
SELECT jobq.jq_enqueue('life_expiring2') AS id_ok \gset
UPDATE jobq.live_jobs SET expires_at = now() - interval '1 second' WHERE id = :id;
SELECT id = :id_ok AS got_the_live_one FROM jobq.jq_grab(ARRAY['life_expiring2'], '1 hour', 1);
SELECT jobq.jq_details(:id) ->> 'state' AS state;
-- (removed as an operator would, with plain SQL)
DELETE FROM jobq.live_jobs WHERE id = :id_ok;

-- ---------------------------------------------------------------------------
-- lease expiry: the old token is dead at once, the job is grabbed again
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue('life_lease') AS id \gset
SELECT lease_token AS tok1, attempt FROM jobq.jq_grab(ARRAY['life_lease'], '10 ms', 1, 'worker-slow') \gset
SELECT :attempt AS attempt;
SELECT pg_sleep(0.05);
-- the lease ran out: even before anyone else grabs the job, the token is rejected
SELECT code, message, detail LIKE 'The lease ran out at %' AS lease_ran_out
FROM pg_temp.rejection(format('SELECT jobq.jq_complete(%s, %L)', :id, :'tok1'));
SELECT code FROM pg_temp.rejection(format('SELECT jobq.jq_extend(%s, %L)', :id, :'tok1'));
SELECT d ->> 'state' AS state, d -> 'lease' -> 'expired' AS lease_expired
FROM jobq.jq_details(:id) AS d;
SELECT lease_token AS tok2, attempt FROM jobq.jq_grab(ARRAY['life_lease'], '1 hour', 1, 'worker-fast') \gset
SELECT :attempt AS attempt, :'tok2' <> :'tok1' AS new_token;
SELECT code, message, split_part(detail, ':', 1) AS detail
FROM pg_temp.rejection(format('SELECT jobq.jq_complete(%s, %L)', :id, :'tok1'));
SELECT f.e -> 'attempt' AS attempt, f.e ->> 'kind' AS kind, f.e ->> 'worker' AS worker,
       f.e ->> 'message' LIKE 'lease expired at %' AS message_ok
FROM jsonb_array_elements(jobq.jq_details(:id) -> 'failures') AS f(e);
SELECT jobq.jq_complete(:id, :'tok2');
SELECT d ->> 'state' AS state, d -> 'attempts' AS attempts, d ->> 'worker' AS worker
FROM jobq.jq_details(:id) AS d;

-- max_attempts 1 and the lease runs out: the next grab ends it as failed
SELECT jobq.jq_enqueue('life_lease_once', max_attempts => 1) AS id \gset
SELECT lease_token AS tok1 FROM jobq.jq_grab(ARRAY['life_lease_once'], '10 ms', 1, 'worker-dies') \gset
SELECT pg_sleep(0.05);
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['life_lease_once'], '1 hour', 10);
SELECT d ->> 'state' AS state, d -> 'attempts' AS attempts, d -> 'lease' = 'null' AS no_lease,
       (d ->> 'finished_at') IS NOT NULL AS finished,
       d -> 'failures' -> 0 ->> 'kind' AS kind, d -> 'failures' -> 0 ->> 'worker' AS worker
FROM jobq.jq_details(:id) AS d;
SELECT code, message, split_part(detail, ':', 1) AS detail
FROM pg_temp.rejection(format('SELECT jobq.jq_complete(%s, %L)', :id, :'tok1'));

-- reaping is not limited to the grabbed types: any grab ends expired leases
SELECT jobq.jq_enqueue('life_lease_other', max_attempts => 1) AS id \gset
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['life_lease_other'], '10 ms', 1);
SELECT pg_sleep(0.05);
SELECT count(*) AS grabbed FROM jobq.jq_grab(ARRAY['no_such_type'], '1 hour', 10);
SELECT jobq.jq_details(:id) ->> 'state' AS state;

-- where every job of this file ended (the two backoff jobs wait for their retry)
SELECT job_type, state FROM jobq.jobs ORDER BY id;
