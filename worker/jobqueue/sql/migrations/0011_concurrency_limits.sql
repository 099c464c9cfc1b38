-- Flow control (issue 25), first part: how many jobs may run at once, and start in a time,
-- per queue, per job type and per concurrency key (a tenant, an API account), across every
-- worker; and claims that take turns between keys, so one key's backlog does not starve the
-- others.

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

-- The limits: at most `concurrency` jobs running at once, and at most `rate` starts per
-- `per` seconds with bursts of up to `burst` (a token bucket: `burst` tokens, refilled at
-- rate / per a second, one taken by each start), of the whole queue (scope 'queue', name
-- ''), of one job type in it ('type', the type's name), or of each concurrency key in it
-- ('key', the key; name '' sets every key's default, and a key's own row leaves to it what
-- it leaves NULL). NULL: no such limit (a 'key' row with neither still makes the queue take
-- turns between keys).
CREATE TABLE job_limits (
    queue text NOT NULL CHECK (length(queue) BETWEEN 1 AND 200),
    scope text NOT NULL CHECK (scope IN ('queue', 'type', 'key')),
    name text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    concurrency integer CHECK (concurrency > 0),
    rate integer CHECK (rate > 0),
    per double precision NOT NULL DEFAULT 1 CHECK (per > 0),
    burst integer CHECK (burst > 0),
    updated_at timestamp with time zone NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, scope, name),
    CHECK (scope <> 'queue' OR name = ''),
    CHECK (scope <> 'type' OR name <> '')
);

-- The rate limits' buckets: the tokens a scope (a key's own, for the per-key default) had
-- at its last start. A scope with none yet has a full bucket.
CREATE TABLE job_limit_tokens (
    queue text NOT NULL,
    scope text NOT NULL,
    name text NOT NULL,
    tokens double precision NOT NULL,
    since timestamp with time zone NOT NULL,
    PRIMARY KEY (queue, scope, name)
);

-- The tokens of a bucket at `at`, last left at `tokens` at `since` (NULL: none taken yet).
CREATE FUNCTION jobs_tokens(
    tokens double precision, since timestamp with time zone, rate integer,
    per double precision, burst integer, at timestamp with time zone
) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN tokens IS NULL THEN coalesce(burst, rate)::double precision
                ELSE least(coalesce(burst, rate),
                           tokens + rate / per
                                    * greatest(extract(epoch FROM at - since), 0))
           END
$$;

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
) RETURNS SETOF jobs LANGUAGE plpgsql
-- Its reads in index order whatever the statistics say: on a table not yet analyzed the
-- planner took the keys' skip scan for a read of every pending job and a sort (200 ms a
-- claim at 15,000 jobs). The orderings it must sort (the turns) are sorted all the same.
SET enable_sort = off
AS $$
DECLARE
    lock_base constant text := 'jobqueue.limit:' || queue_name;
    queue_limit integer;
    queue_rate integer;
    queue_per double precision;
    queue_burst integer;
    queue_left integer;
    key_default integer;
    key_rate integer;
    key_per double precision;
    key_burst integer;
    got jobs[] := '{}';
    key_name text;
    lapped boolean := false;
    walked boolean := false;
    batch text[];
    next_keys text[];
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
    SELECT concurrency, rate, per, burst INTO queue_limit, queue_rate, queue_per, queue_burst
    FROM job_limits
    WHERE queue = queue_name AND scope = 'queue'
      AND (concurrency IS NOT NULL OR rate IS NOT NULL);
    IF FOUND THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(lock_base, 0));
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(lock_base || ':type:' || name, 0))
    FROM (SELECT name FROM job_limits
          WHERE queue = queue_name AND scope = 'type'
            AND (concurrency IS NOT NULL OR rate IS NOT NULL)
          ORDER BY name) AS limited_types;
    -- Counted after the locks (a statement of its own, so a snapshot of its own). What a
    -- limit leaves: the room under its concurrency and the whole tokens of its bucket, the
    -- smaller (least() passes over the one not set).
    IF queue_limit IS NOT NULL OR queue_rate IS NOT NULL THEN
        SELECT least(queue_limit - (SELECT count(*) FROM jobs
                                    WHERE status = 'running' AND queue = queue_name),
                     floor(jobs_tokens(bucket.tokens, bucket.since, queue_rate, queue_per,
                                       queue_burst, at)))::integer
        INTO queue_left
        FROM (SELECT) AS one
        LEFT JOIN job_limit_tokens AS bucket
            ON bucket.queue = queue_name AND bucket.scope = 'queue' AND bucket.name = '';
        IF queue_left <= 0 THEN
            RETURN;
        END IF;
    END IF;
    SELECT array_agg(limits.name),
           array_agg(least(limits.concurrency - (SELECT count(*) FROM jobs
                                                 WHERE status = 'running'
                                                   AND queue = queue_name
                                                   AND type = limits.name),
                           floor(jobs_tokens(bucket.tokens, bucket.since, limits.rate,
                                             limits.per, limits.burst, at)))::integer)
    INTO type_names, type_lefts
    FROM job_limits AS limits
    LEFT JOIN job_limit_tokens AS bucket
        ON bucket.queue = queue_name AND bucket.scope = 'type' AND bucket.name = limits.name
    WHERE limits.queue = queue_name AND limits.scope = 'type'
      AND (limits.concurrency IS NOT NULL OR limits.rate IS NOT NULL);
    SELECT concurrency, rate, per, burst INTO key_default, key_rate, key_per, key_burst
    FROM job_limits WHERE queue = queue_name AND scope = 'key' AND name = '';
    -- The keys, from the one after after_key around to it: a key another claimer holds is
    -- skipped, one at its limit gives no room. Taken a few at a time (as many as would fill
    -- the claim at the default limit), their running jobs counted together, until there is
    -- room for what is wanted or every key was seen.
    key_name := after_key;
    WHILE room < wanted AND NOT walked LOOP
        -- The next keys with pending jobs: a skip scan of jobs_keyed_idx, one probe a key.
        SELECT coalesce(array_agg(walk.key ORDER BY walk.n), '{}') INTO next_keys
        FROM (
            WITH RECURSIVE walk (key, n) AS (
                (SELECT concurrency_key, 1 FROM jobs
                 WHERE status = 'pending' AND queue = queue_name
                   AND concurrency_key IS NOT NULL AND concurrency_key > coalesce(key_name, '')
                 ORDER BY concurrency_key LIMIT 1)
                UNION ALL
                SELECT next.key, walk.n + 1
                FROM walk, LATERAL (
                    SELECT concurrency_key AS key FROM jobs
                    WHERE status = 'pending' AND queue = queue_name
                      AND concurrency_key IS NOT NULL AND concurrency_key > walk.key
                    ORDER BY concurrency_key LIMIT 1
                ) AS next
                WHERE walk.n < greatest(1, ceil((wanted - room) / coalesce(key_default, 1.0)))
            )
            SELECT walk.key, walk.n FROM walk
        ) AS walk
        WHERE NOT lapped OR walk.key <= after_key;
        visited := visited + cardinality(next_keys);
        IF cardinality(next_keys) = 0
           OR (lapped AND next_keys[cardinality(next_keys)] = after_key) OR visited > 10 * wanted + 100
        THEN
            walked := lapped OR after_key IS NULL OR visited > 10 * wanted + 100;
            IF NOT walked THEN
                lapped := true;  -- from the first key on, up to after_key
                key_name := NULL;
            END IF;
            CONTINUE WHEN cardinality(next_keys) = 0;
        ELSE
            key_name := next_keys[cardinality(next_keys)];
        END IF;
        SELECT coalesce(array_agg(walked_key ORDER BY place), '{}') INTO batch
        FROM unnest(next_keys) WITH ORDINALITY AS walked_keys (walked_key, place)
        WHERE pg_try_advisory_xact_lock(hashtextextended(lock_base || ':key:' || walked_key, 0));
        SELECT coalesce(array_agg(key), '{}'), coalesce(array_agg(cap), '{}'),
               coalesce(sum(cap), 0)
        INTO more_keys, more_caps, more_room
        FROM (
            SELECT batch_keys.key,
                   least(coalesce(limits.concurrency, key_default, wanted)
                         - coalesce(busy.running, 0),
                         floor(CASE WHEN limits.rate IS NOT NULL
                               THEN jobs_tokens(bucket.tokens, bucket.since, limits.rate,
                                                limits.per, limits.burst, at)
                               ELSE jobs_tokens(bucket.tokens, bucket.since, key_rate,
                                                key_per, key_burst, at)
                               END),
                         wanted)::integer AS cap
            FROM unnest(batch) WITH ORDINALITY AS batch_keys (key, place)
            LEFT JOIN job_limits AS limits
                ON limits.queue = queue_name AND limits.scope = 'key'
                   AND limits.name = batch_keys.key
            LEFT JOIN job_limit_tokens AS bucket
                ON bucket.queue = queue_name AND bucket.scope = 'key'
                   AND bucket.name = batch_keys.key
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
        -- No line gives more than its share of the claim: the first turns fill it.
        SELECT line.key, least(line.cap, ceil(wanted::numeric / greatest(cardinality(keys), 1)))::integer
                             AS cap
        FROM unnest(keys, key_caps) AS line (key, cap)
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
        -- The jobs without a key: one more line, looked for near the head of the queue's
        -- order only (jobs_ready_idx holds the keyed jobs too, and reading past all of
        -- them at every claim would cost as much as the backlog is long).
        SELECT NULL, head.id, head.type, head.priority, head.run_at
        FROM (
            SELECT id, type, priority, run_at, concurrency_key FROM jobs
            WHERE status = 'pending' AND queue = queue_name
              AND run_at <= at AND (job_types IS NULL OR type = ANY(job_types))
            ORDER BY priority DESC, run_at, id
            LIMIT 10 * wanted
        ) AS head
        WHERE head.concurrency_key IS NULL
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
        -- Read by id from an array (an index probe each, whatever the estimates of the
        -- lines above), then updated by the locked row's place, as job_claim does.
        -- (The status as an InitPlan: the pending jobs' indexes cannot answer it, so the
        -- ids are looked up in the primary key, whatever the statistics say.)
        SELECT jobs.ctid FROM jobs
        WHERE jobs.id = ANY (ARRAY(SELECT id FROM chosen))
          AND jobs.status = (SELECT 'pending')
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE jobs
        SET status = 'running',
            attempts = jobs.attempts + 1,
            locked_at = at,
            locked_by = worker,
            heartbeat_at = at,
            updated_at = at
        FROM claimable
        WHERE jobs.ctid = claimable.ctid
        RETURNING jobs.*
    )
    SELECT * FROM claimed;
    -- Each start takes a token from the buckets of its rate limits: the jobs this
    -- transaction has just claimed (its own row versions), read back.
    IF EXISTS (SELECT FROM job_limits WHERE queue = queue_name AND rate IS NOT NULL) THEN
        SELECT coalesce(array_agg(jobs), '{}') INTO got FROM jobs
        WHERE status = 'running' AND queue = queue_name AND locked_by = worker
          AND xmin = pg_current_xact_id()::xid;
    END IF;
    IF cardinality(got) > 0 THEN
        INSERT INTO job_limit_tokens (queue, scope, name, tokens, since)
        SELECT queue_name, started.scope, started.name,
               jobs_tokens(bucket.tokens, bucket.since, started.rate, started.per,
                           started.burst, at) - started.count,
               at
        FROM (
            SELECT 'queue' AS scope, '' AS name, queue_rate AS rate, queue_per AS per,
                   queue_burst AS burst, count(*) AS count
            FROM unnest(got)
            HAVING queue_rate IS NOT NULL
            UNION ALL
            SELECT 'type', started_job.type, limits.rate, limits.per, limits.burst, count(*)
            FROM unnest(got) AS started_job
            JOIN job_limits AS limits
                ON limits.queue = queue_name AND limits.scope = 'type'
                   AND limits.name = started_job.type AND limits.rate IS NOT NULL
            GROUP BY started_job.type, limits.rate, limits.per, limits.burst
            UNION ALL
            SELECT 'key', started_job.concurrency_key,
                   coalesce(own.rate, key_rate),
                   CASE WHEN own.rate IS NOT NULL THEN own.per ELSE key_per END,
                   CASE WHEN own.rate IS NOT NULL THEN own.burst ELSE key_burst END,
                   count(*)
            FROM unnest(got) AS started_job
            LEFT JOIN job_limits AS own
                ON own.queue = queue_name AND own.scope = 'key'
                   AND own.name = started_job.concurrency_key
            WHERE started_job.concurrency_key IS NOT NULL
              AND coalesce(own.rate, key_rate) IS NOT NULL
            GROUP BY 1, 2, 3, 4, 5
        ) AS started
        LEFT JOIN job_limit_tokens AS bucket
            ON bucket.queue = queue_name AND bucket.scope = started.scope
               AND bucket.name = started.name
        ON CONFLICT (queue, scope, name) DO UPDATE
        SET tokens = excluded.tokens, since = excluded.since;
    END IF;
END
$$;

-- How many of a queue's ready jobs its limits hold back now: what the operator leaves out
-- of the load it scales for (more workers would not run them). Per key, the ready jobs past
-- the room its limit leaves; then the ready jobs of limited types past theirs, and the room
-- the queue's own limit leaves. (A key's jobs of a limited type are counted against both:
-- an estimate on the side of fewer workers, never of a wrong job run.)
CREATE FUNCTION jobs_held_by_limits(queue_name text, at timestamp with time zone)
RETURNS bigint LANGUAGE sql STABLE AS $$
    WITH ready AS (
        SELECT concurrency_key, type, count(*) AS ready FROM jobs
        WHERE status = 'pending' AND queue = queue_name AND run_at <= at
        GROUP BY concurrency_key, type
    ), keys AS (
        SELECT ready.concurrency_key,
               least(sum(ready.ready),
                     greatest(coalesce(min(own.concurrency), min(every.concurrency),
                                       sum(ready.ready))
                              - coalesce(min(busy.running), 0), 0)) AS claimable
        FROM ready
        LEFT JOIN job_limits AS own
            ON own.queue = queue_name AND own.scope = 'key' AND own.name = ready.concurrency_key
        LEFT JOIN job_limits AS every
            ON every.queue = queue_name AND every.scope = 'key' AND every.name = ''
        LEFT JOIN (
            SELECT concurrency_key, count(*) AS running FROM jobs
            WHERE status = 'running' AND queue = queue_name AND concurrency_key IS NOT NULL
            GROUP BY concurrency_key
        ) AS busy ON busy.concurrency_key = ready.concurrency_key
        WHERE ready.concurrency_key IS NOT NULL
        GROUP BY ready.concurrency_key
    ), types AS (
        SELECT greatest(sum(ready.ready)
                        - greatest(min(limits.concurrency)
                                   - (SELECT count(*) FROM jobs
                                      WHERE status = 'running' AND queue = queue_name
                                        AND type = ready.type), 0), 0) AS excess
        FROM ready
        JOIN job_limits AS limits
            ON limits.queue = queue_name AND limits.scope = 'type' AND limits.name = ready.type
               AND limits.concurrency IS NOT NULL
        GROUP BY ready.type
    ), room AS (
        SELECT greatest(concurrency - (SELECT count(*) FROM jobs
                                       WHERE status = 'running' AND queue = queue_name), 0)
                   AS left_over
        FROM job_limits WHERE queue = queue_name AND scope = 'queue' AND concurrency IS NOT NULL
    ), total AS (
        SELECT coalesce(sum(ready), 0) AS ready,
               coalesce(sum(ready) FILTER (WHERE concurrency_key IS NULL), 0) AS unkeyed
        FROM ready
    )
    SELECT total.ready - least(
        greatest((SELECT coalesce(sum(claimable), 0) FROM keys) + total.unkeyed
                 - (SELECT coalesce(sum(excess), 0) FROM types), 0),
        coalesce((SELECT left_over FROM room), total.ready))
    FROM total
$$;

-- Migration 0010's function, waking the workers of a limited queue when room frees up.
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
    -- A statement that leaves fewer jobs running in a queue with limits frees room under
    -- them: its idle workers are woken to claim again (nothing else would wake a worker
    -- whose last claim found every key at its limit). Queues without limits read one small
    -- table here, once a statement.
    IF TG_OP = 'UPDATE' AND EXISTS (SELECT FROM job_queues WHERE limited) THEN
        FOR ready_queue IN
            SELECT changes.queue
            FROM (
                SELECT queue, 1 AS change FROM new_rows WHERE status = 'running'
                UNION ALL
                SELECT queue, -1 FROM old_rows WHERE status = 'running'
            ) AS changes
            JOIN job_queues ON job_queues.name = changes.queue AND job_queues.limited
            GROUP BY changes.queue
            HAVING sum(changes.change) < 0
        LOOP
            PERFORM pg_notify('jobqueue_ready', ready_queue);
        END LOOP;
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
