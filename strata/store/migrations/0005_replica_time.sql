-- Replica time of self-hosted upstreams (strata.gateway.replica_time): one row per upstream per
-- interval (about a minute, and at shutdown), written by the gateway that runs the replica.
-- Busy time is billed to requests in usage_ledger; idle time is billed to nobody and is kept
-- here so reports can show it. Costs are at the price in force when the row was written.
CREATE TABLE IF NOT EXISTS replica_time (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL,  -- the end of the interval
    upstream         text NOT NULL,
    replica_s        double precision NOT NULL CHECK (replica_s >= 0),
    idle_s           double precision NOT NULL CHECK (idle_s >= 0),
    replica_cost_usd numeric(18, 8) NOT NULL CHECK (replica_cost_usd >= 0),
    idle_cost_usd    numeric(18, 8) NOT NULL CHECK (idle_cost_usd >= 0)
);
CREATE INDEX IF NOT EXISTS replica_time_at_idx ON replica_time (at);
