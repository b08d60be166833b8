-- Everything a user can see of the jobs that fill.sql made, one fact per
-- line: section <TAB> key <TAB> value. tests/bin/upgrade-test.sh runs it
-- before and after ALTER EXTENSION jobq UPDATE and diffs the two outputs, so
-- every line must come out the same when the upgrade preserved the data.
-- Through the public API only (no table of the old version is read), with
-- the time-dependent columns of the operator views left out.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 1;
SELECT jq_upgrade.settle() \g /dev/null

-- The ids walked: 1 .. the highest id fill.sql made, with each one's role.
CREATE TEMP VIEW ids AS
SELECT i AS id, format('job %s (%s)', i, coalesce(r.role, '-')) AS label
FROM generate_series(1, (SELECT s.value::bigint FROM jq_upgrade.saved s WHERE s.name = 'max_id')) AS i
LEFT JOIN jq_upgrade.roles r ON r.id = i;

-- jq_details of every job, key by key.
SELECT 'details', i.label || ' ' || d.key, d.value::text
FROM ids i
CROSS JOIN LATERAL jsonb_each(jq_upgrade.details_of(i.id)) AS d
ORDER BY i.id, d.key COLLATE "C";

-- The whole event stream, from the oldest retained event, in the stream's
-- order and keyed by cursor (a lost event is one line of the diff).
SELECT 'events_since(NULL)', e.cursor, (to_jsonb(e) - 'ordinality' - 'cursor')::text
FROM jobq.jq_events_since(NULL, 10000) WITH ORDINALITY AS e
ORDER BY e.ordinality;

-- What a subscriber that saved a cursor in the middle reads next.
SELECT 'events_since(mid)', e.cursor, (to_jsonb(e) - 'ordinality' - 'cursor')::text
FROM jobq.jq_events_since((SELECT s.value FROM jq_upgrade.saved s WHERE s.name = 'mid_cursor'),
                          10000) WITH ORDINALITY AS e
ORDER BY e.ordinality;

-- Each job's events.
SELECT 'events_for_job', i.label || ' event ' || e.id, (to_jsonb(e) - 'ordinality')::text
FROM ids i
CROSS JOIN LATERAL jobq.jq_events_for_job(i.id) WITH ORDINALITY AS e
ORDER BY i.id, e.ordinality;

-- Settings.
SELECT 'job_types', t.job_type || ' ' || c.key, c.value::text
FROM jobq.job_types t CROSS JOIN LATERAL jsonb_each(to_jsonb(t)) AS c
ORDER BY t.job_type COLLATE "C", c.key COLLATE "C";
SELECT 'queues', q.queue || ' ' || c.key, c.value::text
FROM jobq.queues q CROSS JOIN LATERAL jsonb_each(to_jsonb(q)) AS c
ORDER BY q.queue COLLATE "C", c.key COLLATE "C";
SELECT 'maintenance', 'every', m.every::text FROM jobq.maintenance m;
SELECT 'maintenance', 'budget', m.budget::text FROM jobq.maintenance m;

-- Operator views, without what changes with the clock.
SELECT 'queue_stats', s.queue || ' ' || s.job_type,
       (to_jsonb(s) - 'oldest_due_age' - 'completed_last_minute' - 'completed_last_hour'
                    - 'failed_last_hour')::text
FROM jobq.queue_stats s
ORDER BY s.queue COLLATE "C", s.job_type COLLATE "C";
SELECT 'failed_jobs', format('job %s', f.id), to_jsonb(f)::text
FROM jobq.failed_jobs f
ORDER BY f.id;
SELECT 'running_jobs', format('job %s', r.id),
       (to_jsonb(r) - 'running_for' - 'lease_left')::text
FROM jobq.running_jobs r
ORDER BY r.id;
SELECT 'workers', w.worker, (to_jsonb(w) - 'last_seen_ago')::text
FROM jobq.workers w
ORDER BY w.worker COLLATE "C";
