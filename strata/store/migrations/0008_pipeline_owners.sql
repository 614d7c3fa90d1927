-- 0008: which pipeline worker streams each source (strata.pipeline.ownership).
-- The truth is a session-level advisory lock, pg_try_advisory_lock(<class>, lock_id), held on
-- the connection that writes the source's index; PostgreSQL drops it when that session ends.
-- This table only gives each source its lock number and records who took the lock last and
-- when, for `strata pipeline status` (which checks pg_locks to tell whether it is still held).
CREATE TABLE IF NOT EXISTS pipeline_owners (
    source       text PRIMARY KEY,
    lock_id      integer GENERATED ALWAYS AS IDENTITY UNIQUE, -- the advisory lock's second key
    worker       text,                                        -- the worker that took it last
    owned_since  timestamptz,                                 -- when it took it
    acquisitions bigint NOT NULL DEFAULT 0                    -- times any worker took it
);
