-- Job control (issue 21): cancelling, and the filter that listing, cancelling, retrying and
-- deleting share.

-- A new terminal status, never retried. A running job is not cancelled at once: a cancel
-- request is recorded (cancel_requested_at) and its worker told (NOTIFY jobqueue_cancel);
-- the job becomes cancelled when the worker lets go of it, so it can never run again while
-- its handler is still running somewhere.
ALTER TABLE jobs
    DROP CONSTRAINT jobs_status_check,
    ADD CONSTRAINT jobs_status_check
        CHECK (status IN ('pending', 'running', 'failed', 'done', 'cancelled')),
    ADD COLUMN cancel_requested_at timestamp with time zone;

ALTER TABLE job_counts ADD COLUMN cancelled bigint NOT NULL DEFAULT 0;

-- Migration 0002's function, counting the new status too.
CREATE OR REPLACE FUNCTION jobs_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ready_queue text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM job_counts;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_counts (queue, type, pending, running, failed, done, cancelled)
        SELECT queue, type,
               count(*) FILTER (WHERE status = 'pending'),
               count(*) FILTER (WHERE status = 'running'),
               count(*) FILTER (WHERE status = 'failed'),
               count(*) FILTER (WHERE status = 'done'),
               count(*) FILTER (WHERE status = 'cancelled')
        FROM new_rows
        GROUP BY queue, type;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO job_counts (queue, type, pending, running, failed, done, cancelled)
        SELECT queue, type, pending, running, failed, done, cancelled
        FROM (
            SELECT queue, type,
                   coalesce(sum(change) FILTER (WHERE status = 'pending'), 0) AS pending,
                   coalesce(sum(change) FILTER (WHERE status = 'running'), 0) AS running,
                   coalesce(sum(change) FILTER (WHERE status = 'failed'), 0) AS failed,
                   coalesce(sum(change) FILTER (WHERE status = 'done'), 0) AS done,
                   coalesce(sum(change) FILTER (WHERE status = 'cancelled'), 0) AS cancelled
            FROM (
                SELECT queue, type, status, 1 AS change FROM new_rows
                UNION ALL
                SELECT queue, type, status, -1 FROM old_rows
            ) AS changes
            GROUP BY queue, type
        ) AS net
        WHERE (pending, running, failed, done, cancelled) <> (0, 0, 0, 0, 0);
    ELSE
        INSERT INTO job_counts (queue, type, pending, running, failed, done, cancelled)
        SELECT queue, type,
               -count(*) FILTER (WHERE status = 'pending'),
               -count(*) FILTER (WHERE status = 'running'),
               -count(*) FILTER (WHERE status = 'failed'),
               -count(*) FILTER (WHERE status = 'done'),
               -count(*) FILTER (WHERE status = 'cancelled')
        FROM old_rows
        GROUP BY queue, type;
        RETURN NULL;
    END IF;
    FOR ready_queue IN
        SELECT DISTINCT queue FROM new_rows WHERE status = 'pending'
    LOOP
        PERFORM pg_notify('jobqueue_ready', ready_queue);
    END LOOP;
    RETURN NULL;
END
$$;

-- Retention and deletion find cancelled jobs as they find the other finished ones.
DROP INDEX jobs_finished_idx;
CREATE INDEX jobs_finished_idx ON jobs (updated_at)
    WHERE status IN ('done', 'failed', 'cancelled');
-- The jobs people look for when something went wrong, newest first, and retry: few next to
-- the done ones, so this index stays small, and rows enter it only when a job fails or is
-- cancelled, never on the hot path of a job that succeeds.
CREATE INDEX jobs_failed_idx ON jobs (id) WHERE status IN ('failed', 'cancelled');

-- The jobs a filter names (every argument NULL: no condition). One definition for listing,
-- cancelling, retrying and deleting. A plain SQL function of one SELECT, so the planner
-- inlines it into the statement that calls it and uses the indexes as for a written-out
-- WHERE clause.
CREATE FUNCTION jobs_matching(
    ids uuid[],
    statuses text[],
    types text[],
    queue_name text,
    created_after timestamp with time zone,
    created_before timestamp with time zone,
    error_contains text,
    payload_contains jsonb
) RETURNS SETOF jobs LANGUAGE sql STABLE AS $$
    SELECT *
    FROM jobs
    WHERE (ids IS NULL OR id = ANY (ids))
      AND (statuses IS NULL OR status = ANY (statuses))
      AND (types IS NULL OR type = ANY (types))
      AND (queue_name IS NULL OR queue = queue_name)
      AND (created_after IS NULL OR created_at >= created_after)
      AND (created_before IS NULL OR created_at < created_before)
      AND (error_contains IS NULL OR strpos(lower(error), lower(error_contains)) > 0)
      AND (payload_contains IS NULL OR payload @> payload_contains)
$$;
