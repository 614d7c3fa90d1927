-- 0007: the guard's verdict on every indexed chunk (strata.pipeline.screen): indirect prompt
-- injection found at indexing time. A quarantined chunk stays in the index (a release needs no
-- re-embedding) but retrieval never returns it. Idempotent like 0002: IndexStore re-runs it
-- after 0002 when pgvector arrives late.
DO $$
BEGIN
    IF to_regclass('pipeline_chunks') IS NULL THEN
        RETURN;  -- no pgvector yet: 0002 skipped the table
    END IF;
    -- NULL: not scanned (indexed before this migration, with the guard off, or policy
    -- `documents: off`); else the injection probability, 0..1.
    ALTER TABLE pipeline_chunks ADD COLUMN IF NOT EXISTS guard_score real;
    -- The attack categories the detector found; empty: not flagged.
    ALTER TABLE pipeline_chunks ADD COLUMN IF NOT EXISTS guard_categories text[]
        NOT NULL DEFAULT '{}';
    -- Flagged under `documents: block` and not released: never retrieved.
    ALTER TABLE pipeline_chunks ADD COLUMN IF NOT EXISTS quarantined boolean NOT NULL DEFAULT false;
    -- Reviewed and released by an admin (`strata pipeline quarantine release`): kept while the
    -- chunk's text stays the same; a changed text is scanned afresh.
    ALTER TABLE pipeline_chunks ADD COLUMN IF NOT EXISTS released_at timestamptz;
    ALTER TABLE pipeline_chunks ADD COLUMN IF NOT EXISTS released_by text;
    CREATE INDEX IF NOT EXISTS pipeline_chunks_quarantined_idx
        ON pipeline_chunks (source, tenant) WHERE quarantined;
END
$$;
