-- Retention: `jobqueue db prune` deletes finished jobs oldest first, in small batches; this
-- index finds them without reading the pending and running ones (or the whole table).
CREATE INDEX jobs_finished_idx ON jobs (updated_at) WHERE status IN ('done', 'failed');
