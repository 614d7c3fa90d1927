-- 0006: request logs (strata.gateway.request_logs): the prompts and answers of the tenants an
-- admin opted in, redacted before they are written; the feedback applications post back; and
-- each tenant's logging setting. Rows past their tenant's retention are purged in batches.

-- Which tenants are logged. No row (or enabled false): nothing of the tenant is logged.
-- retention_days NULL: request_logs.retention_days from the config.
CREATE TABLE request_log_tenants (
    tenant         text PRIMARY KEY REFERENCES tenants (name) ON DELETE CASCADE,
    enabled        boolean NOT NULL DEFAULT false,
    retention_days integer CHECK (retention_days BETWEEN 1 AND 3650),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per logged request. `id` is fixed when the writer forms a batch, so a batch re-sent
-- after a commit whose answer was lost fails on the primary key as a whole and is not stored
-- twice. request_id is the caller-visible x-request-id: a caller may reuse one, so it is not
-- unique. messages is [{"role", "content"}, ...]; it and response are redacted.
CREATE TABLE request_logs (
    id                uuid PRIMARY KEY,
    request_id        text NOT NULL,
    created_at        timestamptz NOT NULL,
    tenant            text NOT NULL,
    user_name         text NOT NULL,            -- the key's strata user
    key_id            text NOT NULL,
    end_user          text,                     -- OpenAI's `user` field, as the app sent it
    session_id        text,                     -- the x-strata-session header
    route             text NOT NULL,
    model             text NOT NULL,
    stream            boolean NOT NULL,
    messages          jsonb NOT NULL,
    response          text NOT NULL,
    truncated         boolean NOT NULL,         -- prompt or answer cut at max_text_chars
    prompt_tokens     integer NOT NULL,
    completion_tokens integer NOT NULL,
    cost_usd          numeric(18, 8) NOT NULL,
    ttft_ms           double precision,
    duration_ms       double precision NOT NULL,
    status            integer NOT NULL,
    error_code        text,
    -- Full-text search over the messages' contents and the answer. 'simple': no stemming and
    -- no stop words, so any language and identifiers (order numbers, error codes) are found.
    search            tsvector GENERATED ALWAYS AS (
        jsonb_to_tsvector('simple', jsonb_path_query_array(messages, '$[*].content'), '["string"]')
        || to_tsvector('simple', response)
    ) STORED
);
CREATE INDEX request_logs_search_idx ON request_logs USING gin (search);
CREATE INDEX request_logs_created_idx ON request_logs (created_at, id);
CREATE INDEX request_logs_tenant_idx ON request_logs (tenant, created_at, id);
CREATE INDEX request_logs_user_idx ON request_logs (tenant, user_name, created_at);
CREATE INDEX request_logs_end_user_idx ON request_logs (end_user, created_at)
    WHERE end_user IS NOT NULL;
CREATE INDEX request_logs_session_idx ON request_logs (session_id, created_at)
    WHERE session_id IS NOT NULL;
CREATE INDEX request_logs_request_id_idx ON request_logs (request_id);

-- Scores an application posts for its tenant's requests (POST /v1/feedback); one per
-- (request, name): posting the same name again replaces it. Purged with the same retention.
CREATE TABLE request_log_feedback (
    tenant     text NOT NULL,
    request_id text NOT NULL,
    name       text NOT NULL,
    score      double precision NOT NULL,
    comment    text,                            -- redacted like the logs
    key_id     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, request_id, name)
);
CREATE INDEX request_log_feedback_created_idx ON request_log_feedback (created_at);
