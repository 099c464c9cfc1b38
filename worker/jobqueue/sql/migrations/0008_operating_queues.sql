-- What the web UI and admin API (issue 23) show and record, kept cheap on a big jobs table.

-- Throughput without counting jobs: job_counts also appends how many jobs each statement
-- enqueued and how many it finished. Both only grow (deleting or retrying a job takes
-- nothing back), so the difference between two readings is what happened in between.
ALTER TABLE job_counts
    ADD COLUMN enqueued bigint NOT NULL DEFAULT 0,
    ADD COLUMN finished bigint NOT NULL DEFAULT 0;

-- Migration 0004's function, counting the two as well. An UPDATE's finishes are the rows it
-- leaves done, failed or cancelled less those it found so (a finished job's follow-ups
-- recorded on it, say), never below zero: a retry, finished to pending, takes none back.
-- No statement of the queue both finishes jobs and retries them.
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
    FOR ready_queue IN
        SELECT DISTINCT queue FROM new_rows WHERE status = 'pending'
    LOOP
        PERFORM pg_notify('jobqueue_ready', ready_queue);
    END LOOP;
    RETURN NULL;
END
$$;

-- The workers that are up: each running worker writes its row when it starts and again
-- every few heartbeats, and deletes it when it stops. A row not renewed for long is of a
-- worker that died; readers skip it and the next writer deletes it.
CREATE TABLE job_workers (
    worker_id text PRIMARY KEY CHECK (length(worker_id) BETWEEN 1 AND 200),
    queue text NOT NULL,
    concurrency integer NOT NULL CHECK (concurrency > 0),
    started_at timestamp with time zone NOT NULL,
    seen_at timestamp with time zone NOT NULL
);

-- The follow-up jobs a job's handler enqueued when it was done, for finding them from it.
ALTER TABLE jobs ADD COLUMN follow_ups uuid[];

-- Who did what to which jobs through the admin API: every action, with the filter that
-- named the jobs and how many it changed. An entry is written before the action starts and
-- completed with its count when it ends, so an action cut short (the database gone midway)
-- is still on record: jobs NULL, how many it changed unknown.
CREATE TABLE job_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamp with time zone NOT NULL DEFAULT now(),
    actor text NOT NULL,
    role text NOT NULL,
    action text NOT NULL,
    queue text,
    filter jsonb,
    jobs bigint,
    detail text
);

-- When the oldest ready job of a queue became due, without counting the queue's pending
-- jobs: a skip scan of jobs_ready_idx (queue, priority DESC, run_at, id) that reads the
-- earliest run_at of each priority present, a few index probes per priority, however many
-- jobs wait. NULL: nothing pending is due by %(at)s.
CREATE FUNCTION jobs_oldest_ready(queue_name text, at timestamp with time zone)
RETURNS timestamp with time zone LANGUAGE sql STABLE AS $$
    WITH RECURSIVE levels (priority) AS (
        (SELECT priority FROM jobs
         WHERE status = 'pending' AND queue = queue_name
         ORDER BY priority DESC LIMIT 1)
        UNION ALL
        SELECT (SELECT jobs.priority FROM jobs
                WHERE jobs.status = 'pending' AND jobs.queue = queue_name
                  AND jobs.priority < levels.priority
                ORDER BY jobs.priority DESC LIMIT 1)
        FROM levels
        WHERE levels.priority IS NOT NULL
    )
    SELECT min(head.run_at)
    FROM levels,
         LATERAL (SELECT jobs.run_at FROM jobs
                  WHERE jobs.status = 'pending' AND jobs.queue = queue_name
                    AND jobs.priority = levels.priority
                  ORDER BY jobs.run_at LIMIT 1) AS head
    WHERE head.run_at <= at
$$;

-- Migration 0004's filter, its creation times also bounding the id. Job ids carry their
-- creation time: the enqueue calls make them time-ordered (UUID version 7, the milliseconds
-- first), so a filter on the creation time reads a range of the primary key instead of all
-- of it, from the lowest id of the first moment (its millisecond, then zeros). An hour's
-- margin: an id is made by the enqueuing client's clock, created_at by the server's. (The
-- id is computed here, not by a function of its own: the schema check replays migrations
-- in a temporary schema, where a function cannot call another.) The bounds
-- never let in a job outside the times (created_at is checked as before), but a time filter
-- misses a job whose id does not carry its time: one inserted by hand without an id (a
-- random version 4 id, the seed's default), or made by a clock more than an hour off.
CREATE OR REPLACE FUNCTION jobs_matching(
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
      AND (created_after IS NULL
           OR id >= (lpad(to_hex(greatest(0, floor(extract(epoch FROM created_after) * 1000)
                                              - 3600000)::bigint), 12, '0')
                     || '00000000000000000000')::uuid)
      AND (created_before IS NULL
           OR id < (lpad(to_hex(least(281474976710655,
                                      floor(extract(epoch FROM created_before) * 1000)
                                      + 3600000)::bigint), 12, '0')
                    || '00000000000000000000')::uuid)
      AND (error_contains IS NULL OR strpos(lower(error), lower(error_contains)) > 0)
      AND (payload_contains IS NULL OR payload @> payload_contains)
$$;
