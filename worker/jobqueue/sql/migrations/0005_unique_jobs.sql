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

-- Rows without a key, nearly all of them, are in neither index, so enqueueing them costs
-- only the evaluation of the two predicates.
CREATE UNIQUE INDEX jobs_unique_active_idx ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND unique_period_start IS NULL
      AND status IN ('pending', 'running');
CREATE UNIQUE INDEX jobs_unique_period_idx ON jobs (unique_key, unique_period_start)
    WHERE unique_period_start IS NOT NULL;
