-- ============================================================================
-- jobq: tables
--
-- The schema `jobq` itself is created by CREATE EXTENSION (jobq.control sets
-- `schema = jobq`). Every name below is schema-qualified so the script does not
-- depend on the installer's search_path.
-- ============================================================================

-- Per-type settings. The row '*' holds the defaults for every job type that has
-- no row of its own; operators change both with plain SQL (as jobq_admin).
-- '*' can never clash with a real job type: names must start with a letter or digit.
CREATE TABLE jobq.job_types (
    job_type        text             PRIMARY KEY,
    max_attempts    integer          NOT NULL DEFAULT 25,
    backoff_base    interval         NOT NULL DEFAULT '2 seconds',
    backoff_max     interval         NOT NULL DEFAULT '1 hour',
    backoff_jitter  double precision NOT NULL DEFAULT 0.25,
    retention       interval         NOT NULL DEFAULT '7 days',
    -- Events are an audit trail; a type whose state changes nobody audits
    -- (or that is too hot to afford a row per change) can opt out.
    record_events   boolean          NOT NULL DEFAULT true,
    -- Events outlive their job on purpose (auditing outlives the queue), so
    -- they have a retention of their own, independent of `retention`.
    event_retention interval         NOT NULL DEFAULT '30 days',
    -- At most this many jobs of the type running at once, across all workers
    -- (NULL: no limit). jq_grab serialises the capacity check of limited
    -- types only, so unlimited types pay nothing for the feature.
    max_running     integer,
    CONSTRAINT job_types_name_check
        CHECK (job_type = '*' OR job_type ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$'),
    CONSTRAINT job_types_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 1000),
    CONSTRAINT job_types_backoff_check
        CHECK (backoff_base > '0'::interval AND backoff_max >= backoff_base
               AND backoff_max <= '365 days'::interval),
    CONSTRAINT job_types_jitter_check CHECK (backoff_jitter >= 0 AND backoff_jitter <= 1),
    CONSTRAINT job_types_retention_check CHECK (retention >= '0'::interval),
    CONSTRAINT job_types_event_retention_check CHECK (event_retention >= '0'::interval),
    -- A limit counts the running jobs of one type; the '*' row is not a type.
    CONSTRAINT job_types_max_running_check
        CHECK (max_running >= 0 AND (job_type <> '*' OR max_running IS NULL))
);
COMMENT ON TABLE jobq.job_types IS
    'Per-job-type settings; the row ''*'' holds the defaults for types without a row.';

INSERT INTO jobq.job_types (job_type) VALUES ('*');

-- One row per job, for its whole life. Hot-path indexes are partial, so finished
-- rows cost nothing to grabs and only sit in the primary key until pruned.
CREATE TABLE jobq.jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_type      text        NOT NULL,
    queue         text        NOT NULL,
    state         text        NOT NULL DEFAULT 'waiting',
    priority      smallint    NOT NULL DEFAULT 0,
    attempts      integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL,
    run_at        timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    started_at    timestamptz,  -- first grab
    attempted_at  timestamptz,  -- latest grab
    finished_at   timestamptz,
    locked_until  timestamptz,  -- set only while running
    lease_token   uuid,         -- set only while running; never shown by jq_details
    worker        text,         -- holder of the current lease, or of the last one
    unique_key    text,
    args          jsonb       NOT NULL DEFAULT '{}',
    result        jsonb,
    failures      jsonb       NOT NULL DEFAULT '[]',
    replaced_by   bigint[],
    -- Progress and notes of the running job (jq_note), merged key by key.
    notes         jsonb,
    -- Set by jq_cancel on a running job: its worker learns it at jq_extend
    -- (JQ004), and the job ends 'cancelled' rather than running again.
    cancel_requested_at timestamptz,
    -- Dependencies (see jobq.job_dependencies): the parents as enqueued, how
    -- many have not completed yet (a job with pending parents is 'blocked',
    -- which no grab index holds), and whether a parent that fails for good
    -- should release this job rather than cancel it.
    depends_on      bigint[],
    pending_parents integer     NOT NULL DEFAULT 0,
    run_anyway      boolean     NOT NULL DEFAULT false,
    -- Whether some job ever named this one as a parent. The trigger that
    -- releases dependants has it in its WHEN clause, so finishing a job that
    -- nobody depends on costs no trigger call.
    has_dependants  boolean     NOT NULL DEFAULT false,
    CONSTRAINT jobs_state_check CHECK (state IN
        ('blocked', 'waiting', 'running', 'completed', 'failed', 'replaced', 'cancelled',
         'expired')),
    CONSTRAINT jobs_lease_check CHECK ((state = 'running') =
        (lease_token IS NOT NULL AND locked_until IS NOT NULL))
)
-- Every job leaves two dead row versions behind (waiting, then running), and
-- pruning deletes in bulk. Until vacuum reclaims them, the grab index walks
-- their entries and the heap keeps growing, so the queue table is vacuumed
-- after 2 % of it changed rather than PostgreSQL's default 20 %, and without
-- the cost-based throttle. ALTER TABLE jobq.jobs SET / RESET (...) changes it.
WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.02,
      autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
COMMENT ON TABLE jobq.jobs IS 'Every job, waiting, running or finished (until pruned).';

-- The grab scans this in order and stops after max_jobs matches.
CREATE INDEX jobs_waiting_idx ON jobq.jobs (priority, run_at, id) WHERE state = 'waiting';
-- Finds leases that ran out; empty most of the time, so a probe is one page.
CREATE INDEX jobs_lease_idx ON jobq.jobs (locked_until) WHERE state = 'running';
-- Jobs that wait for a later time than their creation: scheduled, retrying or
-- re-queued after a lease ran out. The wake-up worker finds the next due time
-- here. Jobs enqueued to run at once (run_at = created_at) stay out of it, so
-- plain enqueues pay nothing for it.
CREATE INDEX jobs_scheduled_idx ON jobq.jobs (run_at)
    WHERE state = 'waiting' AND run_at > created_at;
-- Jobs with a deadline that have not started, for ending those that missed it
-- (blocked ones too: a deadline is "not after", whatever the job waits for).
CREATE INDEX jobs_expiry_idx ON jobq.jobs (expires_at)
    WHERE state IN ('waiting', 'blocked') AND expires_at IS NOT NULL;
-- Idempotent enqueue: one live job per (job_type, unique_key). Live means not
-- finished: blocked (waiting for parents), waiting or running.
CREATE UNIQUE INDEX jobs_unique_key_idx ON jobq.jobs (job_type, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('blocked', 'waiting', 'running');
-- Pruning: finished jobs by type and age. finished_at is set exactly when a
-- job reaches a final state, so running and waiting jobs stay out of it. By
-- type first, because retention is per type: each type's expired rows are one
-- range, and a type with a long retention is never walked by the others.
CREATE INDEX jobs_finished_idx ON jobq.jobs (job_type, finished_at)
    WHERE finished_at IS NOT NULL;

-- What jq_enqueue_many and jq_replace accept, one element per job. Keeping it a
-- type gives the single and the batch enqueue one validation and one insert path.
CREATE TYPE jobq.job_spec AS (
    job_type     text,
    args         jsonb,
    queue        text,
    priority     integer,
    run_at       timestamptz,
    max_attempts integer,
    unique_key   text,
    expires_at   timestamptz,
    -- Parent job ids: the job is blocked until every one has completed.
    depends_on   bigint[],
    -- When a parent fails for good, release this job instead of cancelling it.
    run_anyway   boolean,
    -- Only in jq_enqueue_many / jq_replace: parents among the same call's
    -- jobs, by their 0-based position, which must be earlier than this one's.
    depends_on_index integer[]
);

-- Pending dependencies: one row per (parent, child) while the parent has not
-- finished. The row goes when the parent finishes (the child is then
-- released, or cancelled), so the table only ever holds open edges.
CREATE TABLE jobq.job_dependencies (
    parent_id bigint NOT NULL,
    child_id  bigint NOT NULL,
    PRIMARY KEY (parent_id, child_id)
);
-- jq_details lists what a blocked job still waits for; pruning drops the
-- edges of pruned children.
CREATE INDEX job_dependencies_child_idx ON jobq.job_dependencies (child_id);

-- Queues an operator paused (jq_pause_queue). A queue without a row runs;
-- grabs read the paused ones once per call, so the table stays tiny.
CREATE TABLE jobq.queues (
    queue     text        PRIMARY KEY,
    paused    boolean     NOT NULL DEFAULT false,
    paused_at timestamptz,
    CONSTRAINT queues_name_check CHECK (queue ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$')
);
COMMENT ON TABLE jobq.queues IS 'Queue settings: paused queues are skipped by every grab.';

-- Workers that grabbed (or polled) recently, for the jobq.workers view. jq_grab
-- writes a worker's row at most once a second per session; jq_maintain forgets
-- workers not seen for a day.
CREATE TABLE jobq.seen_workers (
    worker     text        PRIMARY KEY,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    job_types  text[],     -- what its latest recorded grab asked for (NULL: any)
    queues     text[]
);

-- The one row of maintenance bookkeeping: when jq_maintain last ran and what
-- it did. The wake-up worker runs maintenance when `every` has passed since
-- last_run_at (sooner while a run left work behind); operators may change
-- `every` and `budget`.
CREATE TABLE jobq.maintenance (
    id           integer     PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    every        interval    NOT NULL DEFAULT '10 seconds'
                             CHECK (every >= '1 second'::interval AND every <= '1 day'::interval),
    -- How long one background run may work: the wake-up worker sends no
    -- notifications meanwhile. A run that stops here continues a second later.
    budget       interval    NOT NULL DEFAULT '100 milliseconds'
                             CHECK (budget > '0'::interval AND budget <= '1 minute'::interval),
    last_run_at  timestamptz,
    last_summary jsonb,
    -- The last run stopped at its time budget with work left: run again soon.
    behind       boolean     NOT NULL DEFAULT false
);
INSERT INTO jobq.maintenance DEFAULT VALUES;
