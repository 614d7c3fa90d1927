-- 0002: the pipeline's index (strata.pipeline): CDC source positions, indexed documents,
-- chunks with their vectors, dead letters and freshness samples.
-- Every statement is IF NOT EXISTS, so re-running the file changes nothing. The vector table
-- needs pgvector: without the extension (Database.start creates it when it can) the vector
-- part is skipped and the pipeline refuses to start with a message saying so.

CREATE TABLE IF NOT EXISTS pipeline_sources (
    name            text PRIMARY KEY,
    slot_name       text NOT NULL,
    applied_lsn     bigint NOT NULL DEFAULT 0,  -- end LSN of the last transaction indexed
    last_commit_at  timestamptz,                -- source commit time of that transaction
    last_applied_at timestamptz,
    epoch           integer NOT NULL DEFAULT 0, -- bumped by each backfill
    backfilled_at   timestamptz,                -- NULL: a backfill is needed (or was cut off)
    backfill_rows   bigint,
    model           text
);

-- One row per indexed source row. text_hashes: text column -> hash of its value, so an
-- UPDATE that leaves every text column alone is recognised without chunking anything.
CREATE TABLE IF NOT EXISTS pipeline_documents (
    source      text NOT NULL REFERENCES pipeline_sources (name) ON DELETE CASCADE,
    key         text NOT NULL,             -- the primary key's text (JSON array if several)
    tenant      text NOT NULL,
    collection  text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}',
    text_hashes jsonb NOT NULL DEFAULT '{}',
    epoch       integer NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, key)
);
CREATE INDEX IF NOT EXISTS pipeline_documents_epoch_idx ON pipeline_documents (source, epoch);

CREATE TABLE IF NOT EXISTS pipeline_dead_letters (
    source          text NOT NULL,
    key             text NOT NULL,
    error           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL,
    PRIMARY KEY (source, key)
);
CREATE INDEX IF NOT EXISTS pipeline_dead_letters_due_idx
    ON pipeline_dead_letters (source, next_attempt_at);

-- Commit-to-searchable delay of recent transactions (pruned to the newest samples).
CREATE TABLE IF NOT EXISTS pipeline_freshness (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source    text NOT NULL,
    commit_at timestamptz NOT NULL,
    seconds   double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS pipeline_freshness_source_idx ON pipeline_freshness (source, id);

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
        RAISE NOTICE 'pgvector is not installed: pipeline_chunks not created';
        RETURN;
    END IF;
    -- `embedding` has no fixed length so that any embedding model fits; each length gets its
    -- own partial HNSW index over `embedding::vector(dims)` (384: all-MiniLM-L6-v2 here; the
    -- pipeline creates others on start).
    CREATE TABLE IF NOT EXISTS pipeline_chunks (
        source       text NOT NULL,
        key          text NOT NULL,
        chunk_no     integer NOT NULL,
        tenant       text NOT NULL,
        collection   text NOT NULL,
        content      text NOT NULL,
        content_hash bytea NOT NULL,
        metadata     jsonb NOT NULL DEFAULT '{}',
        model        text NOT NULL,
        dims         integer NOT NULL,
        embedding    vector NOT NULL,
        updated_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (source, key, chunk_no),
        FOREIGN KEY (source, key) REFERENCES pipeline_documents (source, key) ON DELETE CASCADE
    );
    CREATE INDEX IF NOT EXISTS pipeline_chunks_scope_idx
        ON pipeline_chunks (tenant, collection, model);
    CREATE INDEX IF NOT EXISTS pipeline_chunks_hnsw_384 ON pipeline_chunks
        USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dims = 384;
END
$$;
