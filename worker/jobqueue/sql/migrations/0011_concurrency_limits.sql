-- Flow control (issue 25), first part: how many jobs may run at once, per queue, per job
-- type and per concurrency key (a tenant, an API account), across every worker; and claims
-- that take turns between keys, so one key's backlog does not starve the others.

-- The key a job runs under: its limit (job_limits) and its turn.
ALTER TABLE jobs ADD COLUMN concurrency_key text;
-- Not validated against the rows already there (all NULL): no scan of a big table.
ALTER TABLE jobs ADD CONSTRAINT jobs_concurrency_key_check
    CHECK (concurrency_key IS NULL OR length(concurrency_key) BETWEEN 1 AND 200) NOT VALID;

-- A limited claim's reads: the next key with pending jobs after a given one (a skip scan),
-- a key's own line in claim order, and how many of a key's jobs run. Jobs without a key
-- are in neither, so queues that use no keys pay nothing for them.
CREATE INDEX jobs_keyed_idx ON jobs (queue, concurrency_key, priority DESC, run_at, id)
    WHERE status = 'pending' AND concurrency_key IS NOT NULL;
CREATE INDEX jobs_running_keyed_idx ON jobs (queue, concurrency_key)
    WHERE status = 'running' AND concurrency_key IS NOT NULL;

-- The limits: at most `concurrency` jobs running at once, of the whole queue (scope
-- 'queue', name ''), of one job type in it ('type', the type's name), or of each
-- concurrency key in it ('key', the key; name '' sets every key's default). NULL: no limit
-- (a 'key' row with NULL still makes the queue take turns between keys).
CREATE TABLE job_limits (
    queue text NOT NULL CHECK (length(queue) BETWEEN 1 AND 200),
    scope text NOT NULL CHECK (scope IN ('queue', 'type', 'key')),
    name text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    concurrency integer CHECK (concurrency > 0),
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, scope, name),
    CHECK (scope <> 'queue' OR name = ''),
    CHECK (scope <> 'type' OR name <> '')
);

-- Whether a queue has limits, where every claim already looks (the pause, migration
-- 0006): a queue without any keeps the plain claim, at no cost. Kept by a trigger, so a
-- limit written by hand counts too.
ALTER TABLE job_queues ADD COLUMN limited boolean NOT NULL DEFAULT false;

CREATE FUNCTION job_limits_mark_queue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed text[] := '{}';
BEGIN
    IF TG_OP <> 'DELETE' THEN
        changed := changed || NEW.queue;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        changed := changed || OLD.queue;
    END IF;
    INSERT INTO job_queues (name, limited)
    SELECT changed_queues.queue,
           EXISTS (SELECT FROM job_limits WHERE job_limits.queue = changed_queues.queue)
    FROM (SELECT DISTINCT unnest(changed)) AS changed_queues (queue)
    ON CONFLICT (name) DO UPDATE SET limited = excluded.limited;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_limits_mark_queue AFTER INSERT OR UPDATE OR DELETE ON job_limits
    FOR EACH ROW EXECUTE FUNCTION job_limits_mark_queue();

-- A claim in a limited queue: job_claim's work, within the limits. Exact across any number
-- of workers: every count is taken by a statement that starts after this transaction holds
-- the lock of what it counts (each statement of a plpgsql function sees what committed
-- before it started), and a lock is held until the claim commits, so what two claimers
-- count never misses the other's claims. Queue and type limits are taken in one order and
-- waited for (a claim is short); a key another claimer holds is skipped, never waited for:
-- its jobs are that claimer's to take. A job whose worker died counts until it is rescued.
--
-- Keys take turns: the claim walks the keys with pending jobs from the one after
-- `after_key` (the last key the worker served), around to it, and takes each key's jobs in
-- claim order up to what its limit leaves; then all of them, and the jobs without a key (one
-- more line), by priority, then turn (each line's first job, then each line's second...),
-- then run_at. So a key with 100,000 jobs waiting gets one turn as a key with ten does.
CREATE FUNCTION jobs_claim_limited(
    queue_name text,
    worker text,
    wanted integer,
    job_types text[],
    at timestamp with time zone,
    after_key text
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    lock_base constant text := 'jobqueue.limit:' || queue_name;
    queue_limit integer;
    queue_left integer;
    key_default integer;
    key_name text;
    lapped boolean := false;
    walked boolean := false;
    batch text[];
    keys text[] := '{}';
    key_caps integer[] := '{}';
    more_keys text[];
    more_caps integer[];
    more_room integer;
    visited integer := 0;
    room integer := 0;
    type_names text[];
    type_lefts integer[];
BEGIN
    IF EXISTS (SELECT FROM job_queues WHERE name = queue_name AND paused_at IS NOT NULL) THEN
        RETURN;
    END IF;
    SELECT concurrency INTO queue_limit
    FROM job_limits WHERE queue = queue_name AND scope = 'queue' AND concurrency IS NOT NULL;
    IF queue_limit IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(lock_base, 0));
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(lock_base || ':type:' || name, 0))
    FROM (SELECT name FROM job_limits
          WHERE queue = queue_name AND scope = 'type' AND concurrency IS NOT NULL
          ORDER BY name) AS limited_types;
    -- Counted after the locks (a statement of its own, so a snapshot of its own).
    IF queue_limit IS NOT NULL THEN
        SELECT queue_limit - count(*) INTO queue_left
        FROM jobs WHERE status = 'running' AND queue = queue_name;
        IF queue_left <= 0 THEN
            RETURN;
        END IF;
    END IF;
    SELECT array_agg(limits.name), array_agg(limits.concurrency - coalesce(busy.running, 0))
    INTO type_names, type_lefts
    FROM job_limits AS limits
    LEFT JOIN (SELECT type, count(*)::integer AS running FROM jobs
               WHERE status = 'running' AND queue = queue_name GROUP BY type) AS busy
        ON busy.type = limits.name
    WHERE limits.queue = queue_name AND limits.scope = 'type' AND limits.concurrency IS NOT NULL;
    SELECT concurrency INTO key_default
    FROM job_limits WHERE queue = queue_name AND scope = 'key' AND name = '';
    -- The keys, from the one after after_key around to it: a key another claimer holds is
    -- skipped, one at its limit gives no room. Taken a few at a time, their running jobs
    -- counted together, until there is room for what is wanted or every key was seen.
    key_name := after_key;
    WHILE room < wanted AND NOT walked LOOP
        batch := '{}';
        WHILE cardinality(batch) < wanted - room LOOP
            SELECT concurrency_key INTO key_name FROM jobs
            WHERE status = 'pending' AND queue = queue_name AND concurrency_key IS NOT NULL
              AND concurrency_key > coalesce(key_name, '')
            ORDER BY concurrency_key LIMIT 1;
            IF NOT FOUND THEN
                walked := lapped OR after_key IS NULL;
                EXIT WHEN walked;
                lapped := true;  -- from the first key on, up to after_key
                CONTINUE;
            END IF;
            visited := visited + 1;
            walked := (lapped AND key_name > after_key) OR visited > 10 * wanted + 100;
            EXIT WHEN walked;
            IF pg_try_advisory_xact_lock(hashtextextended(lock_base || ':key:' || key_name, 0))
            THEN
                batch := batch || key_name;
            END IF;
        END LOOP;
        SELECT coalesce(array_agg(key), '{}'), coalesce(array_agg(cap), '{}'),
               coalesce(sum(cap), 0)
        INTO more_keys, more_caps, more_room
        FROM (
            SELECT batch_keys.key,
                   least(coalesce(limits.concurrency, key_default, wanted)
                         - coalesce(busy.running, 0), wanted) AS cap
            FROM unnest(batch) WITH ORDINALITY AS batch_keys (key, place)
            LEFT JOIN job_limits AS limits
                ON limits.queue = queue_name AND limits.scope = 'key'
                   AND limits.name = batch_keys.key
            LEFT JOIN (
                SELECT concurrency_key, count(*)::integer AS running FROM jobs
                WHERE status = 'running' AND queue = queue_name
                  AND concurrency_key = ANY(batch)
                GROUP BY concurrency_key
            ) AS busy ON busy.concurrency_key = batch_keys.key
            ORDER BY batch_keys.place
        ) AS counted
        WHERE cap > 0;
        keys := keys || more_keys;
        key_caps := key_caps || more_caps;
        room := room + more_room;
    END LOOP;
    RETURN QUERY
    WITH lines AS (
        SELECT line.key, line.cap FROM unnest(keys, key_caps) AS line (key, cap)
    ), candidates AS (
        SELECT lines.key, job.id, job.type, job.priority, job.run_at
        FROM lines, LATERAL (
            SELECT id, type, priority, run_at FROM jobs
            WHERE status = 'pending' AND queue = queue_name AND concurrency_key = lines.key
              AND run_at <= at AND (job_types IS NULL OR type = ANY(job_types))
            ORDER BY priority DESC, run_at, id
            LIMIT lines.cap
        ) AS job
        UNION ALL
        (SELECT NULL, id, type, priority, run_at FROM jobs
         WHERE status = 'pending' AND queue = queue_name AND concurrency_key IS NULL
           AND run_at <= at AND (job_types IS NULL OR type = ANY(job_types))
         ORDER BY priority DESC, run_at, id
         LIMIT wanted)
    ), turns AS (
        SELECT candidates.*,
               row_number() OVER (PARTITION BY key ORDER BY priority DESC, run_at, id) AS turn
        FROM candidates
    ), typed AS (
        SELECT turns.*,
               row_number() OVER (PARTITION BY type ORDER BY priority DESC, turn, run_at, id)
                   AS type_turn,
               type_lefts[array_position(type_names, type)] AS type_left
        FROM turns
    ), chosen AS (
        SELECT id FROM typed
        WHERE type_left IS NULL OR type_turn <= type_left
        ORDER BY priority DESC, turn, run_at, id
        LIMIT least(wanted, queue_left)
    ), claimable AS (
        -- A job without a key another claimer chose too: whoever locks it first takes it.
        SELECT jobs.id FROM jobs
        WHERE jobs.id IN (SELECT id FROM chosen) AND jobs.status = 'pending'
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs
    SET status = 'running',
        attempts = jobs.attempts + 1,
        locked_at = at,
        locked_by = worker,
        heartbeat_at = at,
        updated_at = at
    FROM claimable
    WHERE jobs.id = claimable.id
    RETURNING jobs.*;
END
$$;
