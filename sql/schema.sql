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
    job_type       text PRIMARY KEY,
    max_attempts   integer          NOT NULL DEFAULT 25,
    backoff_base   interval         NOT NULL DEFAULT '2 seconds',
    backoff_max    interval         NOT NULL DEFAULT '1 hour',
    backoff_jitter double precision NOT NULL DEFAULT 0.25,
    retention      interval         NOT NULL DEFAULT '7 days',
    CONSTRAINT job_types_name_check
        CHECK (job_type = '*' OR job_type ~ '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$'),
    CONSTRAINT job_types_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 1000),
    CONSTRAINT job_types_backoff_check
        CHECK (backoff_base > '0'::interval AND backoff_max >= backoff_base
               AND backoff_max <= '365 days'::interval),
    CONSTRAINT job_types_jitter_check CHECK (backoff_jitter >= 0 AND backoff_jitter <= 1),
    CONSTRAINT job_types_retention_check CHECK (retention >= '0'::interval)
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
    CONSTRAINT jobs_state_check CHECK (state IN
        ('waiting', 'running', 'completed', 'failed', 'replaced', 'cancelled', 'expired')),
    CONSTRAINT jobs_lease_check CHECK ((state = 'running') =
        (lease_token IS NOT NULL AND locked_until IS NOT NULL))
);
COMMENT ON TABLE jobq.jobs IS 'Every job, waiting, running or finished (until pruned).';

-- The grab scans this in order and stops after max_jobs matches.
CREATE INDEX jobs_waiting_idx ON jobq.jobs (priority, run_at, id) WHERE state = 'waiting';
-- Finds leases that ran out; empty most of the time, so a probe is one page.
CREATE INDEX jobs_lease_idx ON jobq.jobs (locked_until) WHERE state = 'running';
-- Waiting jobs with a deadline, for ending those that missed it.
CREATE INDEX jobs_expiry_idx ON jobq.jobs (expires_at)
    WHERE state = 'waiting' AND expires_at IS NOT NULL;
-- Idempotent enqueue: one live job per (job_type, unique_key).
CREATE UNIQUE INDEX jobs_unique_key_idx ON jobq.jobs (job_type, unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('waiting', 'running');

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
    expires_at   timestamptz
);
