-- Checks on a database restored from a dump of one that tests/upgrade/fill.sql
-- filled (run by tests/bin/backup-test.sh before tests/upgrade/post.sql, so
-- before any jobq function has written to it). :behind is true when the
-- restore went into a cluster whose transaction ids are behind the source's.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

-- The rows that CREATE EXTENSION inserts and the dump brings again: once
-- each, with the dump's values (fill.sql changed them).
SELECT jq_upgrade.check((SELECT count(*) FROM jobq.job_types t WHERE t.job_type = '*') = 1,
                        'one ''*'' row of job_types');
SELECT jq_upgrade.check((SELECT t.max_attempts = 20 AND t.event_retention = '45 days'
                         FROM jobq.job_types t WHERE t.job_type = '*'),
                        'the ''*'' row has the dumped defaults, not the installation''s');
SELECT jq_upgrade.check((SELECT count(*) FROM jobq.maintenance) = 1, 'one maintenance row');
SELECT jq_upgrade.check((SELECT m.every = '1 day' AND m.budget = '250 milliseconds'
                         FROM jobq.maintenance m),
                        'the maintenance row has the dumped settings');
SELECT jq_upgrade.check((SELECT count(*) FROM jobq.event_clock) = 1, 'one event clock row');
SELECT jq_upgrade.check((SELECT c.restored AND c.shift = 0 FROM jobq.event_clock c),
                        'the event clock knows it was restored and waits for its first writer');

-- The history's dated partitions: restored as ordinary tables (not members
-- of the extension, so the next dump has them too), each with its index.
SELECT jq_upgrade.check((SELECT count(*) FROM jobq._history_partitions()) >= 1,
                        'the dated history partitions are restored');
SELECT jq_upgrade.check(NOT EXISTS (
        SELECT 1 FROM jobq._history_partitions() p
        JOIN pg_catalog.pg_depend d ON d.objid = format('jobq.%I', p.name)::regclass
        WHERE d.classid = 'pg_catalog.pg_class'::regclass
          AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'),
    'no dated history partition belongs to the extension');
SELECT jq_upgrade.check(NOT EXISTS (
        SELECT 1 FROM jobq._history_partitions() p
        WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                          WHERE i.indrelid = format('jobq.%I', p.name)::regclass
                            AND i.indkey::text = (SELECT a.attnum::text FROM pg_catalog.pg_attribute a
                                                  WHERE a.attrelid = 'jobq.job_history'::regclass
                                                    AND a.attname = 'id'))),
    'every dated history partition has its index on id');

-- Sequences: the next ids come after the restored ones.
SELECT jq_upgrade.check((SELECT s.last_value FROM jobq.live_jobs_id_seq s)
                          >= (SELECT max(r.id) FROM jq_upgrade.roles r),
                        'the job id sequence is restored');
SELECT jq_upgrade.check((SELECT s.last_value FROM jobq.event_ids s)
                          >= (SELECT max(e.id) FROM jobq.event_batches e),
                        'the event id sequence is restored');

-- Leases: every running job still has its deadline row, so that it runs out.
SELECT jq_upgrade.check(NOT EXISTS (
        SELECT 1 FROM jobq.live_jobs j
        WHERE j.state = 'running'
          AND NOT EXISTS (SELECT 1 FROM jobq.lease_deadlines l
                          WHERE j.id = ANY (l.job_ids) AND l.deadline = j.locked_until)),
    'every running job''s lease deadline is restored');
