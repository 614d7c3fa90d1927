-- The guard's verdict on each request, next to its usage (strata.gateway.guard_step).
ALTER TABLE usage_ledger ADD COLUMN IF NOT EXISTS guard_score real;
ALTER TABLE usage_ledger ADD COLUMN IF NOT EXISTS guard_flags text;
