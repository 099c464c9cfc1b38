-- Unique jobs (issue 21): a job may carry a unique key, and the database, not the client,
-- makes sure that only one job holds it, however many processes enqueue it at once.
--
-- Two scopes. By default a key is held while its job is pending or running: once the job
-- has finished, the same key may be enqueued again. With a period, the key is held by the
-- job enqueued in that period (the clock cut into fixed windows from the Unix epoch,
-- unique_period_start the start of the window), whatever became of it.
ALTER TABLE jobs
    ADD COLUMN unique_key text,
    ADD COLUMN unique_period_start timestamp with time zone,
    ADD CONSTRAINT jobs_unique_key_check CHECK (length(unique_key) BETWEEN 1 AND 200);

-- One index for both scopes: a key held while active has no period (NULL, taken as
-- -infinity here so that two such holders collide), and leaves the index when its job
-- finishes; a key held for a period stays. Rows without a key, nearly all of them, are not in
-- it. One index, not one per scope: every index of the table costs each INSERT statement a
-- few microseconds to open, whether or not the row goes into it (bench/schema_cost.py).
CREATE UNIQUE INDEX jobs_unique_idx
    ON jobs (unique_key, coalesce(unique_period_start, '-infinity'::timestamp with time zone))
    WHERE unique_key IS NOT NULL
      AND (unique_period_start IS NOT NULL OR status IN ('pending', 'running'));
