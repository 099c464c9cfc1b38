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
-- appends one row per (queue, type, status) it changed, with the net change. Appends never
-- contend with each other; readers sum the few rows, and a compaction folds them together.
CREATE TABLE job_counts (
    queue text NOT NULL,
    type text NOT NULL,
    status text NOT NULL,
    delta bigint NOT NULL
);

CREATE FUNCTION job_counts_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_counts (queue, type, status, delta)
        SELECT queue, type, status, count(*) FROM inserted_rows GROUP BY 1, 2, 3;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO job_counts (queue, type, status, delta)
        SELECT queue, type, status, sum(change)
        FROM (
            SELECT queue, type, status, 1 AS change FROM updated_rows
            UNION ALL
            SELECT queue, type, status, -1 FROM replaced_rows
        ) AS changes
        GROUP BY 1, 2, 3
        HAVING sum(change) <> 0;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO job_counts (queue, type, status, delta)
        SELECT queue, type, status, -count(*) FROM deleted_rows GROUP BY 1, 2, 3;
    ELSIF TG_OP = 'TRUNCATE' THEN
        DELETE FROM job_counts;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_counts_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_counts_record();
CREATE TRIGGER jobs_counts_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS replaced_rows NEW TABLE AS updated_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_counts_record();
CREATE TRIGGER jobs_counts_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION job_counts_record();
CREATE TRIGGER jobs_counts_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION job_counts_record();

-- Wakes idle workers at once when a job becomes ready (LISTEN/NOTIFY), one notification
-- per statement and queue rather than one per row.
CREATE FUNCTION jobs_notify_ready() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ready_queue text;
BEGIN
    FOR ready_queue IN
        SELECT DISTINCT queue FROM changed_rows
        WHERE status = 'pending' AND run_at <= now()
    LOOP
        PERFORM pg_notify('jobqueue_ready', ready_queue);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_ready();
CREATE TRIGGER jobs_notify_update AFTER UPDATE ON jobs
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_ready();
