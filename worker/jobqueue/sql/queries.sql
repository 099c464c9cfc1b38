-- All of jobqueue's SQL, one named query a block. A block starts with "-- name: <name>"
-- and runs to the next one. Parameters are psycopg named placeholders only. Wherever a
-- query reads the clock it takes %(now)s, so tests can move time: NULL means now().

-- name: job_insert
-- Returns what the caller cannot know: the rest of the row is what it sent, the defaults
-- (status pending, attempts 0) and the clock (created_at; updated_at, and run_at when
-- neither it nor now is given, are the same now()). %(wake_up)s: who wakes the workers,
-- 'commit' (the trigger's notification, at commit) or 'producer' (after it; migration 0010),
-- for the rest of the transaction; the setting is made before the trigger reads it, at the
-- statement's end.
INSERT INTO jobs (id, type, payload, run_at, max_attempts, queue, priority, concurrency_key)
SELECT %(id)s::uuid,
       %(type)s::text,
       %(payload)s::jsonb,
       coalesce(%(run_at)s::timestamptz, %(now)s::timestamptz, now()),
       coalesce(%(max_attempts)s::integer, 3),
       %(queue)s::text,
       %(priority)s::integer,
       %(concurrency_key)s::text
FROM (SELECT set_config('jobqueue.wake_up', %(wake_up)s, true)) AS wake_up
RETURNING max_attempts, created_at;

-- name: job_insert_many
-- One statement for a whole batch: each parameter is an array, one element a job.
-- %(wake_up)s as for job_insert.
INSERT INTO jobs (id, type, payload, run_at, max_attempts, queue, priority, concurrency_key)
SELECT id, type, payload::jsonb, coalesce(run_at, %(now)s, now()), coalesce(max_attempts, 3),
       queue, priority, concurrency_key
FROM unnest(
    %(ids)b::uuid[], %(types)s::text[], %(payloads)s::text[], %(run_ats)s::timestamptz[],
    %(max_attempts)s::integer[], %(queues)s::text[], %(priorities)s::integer[],
    %(concurrency_keys)s::text[]
) AS batch (id, type, payload, run_at, max_attempts, queue, priority, concurrency_key),
     (SELECT set_config('jobqueue.wake_up', %(wake_up)s, true)) AS wake_up
RETURNING *;

-- name: job_insert_many_unique
-- job_insert_many for jobs of which some have unique keys (migration 0005; one job alike):
-- those whose key is held are skipped, and the jobs holding their keys come back with the
-- inserted ones; the holders are found through jobs_unique_idx, in its own terms. (A key
-- held by a job of the same batch, or by an insert not yet committed, comes back with
-- neither: the caller looks again.) %(wake_up)s as for job_insert.
WITH batch AS (
    SELECT id, type, payload, run_at, max_attempts, queue, priority, unique_key,
           to_timestamp(floor(extract(epoch FROM coalesce(%(now)s, now())) / unique_for)
                        * unique_for) AS unique_period_start, concurrency_key
    FROM unnest(
        %(ids)b::uuid[], %(types)s::text[], %(payloads)s::text[], %(run_ats)s::timestamptz[],
        %(max_attempts)s::integer[], %(queues)s::text[], %(priorities)s::integer[],
        %(unique_keys)s::text[], %(unique_fors)s::double precision[],
        %(concurrency_keys)s::text[]
    ) AS given (id, type, payload, run_at, max_attempts, queue, priority, unique_key,
                unique_for, concurrency_key),
         (SELECT set_config('jobqueue.wake_up', %(wake_up)s, true)) AS wake_up
), inserted AS (
    INSERT INTO jobs (id, type, payload, run_at, max_attempts, queue, priority, unique_key,
                      unique_period_start, concurrency_key)
    SELECT id, type, payload::jsonb, coalesce(run_at, %(now)s, now()),
           coalesce(max_attempts, 3), queue, priority, unique_key, unique_period_start,
           concurrency_key
    FROM batch
    ON CONFLICT DO NOTHING
    RETURNING *
)
SELECT * FROM inserted
UNION ALL
SELECT DISTINCT jobs.*
FROM batch
JOIN jobs ON jobs.unique_key = batch.unique_key
WHERE batch.id NOT IN (SELECT id FROM inserted)
  AND (jobs.unique_period_start IS NOT NULL OR jobs.status IN ('pending', 'running'))
  AND coalesce(jobs.unique_period_start, '-infinity'::timestamp with time zone)
      = coalesce(batch.unique_period_start, '-infinity'::timestamp with time zone);

-- name: job_copy_in
-- Bulk enqueue (COPY, text format): jobs due now; run_at is the database's now().
COPY jobs (id, type, max_attempts, queue, priority, payload) FROM STDIN;

-- name: job_copy_in_at
-- Bulk enqueue (COPY, text format): jobs with their own run_at.
COPY jobs (id, type, max_attempts, queue, priority, payload, run_at) FROM STDIN;

-- name: job_get
SELECT * FROM jobs WHERE id = %(id)s;

-- name: job_list_newest
-- A page of the jobs a filter names (jobs_matching, migration 0004), newest first: ids are
-- time-ordered (UUID version 7), so the page after %(after)s is the ids below it, read from
-- the primary key, and stays right while new jobs come in above.
SELECT *
FROM jobs_matching(%(ids)s, %(statuses)s, %(types)s, %(queue)s, %(created_after)s,
                   %(created_before)s, %(error_contains)s, %(payload_contains)s::jsonb)
WHERE %(after)s::uuid IS NULL OR id < %(after)s::uuid
ORDER BY id DESC
LIMIT %(limit)s;

-- name: job_list_oldest
-- The same, oldest first: the page after %(after)s is the ids above it.
SELECT *
FROM jobs_matching(%(ids)s, %(statuses)s, %(types)s, %(queue)s, %(created_after)s,
                   %(created_before)s, %(error_contains)s, %(payload_contains)s::jsonb)
WHERE %(after)s::uuid IS NULL OR id > %(after)s::uuid
ORDER BY id
LIMIT %(limit)s;

-- name: job_list_waiting_oldest
-- The pending and running jobs a filter names, oldest first: read through their partial
-- indexes (the queue's backlog, all of it: the caller checks from the statistics that it is
-- not large) and sorted, not from the primary key, which past millions of finished jobs
-- would reach the oldest waiting one only after reading them all. Materialised, so that
-- the planner cannot take the primary key's order instead.
WITH waiting AS MATERIALIZED (
    SELECT id
    FROM jobs_matching(%(ids)s, %(statuses)s, %(types)s, %(queue)s, %(created_after)s,
                       %(created_before)s, %(error_contains)s, %(payload_contains)s::jsonb)
    WHERE status = 'pending' AND (%(after)s::uuid IS NULL OR id > %(after)s::uuid)
    UNION ALL
    SELECT id
    FROM jobs_matching(%(ids)s, %(statuses)s, %(types)s, %(queue)s, %(created_after)s,
                       %(created_before)s, %(error_contains)s, %(payload_contains)s::jsonb)
    WHERE status = 'running' AND (%(after)s::uuid IS NULL OR id > %(after)s::uuid)
), page AS (
    SELECT id FROM waiting ORDER BY id LIMIT %(limit)s
)
SELECT jobs.*
FROM jobs
WHERE jobs.id = ANY (ARRAY(SELECT id FROM page))
ORDER BY jobs.id;

-- name: job_cancel
-- Cancels up to %(limit)s jobs the filter names: a pending one becomes cancelled at once; a
-- running one gets a cancel request, and its worker a NOTIFY on jobqueue_cancel, and it
-- becomes cancelled when the worker lets go of it (or when it is rescued). The status is
-- checked again on each row as it is locked: a job claimed meanwhile is asked to stop, one
-- finished meanwhile is left alone. Returns the jobs as they now are.
WITH target AS (
    SELECT id
    FROM jobs_matching(%(ids)s, %(statuses)s, %(types)s, %(queue)s, %(created_after)s,
                       %(created_before)s, %(error_contains)s, %(payload_contains)s::jsonb)
    WHERE status IN ('pending', 'running') AND cancel_requested_at IS NULL
    ORDER BY id
    LIMIT %(limit)s
), cancelled AS (
    UPDATE jobs
    SET status = CASE WHEN jobs.status = 'pending' THEN 'cancelled' ELSE jobs.status END,
        cancel_requested_at = coalesce(%(now)s, now()),
        error = CASE WHEN jobs.status = 'pending' THEN %(reason)s ELSE jobs.error END,
        updated_at = coalesce(%(now)s, now())
    WHERE jobs.id = ANY (ARRAY(SELECT id FROM target))
      AND jobs.status IN ('pending', 'running') AND jobs.cancel_requested_at IS NULL
    RETURNING jobs.*
), told AS (
    SELECT count(pg_notify('jobqueue_cancel', id::text)) AS workers_told
    FROM cancelled
    WHERE status = 'running'
)
SELECT cancelled.* FROM cancelled, told;

-- name: job_retry
-- Puts up to %(limit)s failed or cancelled jobs the filter names back to pending, due now.
-- The attempts made stay counted (and the last error stays until the next run's outcome):
-- max_attempts grows so that at least one more attempt is allowed. A job whose unique key
-- another pending or running job holds now stays as it is (migration 0005).
WITH target AS (
    SELECT id
    FROM jobs_matching(%(ids)s, %(statuses)s, %(types)s, %(queue)s, %(created_after)s,
                       %(created_before)s, %(error_contains)s, %(payload_contains)s::jsonb)
         AS matched
    WHERE status IN ('failed', 'cancelled')
      AND NOT EXISTS (
          SELECT FROM jobs AS holder
          WHERE matched.unique_period_start IS NULL
            AND holder.unique_key = matched.unique_key
            AND holder.unique_period_start IS NULL
            AND holder.status IN ('pending', 'running')
      )
    ORDER BY id
    LIMIT %(limit)s
)
UPDATE jobs
SET status = 'pending',
    run_at = coalesce(%(now)s, now()),
    max_attempts = greatest(jobs.max_attempts, jobs.attempts + 1),
    cancel_requested_at = NULL,
    locked_at = NULL,
    locked_by = NULL,
    heartbeat_at = NULL,
    updated_at = coalesce(%(now)s, now())
WHERE jobs.id = ANY (ARRAY(SELECT id FROM target))
  AND jobs.status IN ('failed', 'cancelled')
RETURNING *;

-- name: job_delete
-- Deletes up to %(limit)s finished (done, failed, cancelled) jobs the filter names; pending
-- and running jobs are never deleted (cancel them first). Returns the ids deleted.
WITH target AS (
    SELECT id
    FROM jobs_matching(%(ids)s, %(statuses)s, %(types)s, %(queue)s, %(created_after)s,
                       %(created_before)s, %(error_contains)s, %(payload_contains)s::jsonb)
    WHERE status IN ('done', 'failed', 'cancelled')
    ORDER BY id
    LIMIT %(limit)s
)
DELETE FROM jobs
WHERE id = ANY (ARRAY(SELECT id FROM target))
  AND status IN ('done', 'failed', 'cancelled')
RETURNING id;

-- name: job_claim
-- Claims up to %(limit)s ready jobs of one queue in claim order; rows another claimer holds
-- are skipped, never waited for, so no job is handed out twice. %(types)s NULL means any.
-- The rows are found again by ctid, not id: the lock taken keeps each locked version where
-- it is until this statement updates it, and a TID scan saves a primary-key lookup a job.
-- A paused queue gives nothing, and so does one with limits, whose workers claim with
-- job_claim_limited (one lookup a statement, not a row: an InitPlan).
WITH ready AS (
    SELECT ctid
    FROM jobs
    WHERE status = 'pending'
      AND queue = %(queue)s
      AND run_at <= coalesce(%(now)s, now())
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT EXISTS (
          SELECT FROM job_queues
          WHERE name = %(queue)s AND (paused_at IS NOT NULL OR limited)
      )
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = 'running',
    attempts = jobs.attempts + 1,
    locked_at = coalesce(%(now)s, now()),
    locked_by = %(worker_id)s,
    heartbeat_at = coalesce(%(now)s, now()),
    updated_at = coalesce(%(now)s, now())
FROM ready
WHERE jobs.ctid = ready.ctid
-- Every time returned is one Python can hold in any timezone (checks.EARLIEST_TIME to
-- LATEST_TIME), so the worker reads them with the driver's own loader, not the forgiving
-- one in Python, a fifth of its CPU per job otherwise. The times this statement sets are in
-- range already (%(now)s is checked); run_at and created_at may have come from raw SQL.
RETURNING jobs.id, jobs.type, jobs.status, jobs.payload, jobs.result, jobs.attempts,
    jobs.max_attempts,
    least(greatest(jobs.run_at, '0001-01-02 00:00+00'), '9999-12-30 00:00+00') AS run_at,
    jobs.locked_at, jobs.locked_by, jobs.error,
    least(greatest(jobs.created_at, '0001-01-02 00:00+00'), '9999-12-30 00:00+00') AS created_at,
    jobs.updated_at, jobs.queue, jobs.priority, jobs.heartbeat_at, jobs.cancel_requested_at,
    jobs.unique_key, jobs.concurrency_key;

-- name: job_claim_limited
-- job_claim for a queue with limits (migration 0011): within them, taking turns between
-- concurrency keys from the one after %(after_key)s (the last this worker served).
SELECT id, type, status, payload, result, attempts, max_attempts,
    least(greatest(run_at, '0001-01-02 00:00+00'), '9999-12-30 00:00+00') AS run_at,
    locked_at, locked_by, error,
    least(greatest(created_at, '0001-01-02 00:00+00'), '9999-12-30 00:00+00') AS created_at,
    updated_at, queue, priority, heartbeat_at, cancel_requested_at, unique_key,
    concurrency_key
FROM jobs_claim_limited(%(queue)s, %(worker_id)s, %(limit)s, %(types)s,
                        coalesce(%(now)s, now()), %(after_key)s);

-- name: queue_limited
-- Whether a queue has limits: its workers then claim with job_claim_limited.
SELECT coalesce((SELECT limited FROM job_queues WHERE name = %(queue)s), false);

-- name: job_claim_after
-- job_claim for a worker whose claims got slow (see worker.Claimer): dead index entries of
-- jobs claimed since the oldest open snapshot (a long transaction holds vacuum back) pile
-- up at the head of jobs_ready_idx, and job_claim reads every one of them, heap and all,
-- before it reaches a pending job. This one starts where the worker's last claim was:
-- at priority %(after_priority)s, from %(after_run_at)s on (the caller leaves a margin),
-- after the jobs of higher priority, which it reads from the head as job_claim does. The
-- btree descends straight to that place; what lies before it is left to job_claim, which the
-- worker still runs now and then (jobs put back in line, lower priorities).
WITH higher AS (
    SELECT ctid, priority, run_at, id
    FROM jobs
    WHERE status = 'pending'
      AND queue = %(queue)s
      AND priority > %(after_priority)s
      AND run_at <= coalesce(%(now)s, now())
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT EXISTS (
          SELECT FROM job_queues
          WHERE name = %(queue)s AND (paused_at IS NOT NULL OR limited)
      )
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), level AS (
    SELECT ctid, priority, run_at, id
    FROM jobs
    WHERE status = 'pending'
      AND queue = %(queue)s
      AND priority = %(after_priority)s
      AND run_at >= %(after_run_at)s
      AND run_at <= coalesce(%(now)s, now())
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT EXISTS (
          SELECT FROM job_queues
          WHERE name = %(queue)s AND (paused_at IS NOT NULL OR limited)
      )
    ORDER BY run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), ready AS (
    -- Higher priorities first. A limit known when the statement is planned, in each branch:
    -- one computed from the other branch's count leaves the planner guessing at how many
    -- rows to read (it then sorted every pending job); the rows of this level locked past
    -- the limit are let go when the statement ends, and left pending.
    (SELECT ctid FROM higher UNION ALL SELECT ctid FROM level) LIMIT %(limit)s
)
UPDATE jobs
SET status = 'running',
    attempts = jobs.attempts + 1,
    locked_at = coalesce(%(now)s, now()),
    locked_by = %(worker_id)s,
    heartbeat_at = coalesce(%(now)s, now()),
    updated_at = coalesce(%(now)s, now())
FROM ready
WHERE jobs.ctid = ready.ctid
RETURNING jobs.id, jobs.type, jobs.status, jobs.payload, jobs.result, jobs.attempts,
    jobs.max_attempts,
    least(greatest(jobs.run_at, '0001-01-02 00:00+00'), '9999-12-30 00:00+00') AS run_at,
    jobs.locked_at, jobs.locked_by, jobs.error,
    least(greatest(jobs.created_at, '0001-01-02 00:00+00'), '9999-12-30 00:00+00') AS created_at,
    jobs.updated_at, jobs.queue, jobs.priority, jobs.heartbeat_at, jobs.cancel_requested_at,
    jobs.unique_key, jobs.concurrency_key;

-- name: job_complete
-- Only a job still in play can be completed. With %(worker_id)s set, only while that worker
-- holds it: a worker whose job was rescued must not overwrite the next run's outcome. A job
-- whose cancellation was requested while it ran ends cancelled however its run ended (the
-- caller enqueues its follow-ups only when it is done).
UPDATE jobs
SET status = CASE WHEN jobs.cancel_requested_at IS NULL THEN 'done' ELSE 'cancelled' END,
    result = %(result)s::jsonb,
    error = NULL,
    locked_at = NULL,
    locked_by = NULL,
    heartbeat_at = NULL,
    updated_at = coalesce(%(now)s, now())
WHERE id = %(id)s
  AND status IN ('pending', 'running')
  AND (%(worker_id)s::text IS NULL OR (status = 'running' AND locked_by = %(worker_id)s))
RETURNING *;

-- name: job_fail
-- A failure uses up an attempt: a running job spent one when it was claimed, a pending job
-- failed by hand spends one now. While attempts remain the job goes back to pending after
-- %(retry_delay)s seconds; after that it is failed for good. A job whose cancellation was
-- requested ends cancelled.
UPDATE jobs
SET attempts = jobs.attempts + CASE WHEN jobs.status = 'pending' THEN 1 ELSE 0 END,
    status = CASE
        WHEN jobs.cancel_requested_at IS NOT NULL THEN 'cancelled'
        WHEN jobs.attempts + CASE WHEN jobs.status = 'pending' THEN 1 ELSE 0 END
             < jobs.max_attempts AND NOT %(final)s
        THEN 'pending' ELSE 'failed' END,
    run_at = CASE
        WHEN jobs.attempts + CASE WHEN jobs.status = 'pending' THEN 1 ELSE 0 END
             < jobs.max_attempts AND NOT %(final)s AND jobs.cancel_requested_at IS NULL
        THEN coalesce(%(now)s, now()) + make_interval(secs => %(retry_delay)s)
        ELSE jobs.run_at END,
    error = %(error)s,
    locked_at = NULL,
    locked_by = NULL,
    heartbeat_at = NULL,
    updated_at = coalesce(%(now)s, now())
WHERE id = %(id)s
  AND status IN ('pending', 'running')
  AND (%(worker_id)s::text IS NULL OR (status = 'running' AND locked_by = %(worker_id)s))
RETURNING *;

-- name: job_snooze
-- A handler asked to run again in %(seconds)s seconds: back to pending, due then, without
-- using up an attempt (the run is counted in attempts, and max_attempts grows by one, so
-- the handler can tell a later run by its attempts). A job whose cancellation was
-- requested ends cancelled instead. Only while %(worker_id)s (when given) holds it.
UPDATE jobs
SET status = CASE WHEN jobs.cancel_requested_at IS NULL THEN 'pending' ELSE 'cancelled' END,
    max_attempts = jobs.max_attempts
                   + CASE WHEN jobs.cancel_requested_at IS NULL THEN 1 ELSE 0 END,
    run_at = CASE WHEN jobs.cancel_requested_at IS NULL
                  THEN coalesce(%(now)s, now()) + make_interval(secs => %(seconds)s)
                  ELSE jobs.run_at END,
    locked_at = NULL,
    locked_by = NULL,
    heartbeat_at = NULL,
    updated_at = coalesce(%(now)s, now())
WHERE id = %(id)s
  AND status IN ('pending', 'running')
  AND (%(worker_id)s::text IS NULL OR (status = 'running' AND locked_by = %(worker_id)s))
RETURNING *;

-- name: job_complete_many
-- A worker's finished jobs in one statement; returns the ids it still held and so completed
-- (or, for a job whose cancellation was requested meanwhile, cancelled).
UPDATE jobs
SET status = CASE WHEN jobs.cancel_requested_at IS NULL THEN 'done' ELSE 'cancelled' END,
    result = batch.result::jsonb,
    error = NULL,
    locked_at = NULL,
    locked_by = NULL,
    heartbeat_at = NULL,
    updated_at = coalesce(%(now)s, now())
FROM unnest(%(ids)b::uuid[], %(results)s::text[]) AS batch (id, result)
-- Not (SELECT 'running') as in job_heartbeat: here the InitPlan made draining three times
-- slower (bench/worker.py, 2 x 100). A stale plan through jobs_running_idx is a plain index
-- scan that marks the dead entries it meets, so the next one skips them.
WHERE jobs.id = batch.id AND jobs.status = 'running' AND jobs.locked_by = %(worker_id)s
RETURNING jobs.id;

-- name: job_release
-- Hands a worker's unfinished jobs back at once. At a shutdown the run was cut short by the
-- worker, not by the job, so its attempt is given back; a worker that stops because it
-- failed keeps the attempt counted (%(keep_attempt)s), so that a job which brings down every
-- worker that runs it still ends, failed, after max_attempts. A job whose cancellation was
-- requested ends cancelled.
UPDATE jobs
SET status = CASE WHEN jobs.cancel_requested_at IS NOT NULL THEN 'cancelled'
                  WHEN %(keep_attempt)s AND jobs.attempts >= jobs.max_attempts
                  THEN 'failed' ELSE 'pending' END,
    attempts = CASE WHEN %(keep_attempt)s THEN jobs.attempts
                    ELSE greatest(jobs.attempts - 1, 0) END,
    -- Its place in line is kept: it was due already, and runs again before newer work.
    run_at = least(jobs.run_at, coalesce(%(now)s, now())),
    error = coalesce(%(error)s, jobs.error),
    locked_at = NULL,
    locked_by = NULL,
    heartbeat_at = NULL,
    updated_at = coalesce(%(now)s, now())
-- (SELECT 'running'): read by id only, never through jobs_running_idx (see job_heartbeat).
WHERE id = ANY(%(ids)b::uuid[]) AND status = (SELECT 'running') AND locked_by = %(worker_id)s
RETURNING *;

-- name: job_next_run_at
-- When the next pending job of a queue becomes due, so an idle worker can wake for it; for
-- a paused queue, never (its resume wakes the workers).
SELECT min(run_at)
FROM jobs
WHERE status = 'pending'
  AND queue = %(queue)s
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
  AND NOT EXISTS (SELECT FROM job_queues WHERE name = %(queue)s AND paused_at IS NOT NULL);

-- name: queue_pause
-- Pauses a queue: workers claim nothing from it from their next claim on. Pausing a paused
-- queue keeps the time it was first paused. Returns when it was paused.
INSERT INTO job_queues (name, paused_at, updated_at)
VALUES (%(queue)s, coalesce(%(now)s, now()), coalesce(%(now)s, now()))
ON CONFLICT (name) DO UPDATE
SET paused_at = coalesce(job_queues.paused_at, excluded.paused_at),
    updated_at = excluded.updated_at
RETURNING paused_at;

-- name: queue_resume
-- Resumes a paused queue and wakes its idle workers. Returns a row if it was paused.
WITH resumed AS (
    UPDATE job_queues
    SET paused_at = NULL, updated_at = coalesce(%(now)s, now())
    WHERE name = %(queue)s AND paused_at IS NOT NULL
    RETURNING name
)
SELECT pg_notify('jobqueue_ready', name) FROM resumed;

-- name: job_limit_set
-- Sets a concurrency limit (migration 0011) and wakes the queue's idle workers: a limit
-- raised or lifted lets them claim more at once.
WITH written AS (
    INSERT INTO job_limits (queue, scope, name, concurrency, updated_at)
    VALUES (%(queue)s, %(scope)s, %(name)s, %(concurrency)s, coalesce(%(now)s, now()))
    ON CONFLICT (queue, scope, name) DO UPDATE
    SET concurrency = excluded.concurrency, updated_at = excluded.updated_at
    RETURNING queue, scope, name, concurrency, updated_at, rate, per, burst
)
SELECT written.*, pg_notify('jobqueue_ready', written.queue) FROM written;

-- name: job_limit_delete
-- Removes a limit and wakes the queue's idle workers. Returns a row if there was one.
WITH removed AS (
    DELETE FROM job_limits
    WHERE queue = %(queue)s AND scope = %(scope)s AND name = %(name)s
    RETURNING queue
)
SELECT pg_notify('jobqueue_ready', queue) FROM removed;

-- name: job_limit_held
-- The ready jobs of %(queue)s its limits hold back now (0 for a queue without limits).
SELECT CASE WHEN coalesce((SELECT limited FROM job_queues WHERE name = %(queue)s), false)
            THEN jobs_held_by_limits(%(queue)s, coalesce(%(now)s, now()))
            ELSE 0 END;

-- name: job_limit_rate_set
-- Sets a rate limit (migration 0011), its concurrency left as it was, and wakes the queue's
-- idle workers.
WITH written AS (
    INSERT INTO job_limits (queue, scope, name, rate, per, burst, updated_at)
    VALUES (%(queue)s, %(scope)s, %(name)s, %(rate)s, %(per)s, %(burst)s,
            coalesce(%(now)s, now()))
    ON CONFLICT (queue, scope, name) DO UPDATE
    SET rate = excluded.rate, per = excluded.per, burst = excluded.burst,
        updated_at = excluded.updated_at
    RETURNING queue, scope, name, concurrency, updated_at, rate, per, burst
)
SELECT written.*, pg_notify('jobqueue_ready', written.queue) FROM written;

-- name: job_limit_list
SELECT queue, scope, name, concurrency, updated_at, rate, per, burst
FROM job_limits
WHERE %(queue)s::text IS NULL OR queue = %(queue)s
ORDER BY queue, scope, name;

-- name: queue_wake_up
-- The workers of these queues woken after a producer's enqueues into them have committed
-- (migration 0010): a transaction that writes nothing, so it holds the notifications' lock
-- for no flush.
SELECT count(pg_notify('jobqueue_ready', name)) FROM unnest(%(queues)s::text[]) AS name;

-- name: queue_paused_list
-- The paused queues (all, or %(queue)s), with when each was paused.
SELECT name, paused_at
FROM job_queues
WHERE paused_at IS NOT NULL AND (%(queue)s::text IS NULL OR name = %(queue)s)
ORDER BY name;

-- name: schedule_declare
-- Declares schedules (migration 0007), one element of each array a schedule: new ones are
-- added, known ones take the given definition. A schedule whose timing changed starts
-- again from the next tick of its new timing (next_run_at NULL: worked out by the next
-- scheduler pass); one declared as it was is left untouched, not even rewritten.
INSERT INTO job_schedules AS known (name, type, queue, cron, every_seconds, time_zone, payload,
                                    priority, max_attempts, catch_up, updated_at)
SELECT name, type, queue, cron, every_seconds, time_zone, payload::jsonb, priority,
       max_attempts, catch_up, coalesce(%(now)s, now())
FROM unnest(
    %(names)s::text[], %(types)s::text[], %(queues)s::text[], %(crons)s::text[],
    %(every_seconds)s::double precision[], %(time_zones)s::text[], %(payloads)s::text[],
    %(priorities)s::integer[], %(max_attempts)s::integer[], %(catch_ups)s::integer[]
) AS given (name, type, queue, cron, every_seconds, time_zone, payload, priority,
            max_attempts, catch_up)
ON CONFLICT (name) DO UPDATE
SET type = excluded.type, queue = excluded.queue, cron = excluded.cron,
    every_seconds = excluded.every_seconds, time_zone = excluded.time_zone,
    payload = excluded.payload, priority = excluded.priority,
    max_attempts = excluded.max_attempts, catch_up = excluded.catch_up,
    next_run_at = CASE
        WHEN (known.cron, known.every_seconds, known.time_zone)
             IS NOT DISTINCT FROM (excluded.cron, excluded.every_seconds, excluded.time_zone)
        THEN known.next_run_at END,
    updated_at = excluded.updated_at
WHERE (known.type, known.queue, known.cron, known.every_seconds, known.time_zone,
       known.payload, known.priority, known.max_attempts, known.catch_up)
      IS DISTINCT FROM
      (excluded.type, excluded.queue, excluded.cron, excluded.every_seconds,
       excluded.time_zone, excluded.payload, excluded.priority, excluded.max_attempts,
       excluded.catch_up);

-- name: schedule_due_lock
-- The schedules among %(names)s with a tick due within %(ahead)s seconds of the clock (or
-- not yet looked at), locked for this transaction; one another scheduler holds is skipped:
-- it is enqueueing that tick. Returns each with its next_run_at and the clock.
SELECT name, next_run_at, coalesce(%(now)s, now())
FROM job_schedules
WHERE name = ANY(%(names)s::text[])
  AND (next_run_at IS NULL
       OR next_run_at <= coalesce(%(now)s, now()) + make_interval(secs => %(ahead)s))
FOR UPDATE SKIP LOCKED;

-- name: schedule_ticks_insert
-- The due ticks' jobs: each holds its tick's unique key for good (unique_period_start is the
-- tick), and a tick enqueued before, by whoever, is skipped. run_at is the tick: a tick
-- enqueued ahead of time waits for it. Returns the jobs added.
INSERT INTO jobs (id, type, payload, run_at, max_attempts, queue, priority, unique_key,
                  unique_period_start)
SELECT id, type, payload::jsonb, tick, coalesce(max_attempts, 3), queue, priority, unique_key,
       tick
FROM unnest(
    %(ids)b::uuid[], %(types)s::text[], %(payloads)s::text[], %(ticks)s::timestamptz[],
    %(max_attempts)s::integer[], %(queues)s::text[], %(priorities)s::integer[],
    %(unique_keys)s::text[]
) AS given (id, type, payload, tick, max_attempts, queue, priority, unique_key)
ON CONFLICT DO NOTHING
RETURNING *;

-- name: schedule_advance
-- Moves locked schedules on: next_run_at to their next tick, last_run_at to the newest tick
-- enqueued (if any was).
UPDATE job_schedules AS known
SET next_run_at = given.next_run_at,
    last_run_at = coalesce(given.last_run_at, known.last_run_at)
FROM unnest(%(names)s::text[], %(next_run_ats)s::timestamptz[],
            %(last_run_ats)s::timestamptz[]) AS given (name, next_run_at, last_run_at)
WHERE known.name = given.name;

-- name: schedule_next_run
-- When the earliest of %(names)s is next due (NULL: one is not yet looked at, or none
-- exists), how many of them exist, and the clock the scheduler goes by.
SELECT min(next_run_at), count(*), bool_or(next_run_at IS NULL), coalesce(%(now)s, now())
FROM job_schedules
WHERE name = ANY(%(names)s::text[]);

-- name: schedule_list
-- Every schedule (or those of %(queue)s), by name, with the clock to read them by.
SELECT name, type, queue, cron, every_seconds, time_zone, payload, priority, max_attempts,
       catch_up, next_run_at, last_run_at, updated_at, now()
FROM job_schedules
WHERE %(queue)s::text IS NULL OR queue = %(queue)s
ORDER BY name;

-- name: schedule_delete
-- Forgets a schedule; returns its name if it existed. Jobs it enqueued stay.
DELETE FROM job_schedules WHERE name = %(name)s RETURNING name;

-- name: job_follow_ups_record
-- Records on a job that was just completed the follow-up jobs its handler enqueued, in the
-- same transaction (the Job page finds them from it).
UPDATE jobs SET follow_ups = %(follow_ups)s::uuid[] WHERE id = %(id)s;

-- name: job_count_matching
-- How many of the jobs a filter names there are, counting no further than %(limit)s: what
-- an action says it will touch before it is confirmed, never a count of the whole table.
-- In the order of the job list (newest first), so it reads the same index the list does.
SELECT count(*)
FROM (SELECT 1
      FROM jobs_matching(%(ids)s, %(statuses)s, %(types)s, %(queue)s, %(created_after)s,
                         %(created_before)s, %(error_contains)s, %(payload_contains)s::jsonb)
      ORDER BY id DESC
      LIMIT %(limit)s) AS capped;

-- name: queue_overview
-- Every queue known (it has had jobs, been paused, or has workers up): its jobs by status and
-- the jobs ever enqueued and finished, from the statistics' deltas (job_counts), never by
-- counting jobs; when its oldest ready job became due (jobs_oldest_ready, a skip scan of the
-- ready index); whether it is paused; its live workers (seen within %(stale_after)s
-- seconds) and their slots.
WITH counts AS (
    SELECT queue,
           sum(pending)::bigint AS pending, sum(running)::bigint AS running,
           sum(failed)::bigint AS failed, sum(done)::bigint AS done,
           sum(cancelled)::bigint AS cancelled, sum(enqueued)::bigint AS enqueued,
           sum(finished)::bigint AS finished
    FROM job_counts
    GROUP BY queue
), live AS (
    SELECT queue, count(*) AS workers, sum(concurrency)::bigint AS slots
    FROM job_workers
    WHERE seen_at >= coalesce(%(now)s, now()) - make_interval(secs => %(stale_after)s)
    GROUP BY queue
), names AS (
    SELECT queue FROM counts
    UNION SELECT name FROM job_queues
    UNION SELECT queue FROM live
)
SELECT names.queue,
       coalesce(counts.pending, 0), coalesce(counts.running, 0), coalesce(counts.failed, 0),
       coalesce(counts.done, 0), coalesce(counts.cancelled, 0),
       coalesce(counts.enqueued, 0), coalesce(counts.finished, 0),
       jobs_oldest_ready(names.queue, coalesce(%(now)s, now())),
       job_queues.paused_at,
       coalesce(live.workers, 0), coalesce(live.slots, 0),
       coalesce(%(now)s, now())
FROM names
LEFT JOIN counts USING (queue)
LEFT JOIN live USING (queue)
LEFT JOIN job_queues ON job_queues.name = names.queue
WHERE %(queue)s::text IS NULL OR names.queue = %(queue)s
ORDER BY names.queue;

-- name: worker_announce
-- A running worker says it is up (when it starts, then every few heartbeats), and forgets
-- the rows of workers not seen for %(forget_after)s seconds (dead ones), skipping any row
-- another worker is forgetting at the same moment.
WITH forgotten AS (
    DELETE FROM job_workers
    WHERE worker_id IN (
        SELECT worker_id FROM job_workers
        WHERE seen_at < coalesce(%(now)s, now()) - make_interval(secs => %(forget_after)s)
          AND worker_id <> %(worker_id)s
        FOR UPDATE SKIP LOCKED
    )
)
INSERT INTO job_workers (worker_id, queue, concurrency, started_at, seen_at)
VALUES (%(worker_id)s, %(queue)s, %(concurrency)s, %(started_at)s, coalesce(%(now)s, now()))
ON CONFLICT (worker_id) DO UPDATE
SET queue = excluded.queue, concurrency = excluded.concurrency,
    started_at = excluded.started_at, seen_at = excluded.seen_at;

-- name: worker_forget
-- A worker that stops says so.
DELETE FROM job_workers WHERE worker_id = %(worker_id)s;

-- name: worker_list
-- The live workers (seen within %(stale_after)s seconds), of one queue or all, each with how
-- many jobs it is running: running rows only, read through their partial index, as many as
-- the workers' slots at most.
SELECT job_workers.worker_id, job_workers.queue, job_workers.concurrency,
       job_workers.started_at, job_workers.seen_at, coalesce(busy.running, 0)
FROM job_workers
LEFT JOIN (
    SELECT locked_by, count(*) AS running
    FROM jobs
    WHERE status = 'running' AND locked_by IS NOT NULL
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    GROUP BY locked_by
) AS busy ON busy.locked_by = job_workers.worker_id
WHERE job_workers.seen_at >= coalesce(%(now)s, now()) - make_interval(secs => %(stale_after)s)
  AND (%(queue)s::text IS NULL OR job_workers.queue = %(queue)s)
ORDER BY job_workers.queue, job_workers.worker_id;

-- name: audit_record
-- One admin action: who (and in which role) did what, to which queue or jobs (the filter
-- that named them), and how many jobs it changed (NULL: not known yet).
INSERT INTO job_audit (at, actor, role, action, queue, filter, jobs, detail)
VALUES (coalesce(%(now)s, now()), %(actor)s, %(role)s, %(action)s, %(queue)s,
        %(filter)s::jsonb, %(jobs)s, %(detail)s)
RETURNING id, at, actor, role, action, queue, filter, jobs, detail;

-- name: audit_finish
-- An action recorded before it started has ended: how many jobs it changed, and how.
UPDATE job_audit SET jobs = %(jobs)s, detail = %(detail)s
WHERE id = %(id)s
RETURNING id, at, actor, role, action, queue, filter, jobs, detail;

-- name: audit_list
-- The admin actions, newest first, a page at a time (those before id %(before)s).
SELECT id, at, actor, role, action, queue, filter, jobs, detail
FROM job_audit
WHERE %(before)s::bigint IS NULL OR id < %(before)s::bigint
ORDER BY id DESC
LIMIT %(limit)s;

-- name: job_ready_listen
-- Workers listen here; the jobs_notify_ready trigger sends the queue name of new ready jobs.
LISTEN jobqueue_ready;

-- name: job_cancel_listen
-- Workers listen here too: job_cancel sends the id of each running job it asks to stop.
LISTEN jobqueue_cancel;

-- name: connection_ping
SELECT 1;

-- name: job_heartbeat
-- Refreshes the locks a live worker holds; returns the ids it still holds, and whether each
-- one's cancellation was requested (the way a worker hears of it when NOTIFY cannot reach it).
-- The jobs are read by id alone: status is compared with (SELECT 'running'), a value the
-- planner does not see, so it cannot combine the primary key with the running jobs' partial
-- index. It would, with statistics from when few jobs ran (a new table), and that index
-- holds an entry for every job that ran since the last vacuum: at a few thousand jobs a
-- second, hundreds of thousands of dead entries read by every heartbeat and completion, and
-- a bitmap scan never marks them dead for the next one (bench/soak.py found it).
UPDATE jobs
SET heartbeat_at = coalesce(%(now)s, now())
WHERE id = ANY(%(ids)b::uuid[]) AND status = (SELECT 'running') AND locked_by = %(worker_id)s
RETURNING id, cancel_requested_at IS NOT NULL;

-- name: job_rescue_stale
-- Running jobs whose last sign of life (heartbeat, else lock time) is older than the
-- threshold belong to a dead worker: back to pending at once while attempts remain, else
-- failed. The attempt the dead worker spent stays counted. A row a live worker is writing
-- right now (a heartbeat) is skipped, not waited for; any number of rescuers may run at once.
-- A job whose cancellation was requested ends cancelled instead.
-- Returns what was rescued, from whom, and its last sign of life.
WITH stale AS (
    SELECT id, locked_by, coalesce(heartbeat_at, locked_at, updated_at) AS last_seen
    FROM jobs
    WHERE status = 'running'
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
      AND coalesce(heartbeat_at, locked_at, updated_at)
          < coalesce(%(now)s, now()) - make_interval(secs => %(threshold)s)
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET status = CASE WHEN jobs.cancel_requested_at IS NOT NULL THEN 'cancelled'
                  WHEN jobs.attempts < jobs.max_attempts THEN 'pending' ELSE 'failed' END,
    -- Its place in line is kept: it was due already, and runs again before newer work.
    run_at = least(jobs.run_at, coalesce(%(now)s, now())),
    error = format('stale lock: worker %%s stopped responding (no heartbeat since %%s)',
                   coalesce(stale.locked_by, 'unknown'), stale.last_seen),
    locked_at = NULL,
    locked_by = NULL,
    heartbeat_at = NULL,
    updated_at = coalesce(%(now)s, now())
FROM stale
WHERE jobs.id = stale.id
RETURNING jobs.id, jobs.type, jobs.queue, jobs.status, jobs.attempts, stale.locked_by,
          stale.last_seen;

-- name: queue_depth_measure
-- What the operator scales by, per queue and type, in one statement: pending jobs split
-- into ready now, delayed, and delayed but due within %(due_within)s seconds, the age of the
-- oldest ready job, and running jobs (both read through their partial indexes, so finished
-- rows cost nothing); failed, done and cancelled from the statistics' deltas.
WITH waiting AS (
    SELECT queue, type,
           count(*) FILTER (WHERE run_at <= coalesce(%(now)s, now())) AS ready,
           count(*) FILTER (WHERE run_at > coalesce(%(now)s, now())) AS delayed,
           count(*) FILTER (WHERE run_at > coalesce(%(now)s, now())
                              AND run_at <= coalesce(%(now)s, now())
                                            + make_interval(secs => %(due_within)s)) AS due_soon,
           min(run_at) FILTER (WHERE run_at <= coalesce(%(now)s, now())) AS oldest_ready
    FROM jobs
    WHERE status = 'pending' AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    GROUP BY queue, type
), busy AS (
    SELECT queue, type, count(*) AS running
    FROM jobs
    WHERE status = 'running' AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    GROUP BY queue, type
), finished AS (
    SELECT queue, type, sum(failed) AS failed, sum(done) AS done, sum(cancelled) AS cancelled
    FROM job_counts
    WHERE %(queue)s::text IS NULL OR queue = %(queue)s
    GROUP BY queue, type
)
SELECT queue, type,
       coalesce(ready, 0), coalesce(delayed, 0), coalesce(due_soon, 0),
       coalesce(running, 0), coalesce(failed, 0)::bigint, coalesce(done, 0)::bigint,
       extract(epoch FROM coalesce(%(now)s, now()) - oldest_ready)::double precision,
       coalesce(cancelled, 0)::bigint
FROM waiting
FULL JOIN busy USING (queue, type)
FULL JOIN finished USING (queue, type)
ORDER BY queue, type;

-- name: job_prune_finished
-- Retention: one bounded batch of finished jobs (of %(statuses)s) older than %(older_than)s
-- seconds, oldest first. Rows another pruner holds are skipped, so any number may run at
-- once. The IN list stays literal so that the partial index on finished jobs applies.
WITH doomed AS (
    SELECT id
    FROM jobs
    WHERE status IN ('done', 'failed', 'cancelled')
      AND status = ANY(%(statuses)s::text[])
      AND updated_at < coalesce(%(now)s, now()) - make_interval(secs => %(older_than)s)
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    ORDER BY updated_at
    LIMIT %(batch_size)s
    FOR UPDATE SKIP LOCKED
)
-- An array of ids, not a join: a join may be planned as a hash over the whole table.
DELETE FROM jobs
WHERE id = ANY (ARRAY(SELECT id FROM doomed));

-- name: job_running_by_worker
-- How many jobs each worker is running, in one queue (or all): the operator ranks worker
-- pods by it, so that scaling down removes idle ones first.
SELECT locked_by, count(*)
FROM jobs
WHERE status = 'running' AND locked_by IS NOT NULL
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
GROUP BY locked_by;

-- name: job_counts_sum
-- Current counts per queue and type, from the appended deltas (see migration 0002).
SELECT queue, type,
       sum(pending)::bigint, sum(running)::bigint, sum(failed)::bigint, sum(done)::bigint,
       sum(cancelled)::bigint, count(*) AS delta_rows
FROM job_counts
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
GROUP BY queue, type;

-- name: job_counts_compact
-- Folds the appended deltas into one row per (queue, type). Concurrent writers keep
-- appending; rows they add after this statement's snapshot are left for the next compaction.
WITH folded AS (
    DELETE FROM job_counts RETURNING *
)
INSERT INTO job_counts (queue, type, pending, running, failed, done, cancelled, enqueued,
                        finished)
SELECT queue, type, sum(pending), sum(running), sum(failed), sum(done), sum(cancelled),
       sum(enqueued), sum(finished)
FROM folded
GROUP BY queue, type
HAVING (sum(pending), sum(running), sum(failed), sum(done), sum(cancelled), sum(enqueued),
        sum(finished))
       <> (0, 0, 0, 0, 0, 0, 0);

-- name: schema_vacuum_stats
-- Vacuum health of the queue's tables that churn (%(tables)s, found on the search path as
-- every other query finds them; a table not there is left out): live and dead row versions
-- from the statistics, the size of the table (heap, TOAST, free space and visibility maps)
-- and of its indexes, the seconds since its last vacuum of either kind (NULL: none since the
-- statistics were reset), and how many vacuums, manual and automatic, it had. Any role may
-- read all of it.
SELECT tables.name, coalesce(stats.n_live_tup, 0), coalesce(stats.n_dead_tup, 0),
       pg_table_size(pg_class.oid), pg_indexes_size(pg_class.oid),
       extract(epoch FROM coalesce(%(now)s, now())
                          - greatest(stats.last_vacuum, stats.last_autovacuum))::double precision,
       coalesce(stats.vacuum_count, 0), coalesce(stats.autovacuum_count, 0)
FROM unnest(%(tables)s::text[]) AS tables (name)
JOIN pg_class ON pg_class.oid = to_regclass(tables.name)
LEFT JOIN pg_stat_user_tables AS stats ON stats.relid = pg_class.oid
ORDER BY tables.name;

-- name: database_xmin_horizon
-- What holds back vacuum in this database: no vacuum removes a row version deleted after the
-- oldest xmin some holder still needs (the horizon). Returns how many transactions old the
-- horizon is, the seconds since the oldest holder's transaction began (0: none seen), and
-- whether this role may see when every session's transaction began.
-- The holders, as vacuum counts them: the snapshot (backend_xmin) of a session of this
-- database, or of none (a walsender relaying a standby's feedback); the transaction id
-- (backend_xid) of a session of any database, which every snapshot taken here must respect;
-- a replication slot's xmin (its catalog_xmin holds back the catalogs only); a prepared
-- transaction. A running lazy vacuum holds back nothing (pg_stat_progress_vacuum lists it).
-- pg_current_snapshot's xmin, the oldest transaction id still running, needs no privilege;
-- nor do pg_stat_activity's backend_xid and backend_xmin, but it shows xact_start of other
-- roles' sessions only to members of pg_read_all_stats (pg_monitor is one): without it, the
-- seconds miss their transactions.
WITH sessions AS (
    SELECT greatest(age(backend_xid),
                    CASE WHEN datname = current_database() OR datname IS NULL
                         THEN age(backend_xmin) END) AS xids,
           xact_start
    FROM pg_stat_activity AS activity
    WHERE pid <> pg_backend_pid()
      AND NOT EXISTS (SELECT FROM pg_stat_progress_vacuum AS running
                      WHERE running.pid = activity.pid)
), holders (xids, started) AS (
    SELECT xids, xact_start FROM sessions WHERE xids IS NOT NULL
    UNION ALL
    SELECT age(xmin), NULL FROM pg_replication_slots WHERE xmin IS NOT NULL
    UNION ALL
    SELECT age(transaction), prepared FROM pg_prepared_xacts
)
SELECT greatest(age(pg_snapshot_xmin(pg_current_snapshot())::xid), max(xids)),
       greatest(extract(epoch FROM coalesce(%(now)s, now()) - min(started)), 0)::double precision,
       pg_has_role('pg_read_all_stats', 'USAGE')
FROM holders;

-- name: advisory_lock_try
-- For chores one process at a time should do (compacting counts, rescuing stale jobs): the
-- others skip their turn rather than queue up. Held until the transaction ends.
SELECT pg_try_advisory_xact_lock(%(key)s) AS locked;

-- name: migration_lock
-- Every jobqueue process migrating this database waits here; the lock ends with the
-- transaction that applies the migrations.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: migration_table_create
-- One version history per component: the core ('jobqueue') and each plugin.
CREATE TABLE IF NOT EXISTS jobqueue_migrations (
    component text NOT NULL DEFAULT 'jobqueue',
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone NOT NULL DEFAULT now(),
    PRIMARY KEY (component, version)
);

-- name: migration_table_upgrade
-- A history written before components existed: every row was the core's, and its version 3
-- was the books tables, which are now the books plugin's version 1.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = to_regclass('jobqueue_migrations') AND attname = 'component'
    ) THEN
        ALTER TABLE jobqueue_migrations
            ADD COLUMN component text NOT NULL DEFAULT 'jobqueue',
            DROP CONSTRAINT jobqueue_migrations_pkey,
            ADD PRIMARY KEY (component, version);
        UPDATE jobqueue_migrations SET component = 'books', version = 1
        WHERE version = 3 AND name = 'books';
    END IF;
END $$;

-- name: migration_table_exists
SELECT to_regclass('jobqueue_migrations') IS NOT NULL;

-- name: migration_list
SELECT component, version, name, checksum
FROM jobqueue_migrations
ORDER BY component = 'jobqueue' DESC, component, version;

-- name: migration_record
INSERT INTO jobqueue_migrations (component, version, name, checksum)
VALUES (%(component)s, %(version)s, %(name)s, %(checksum)s);

-- name: schema_search_path_set
-- For the rest of the transaction, so that catalog functions print names unqualified.
SELECT set_config('search_path', quote_ident(%(schema)s), true);

-- name: schema_of_jobs
SELECT n.nspname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass('jobs');

-- name: schema_temporary_name
-- This session's temporary schema, where db verify replays the migrations (and rolls back).
SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema();

-- name: schema_tables_missing
SELECT name FROM unnest(%(names)s::text[]) AS name WHERE to_regclass(name) IS NULL;

-- name: schema_describe
-- Everything the migrations define in one schema, independent of the schema's name: owner
-- (table or function) and one line of description per column, constraint, index, trigger
-- and function body.
SELECT c.relname,
       'column ' || c.relname || '.' || a.attname || ' '
       || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p') AND c.relname <> 'jobqueue_migrations'
UNION ALL
SELECT c.relname,
       'constraint ' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname <> 'jobqueue_migrations'
UNION ALL
SELECT c.relname, 'index ' || pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname <> 'jobqueue_migrations'
UNION ALL
SELECT c.relname, 'trigger ' || pg_get_triggerdef(t.oid)
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND NOT t.tgisinternal
UNION ALL
SELECT p.proname,
       'function ' || p.proname || '(' || pg_get_function_arguments(p.oid) || ') '
       || pg_get_function_result(p.oid) || ' ' || md5(p.prosrc)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s;

-- name: connection_use_utc
-- Every connection of the queue reads and writes times in UTC (see db._set_up).
SET TimeZone TO 'UTC';
