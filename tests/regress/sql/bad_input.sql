-- Every rejection of the SQL API, with its SQLSTATE, and proof that a rejected
-- call changes nothing.
--   JQ001 lease lost   JQ002 job not found   JQ010 invalid argument
--   JQ011 payload too large
-- Messages that would contain a job id are shown as SQLSTATE only (ids vary).
\set SHOW_CONTEXT never
\set VERBOSITY default
DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history;

-- A real running job, for the lease checks below.
SELECT jobq.jq_enqueue('bad_input', '{"n": 1}') IS NOT NULL AS enqueued;
SELECT id AS job_id, lease_token AS token
FROM jobq.jq_grab(ARRAY['bad_input'], '1 hour', 1, 'w1') \gset
SELECT :'token' IS NOT NULL AS grabbed;

-- Snapshot of every row, to compare after all the rejections.
SELECT count(*) AS jobs_before FROM jobq.jobs;
SELECT md5(string_agg(j::text, '|' ORDER BY j.id)) AS snapshot FROM jobq.jobs j \gset

-- ---------------------------------------------------------------------------
-- jq_enqueue: job_type
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue(NULL);
\echo :SQLSTATE
SELECT jobq.jq_enqueue('');
\echo :SQLSTATE
SELECT jobq.jq_enqueue(repeat('a', 129));
\echo :SQLSTATE
SELECT jobq.jq_enqueue('has space');
\echo :SQLSTATE
SELECT jobq.jq_enqueue('_leading_underscore');
\echo :SQLSTATE
SELECT jobq.jq_enqueue('*');
\echo :SQLSTATE
SELECT jobq.jq_enqueue('semi;colon');
\echo :SQLSTATE

-- queue (NULL means the default queue, so it is not an error)
SELECT jobq.jq_enqueue('bad_input', '{}', '');
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', '{}', repeat('q', 129));
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', '{}', 'bad queue');
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', '{}', 'ümlaut');
\echo :SQLSTATE

-- args must be a JSON object
SELECT jobq.jq_enqueue('bad_input', '[1, 2]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', '"a string"');
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', '42');
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', 'null');
\echo :SQLSTATE
-- args over 1 MiB
SELECT jobq.jq_enqueue('bad_input', jsonb_build_object('x', repeat('a', 1100000)));
\echo :SQLSTATE

-- priority out of smallint range
SELECT jobq.jq_enqueue('bad_input', '{}', priority => 32768);
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', '{}', priority => -32769);
\echo :SQLSTATE

-- max_attempts must be 1 to 1000
SELECT jobq.jq_enqueue('bad_input', '{}', max_attempts => 0);
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', '{}', max_attempts => 1001);
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', '{}', max_attempts => -1);
\echo :SQLSTATE

-- run_at must be finite
SELECT jobq.jq_enqueue('bad_input', '{}', run_at => 'infinity');
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', '{}', run_at => '-infinity');
\echo :SQLSTATE

-- expires_at must be finite and later than now and than run_at
-- (the message names the timestamp, so only the SQLSTATE is shown)
\set VERBOSITY sqlstate
SELECT jobq.jq_enqueue('bad_input', '{}', expires_at => now() - interval '1 minute');
SELECT jobq.jq_enqueue('bad_input', '{}', run_at => now() + interval '2 hours',
                       expires_at => now() + interval '1 hour');
SELECT jobq.jq_enqueue('bad_input', '{}', run_at => now() + interval '1 hour',
                       expires_at => now() + interval '1 hour');
\set VERBOSITY default
SELECT jobq.jq_enqueue('bad_input', '{}', expires_at => 'infinity');
\echo :SQLSTATE

-- unique_key must be 1 to 256 characters
SELECT jobq.jq_enqueue('bad_input', '{}', unique_key => '');
\echo :SQLSTATE
SELECT jobq.jq_enqueue('bad_input', '{}', unique_key => repeat('k', 257));
\echo :SQLSTATE

-- ---------------------------------------------------------------------------
-- jq_enqueue_many
-- ---------------------------------------------------------------------------
SELECT jobq.jq_enqueue_many('{"job_type": "bad_input"}');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('"bad_input"');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many(NULL);
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('null');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input"}, 5]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input"}, null]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input", "colour": "red"}]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input", "priority": "high"}]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input", "priority": 1.5}]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input", "priority": 99999999999}]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input", "priority": 40000}]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input", "run_at": "not a date"}]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input", "max_attempts": 0}]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input", "args": [1]}]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"args": {}}]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many(jsonb_build_array(
    jsonb_build_object('job_type', 'bad_input', 'args', jsonb_build_object('x', repeat('a', 1100000)))));
\echo :SQLSTATE
-- a bad element in the middle of good ones: nothing is inserted, jobs[1] is named
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input"},
                              {"job_type": "bad_input", "queue": "no spaces"},
                              {"job_type": "bad_input"}]');
\echo :SQLSTATE
SELECT jobq.jq_enqueue_many('[{"job_type": "bad_input"},
                              {"job_type": "bad_input", "unique_key": ""},
                              {"job_type": "bad_input"}]');
\echo :SQLSTATE

-- ---------------------------------------------------------------------------
-- jq_grab
-- ---------------------------------------------------------------------------
SELECT * FROM jobq.jq_grab(ARRAY['bad_input'], '0', 1);
\echo :SQLSTATE
SELECT * FROM jobq.jq_grab(ARRAY['bad_input'], '-1 second', 1);
\echo :SQLSTATE
SELECT * FROM jobq.jq_grab(ARRAY['bad_input'], '2 days', 1);
\echo :SQLSTATE
SELECT * FROM jobq.jq_grab(ARRAY['bad_input'], '1 minute', 0);
\echo :SQLSTATE
SELECT * FROM jobq.jq_grab(ARRAY['bad_input'], '1 minute', 10001);
\echo :SQLSTATE
SELECT * FROM jobq.jq_grab(ARRAY['bad_input'], '1 minute', 1, repeat('w', 257));
\echo :SQLSTATE
SELECT * FROM jobq.jq_grab(ARRAY['bad_input'], '1 minute', 1, 'w', '[1]');
\echo :SQLSTATE
SELECT * FROM jobq.jq_grab(ARRAY['bad_input'], '1 minute', 1, 'w', '"n"');
\echo :SQLSTATE

-- ---------------------------------------------------------------------------
-- calls about a job: bad intervals, unknown ids, wrong and NULL tokens
-- ---------------------------------------------------------------------------
SELECT * FROM jobq.jq_temp_fail(:job_id, :'token', 'msg', '-1 second');
\echo :SQLSTATE
SELECT * FROM jobq.jq_temp_fail(:job_id, :'token', 'msg', '400 days');
\echo :SQLSTATE
SELECT jobq.jq_extend(:job_id, :'token', '-1 minute');
\echo :SQLSTATE
SELECT jobq.jq_extend(:job_id, :'token', '0');
\echo :SQLSTATE
SELECT jobq.jq_extend(:job_id, :'token', '2 days');
\echo :SQLSTATE
SELECT jobq.jq_complete(:job_id, :'token', jsonb_build_object('x', repeat('a', 1100000)));
\echo :SQLSTATE

-- unknown job id: JQ002
SELECT jobq.jq_complete(-1, gen_random_uuid());
\echo :SQLSTATE
SELECT jobq.jq_perm_fail(-1, gen_random_uuid(), 'msg');
\echo :SQLSTATE
SELECT jobq.jq_extend(-1, gen_random_uuid(), '1 minute');
\echo :SQLSTATE
SELECT * FROM jobq.jq_temp_fail(-1, gen_random_uuid(), 'msg');
\echo :SQLSTATE
SELECT jobq.jq_replace(-1, gen_random_uuid(), '[]');
\echo :SQLSTATE
SELECT jobq.jq_details(-1);
\echo :SQLSTATE
-- unknown id with a NULL token is still "not found"
SELECT jobq.jq_complete(-1, NULL);
\echo :SQLSTATE

-- wrong token on the real running job: JQ001 (the message names the id)
\set VERBOSITY sqlstate
SELECT jobq.jq_complete(:job_id, gen_random_uuid());
SELECT regexp_replace(:'LAST_ERROR_MESSAGE', '[0-9]+', 'N', 'g') AS message;
\set VERBOSITY default
-- every lease-fenced call, with a wrong and with a NULL token (ids masked; the
-- detail up to its first colon)
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
SELECT c.call, t.token, r.code, r.message, split_part(r.detail, ':', 1) AS detail
FROM (VALUES (1, 'complete',  'SELECT jobq.jq_complete(%s, %s)'),
             (2, 'perm_fail', 'SELECT jobq.jq_perm_fail(%s, %s, ''msg'')'),
             (3, 'temp_fail', 'SELECT * FROM jobq.jq_temp_fail(%s, %s, ''msg'')'),
             (4, 'extend',    'SELECT jobq.jq_extend(%s, %s, ''1 minute'')'),
             (5, 'replace',   'SELECT jobq.jq_replace(%s, %s, ''[]'')')) AS c(ord, call, q)
CROSS JOIN (VALUES ('wrong', quote_literal(gen_random_uuid()::text) || '::uuid'),
                   ('NULL', 'NULL')) AS t(token, literal)
CROSS JOIN LATERAL pg_temp.rejection(format(c.q, :job_id, t.literal)) AS r
ORDER BY c.ord, t.token DESC;

-- jq_replace: new_jobs must be an array of valid job objects (checked before the lease)
SELECT jobq.jq_replace(:job_id, :'token', '{"job_type": "bad_input"}');
\echo :SQLSTATE
SELECT jobq.jq_replace(:job_id, :'token', NULL);
\echo :SQLSTATE
SELECT jobq.jq_replace(:job_id, :'token', '[{"job_type": "bad_input"}, {"job_type": ""}]');
\echo :SQLSTATE
SELECT jobq.jq_replace(:job_id, :'token', '[{"job_type": "bad_input"}, "x"]');
\echo :SQLSTATE

-- ---------------------------------------------------------------------------
-- Nothing changed: same rows, same values, and the job is still running under
-- its token (which still works).
-- ---------------------------------------------------------------------------
SELECT count(*) AS jobs_after FROM jobq.jobs;
SELECT md5(string_agg(j::text, '|' ORDER BY j.id)) = :'snapshot' AS unchanged FROM jobq.jobs j;
SELECT jobq.jq_details(:job_id) ->> 'state' AS state,
       jobq.jq_details(:job_id) -> 'failures' AS failures;
SELECT jobq.jq_complete(:job_id, :'token');
SELECT jobq.jq_details(:job_id) ->> 'state' AS state;
