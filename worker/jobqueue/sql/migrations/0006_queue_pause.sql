-- Pausing a queue (issue 21). A row per queue that has ever been paused; paused_at set while
-- it is paused. Workers read it in the claim statement itself, so a pause takes effect at
-- the next claim of every worker, and a resume wakes them through jobqueue_ready.
CREATE TABLE job_queues (
    name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    paused_at timestamp with time zone,
    updated_at timestamp with time zone NOT NULL DEFAULT now()
);
