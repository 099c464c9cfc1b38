-- A wake-up path that scales (issue 24). At commit PostgreSQL queues a transaction's
-- notifications under one lock for the whole server, held until the transaction has ended,
-- so across the flush of its commit record: committers that notify cannot share a flush, and
-- single enqueues from many producers at once go one flush at a time (2.3x fewer per second
-- at 32 producers: bench/notify.py). A producer's own enqueues of one statement therefore
-- say, in a setting local to their transaction, that the producer wakes the workers itself:
-- it sends the notification after the commit, in a transaction that writes nothing and so
-- waits for no flush, one for all the enqueues that committed meanwhile. Every other way a
-- job becomes pending (an enqueue in the application's own transaction, a retry, a resumed
-- queue, an insert by hand) notifies here at its commit, as before.

-- Migration 0008's function, its notifications skipped when the statement's transaction
-- set jobqueue.wake_up to 'producer'.
CREATE OR REPLACE FUNCTION jobs_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ready_queue text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM job_counts;
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_counts (queue, type, pending, running, failed, done, cancelled, enqueued)
        SELECT queue, type,
               count(*) FILTER (WHERE status = 'pending'),
               count(*) FILTER (WHERE status = 'running'),
               count(*) FILTER (WHERE status = 'failed'),
               count(*) FILTER (WHERE status = 'done'),
               count(*) FILTER (WHERE status = 'cancelled'),
               count(*)
        FROM new_rows
        GROUP BY queue, type;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO job_counts (queue, type, pending, running, failed, done, cancelled, finished)
        SELECT queue, type, pending, running, failed, done, cancelled, finished
        FROM (
            SELECT queue, type,
                   coalesce(sum(change) FILTER (WHERE status = 'pending'), 0) AS pending,
                   coalesce(sum(change) FILTER (WHERE status = 'running'), 0) AS running,
                   coalesce(sum(change) FILTER (WHERE status = 'failed'), 0) AS failed,
                   coalesce(sum(change) FILTER (WHERE status = 'done'), 0) AS done,
                   coalesce(sum(change) FILTER (WHERE status = 'cancelled'), 0) AS cancelled,
                   greatest(coalesce(sum(change) FILTER (
                                WHERE status IN ('done', 'failed', 'cancelled')), 0), 0)
                       AS finished
            FROM (
                SELECT queue, type, status, 1 AS change FROM new_rows
                UNION ALL
                SELECT queue, type, status, -1 FROM old_rows
            ) AS changes
            GROUP BY queue, type
        ) AS net
        WHERE (pending, running, failed, done, cancelled, finished) <> (0, 0, 0, 0, 0, 0);
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
    IF current_setting('jobqueue.wake_up', true) IS DISTINCT FROM 'producer' THEN
        FOR ready_queue IN
            SELECT DISTINCT queue FROM new_rows WHERE status = 'pending'
        LOOP
            PERFORM pg_notify('jobqueue_ready', ready_queue);
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;
