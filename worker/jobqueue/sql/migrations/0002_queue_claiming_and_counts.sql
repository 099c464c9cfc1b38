-- What the queue needs beyond the seed's columns. Every added column has a default, so an
-- INSERT shaped like the seed's still works.

-- Named queues (one per JobQueue resource), priorities, and a heartbeat so that stale-lock
-- cleanup can tell a long job on a live worker from the job of a dead one.
ALTER TABLE jobs
    ADD COLUMN queue text NOT NULL DEFAULT 'default',
    ADD COLUMN priority integer NOT NULL DEFAULT 0,
    ADD COLUMN heartbeat_at timestamp with time zone,
    ADD CONSTRAINT jobs_status_check CHECK (status IN ('pending', 'running', 'failed', 'done')),
    ADD CONSTRAINT jobs_attempts_check CHECK (attempts >= 0),
    ADD CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1),
    ADD CONSTRAINT jobs_type_check CHECK (length(type) BETWEEN 1 AND 200),
    ADD CONSTRAINT jobs_queue_check CHECK (length(queue) BETWEEN 1 AND 200);

-- Claiming reads only ready rows in claim order, so finished rows piling up cost nothing.
CREATE INDEX jobs_ready_idx ON jobs (queue, priority DESC, run_at, id) WHERE status = 'pending';
-- The running set is small; stale-lock cleanup and "what does worker X hold" scan only it.
CREATE INDEX jobs_running_idx ON jobs (queue, heartbeat_at) WHERE status = 'running';

-- Queue statistics without counting the jobs table: every statement that changes jobs
-- appends one row per (queue, type) it changed, holding the net change of each status.
-- Appends never contend with each other; readers sum the few rows, and a compaction (run by
-- workers every few seconds, and by readers when rows pile up) folds them together.
CREATE TABLE job_counts (
    queue text NOT NULL,
    type text NOT NULL,
    pending bigint NOT NULL DEFAULT 0,
    running bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    done bigint NOT NULL DEFAULT 0
);

-- One trigger function for every change to jobs, so each statement pays for one trigger
-- call and one pass over its changed rows: it records the counts and, when the statement
-- left jobs pending, wakes idle workers of those queues (one NOTIFY per queue, not per row)
-- through the jobqueue_ready channel. Jobs due later wake them too: a worker then sleeps
-- until the earliest is due, so a delayed job starts on time, not at the next poll.
CREATE FUNCTION jobs_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ready_queue text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM job_counts;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_counts (queue, type, pending, running, failed, done)
        SELECT queue, type,
               count(*) FILTER (WHERE status = 'pending'),
               count(*) FILTER (WHERE status = 'running'),
               count(*) FILTER (WHERE status = 'failed'),
               count(*) FILTER (WHERE status = 'done')
        FROM new_rows
        GROUP BY queue, type;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO job_counts (queue, type, pending, running, failed, done)
        SELECT queue, type, pending, running, failed, done
        FROM (
            SELECT queue, type,
                   coalesce(sum(change) FILTER (WHERE status = 'pending'), 0) AS pending,
                   coalesce(sum(change) FILTER (WHERE status = 'running'), 0) AS running,
                   coalesce(sum(change) FILTER (WHERE status = 'failed'), 0) AS failed,
                   coalesce(sum(change) FILTER (WHERE status = 'done'), 0) AS done
            FROM (
                SELECT queue, type, status, 1 AS change FROM new_rows
                UNION ALL
                SELECT queue, type, status, -1 FROM old_rows
            ) AS changes
            GROUP BY queue, type
        ) AS net
        WHERE (pending, running, failed, done) <> (0, 0, 0, 0);
    ELSE
        INSERT INTO job_counts (queue, type, pending, running, failed, done)
        SELECT queue, type,
               -count(*) FILTER (WHERE status = 'pending'),
               -count(*) FILTER (WHERE status = 'running'),
               -count(*) FILTER (WHERE status = 'failed'),
               -count(*) FILTER (WHERE status = 'done')
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

CREATE TRIGGER jobs_after_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_record_change();
CREATE TRIGGER jobs_after_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_record_change();
CREATE TRIGGER jobs_after_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_record_change();
CREATE TRIGGER jobs_after_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_record_change();
