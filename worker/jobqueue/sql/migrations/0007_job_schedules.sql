-- Periodic schedules (issue 21). A row per schedule that a worker (from code) or the
-- operator (from a JobQueue's spec) runs: its definition, for listing, and its state,
-- shared by every process that runs it. next_run_at is the next tick not yet enqueued
-- (NULL until a scheduler has first looked at it); a scheduler locks the row while it
-- enqueues the ticks due and moves next_run_at on, so however many run the schedule, each
-- tick is enqueued by one of them. Each tick's job also holds the unique key
-- 'schedule:<name>@<tick>' for good (unique_period_start = the tick), so a tick can never
-- be enqueued twice, whatever becomes of this row.
CREATE TABLE job_schedules (
    name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 150),
    type text NOT NULL,
    queue text NOT NULL,
    cron text,
    every_seconds double precision CHECK (every_seconds >= 1),
    time_zone text NOT NULL DEFAULT 'UTC',
    payload jsonb,
    priority integer NOT NULL DEFAULT 0,
    max_attempts integer,
    catch_up integer NOT NULL DEFAULT 0 CHECK (catch_up >= 0),
    next_run_at timestamp with time zone,
    last_run_at timestamp with time zone,
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (every_seconds IS NULL))
);
