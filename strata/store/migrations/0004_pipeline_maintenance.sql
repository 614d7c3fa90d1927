-- 0004: what the pipeline's maintenance jobs need (strata.pipeline.reindex, .tenants).
-- Idempotent like 0002: IndexStore re-runs it after 0002 when pgvector arrives late.

-- Tenants whose rows a source must not index again (`strata pipeline delete-tenant`, by
-- default): their changes are dropped before embedding and once more inside each index write.
-- source '*' excludes the tenant from every source, present and future.
CREATE TABLE IF NOT EXISTS pipeline_excluded_tenants (
    source     text NOT NULL,
    tenant     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, tenant)
);

-- A dead letter's tenant, so deleting a tenant's data finds rows that never got indexed.
-- NULL for letters written before this migration (found through their documents instead).
ALTER TABLE pipeline_dead_letters ADD COLUMN IF NOT EXISTS tenant text;

-- A reindex builds the new model's vectors beside the old ones: a chunk has one row per model.
-- (Rebuilding the key index locks the table once, while the migration runs.)
DO $$
BEGIN
    IF to_regclass('pipeline_chunks') IS NULL THEN
        RETURN;  -- no pgvector yet: 0002 skipped the table
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = 'pipeline_chunks'::regclass AND i.indisprimary AND a.attname = 'model'
    ) THEN
        ALTER TABLE pipeline_chunks DROP CONSTRAINT pipeline_chunks_pkey,
            ADD PRIMARY KEY (source, key, chunk_no, model);
    END IF;
END
$$;
