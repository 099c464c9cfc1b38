-- Hours of load without bloat (issue 24): what each write leaves behind for vacuum, and how
-- soon vacuum comes for it.

-- Heartbeats as HOT updates. A heartbeat changes heartbeat_at alone; while an index holds
-- that column, each heartbeat writes a new entry into every index of the table. Without it,
-- and with room on the row's page (the fillfactor below), PostgreSQL keeps the new version on
-- the same page and writes no index entry at all. The running set is small, so stale-lock
-- rescue reads a queue's running rows and checks their heartbeats there. locked_at, a
-- claim's time, is set once: new entries go to the index's right edge, as they did before.
DROP INDEX jobs_running_idx;
CREATE INDEX jobs_running_idx ON jobs (queue, locked_at) WHERE status = 'running';

-- Room on each page for a row's next versions, so heartbeats stay on their page; and
-- vacuum soon and unthrottled. The defaults wait for a fifth of the table to be dead, which on
-- a table that keeps a day of finished jobs is millions of dead rows, every one of them still
-- in the claim index's way, and pause every few pages. The jobs table is hot and mostly in
-- memory: a vacuum of it is quick when it comes often.
ALTER TABLE jobs SET (
    fillfactor = 85,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- The statistics' deltas: appended by every statement, folded every few seconds, so nearly
-- all of its rows are dead soon after they are written. A vacuum whenever a few thousand are
-- dead keeps it a few pages long.
ALTER TABLE job_counts SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0
);

-- Workers renew their rows every few heartbeats, the same few rows over and over.
ALTER TABLE job_workers SET (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200
);
